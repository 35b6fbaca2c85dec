"""`python -m controller …`: the controller's command line."""

from __future__ import annotations

import getpass
import json
import logging
import signal
import sys
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from bridge.redaction import redact
from controller import db, flags, logs
from controller.config import (
    DEFAULT_CONFIG,
    ConfigError,
    ControllerConfig,
    Secrets,
    load_config,
    load_model,
    load_secrets,
)
from controller.embedded_db import EmbeddedDbError
from controller.migrate import MigrationError, migrate

if TYPE_CHECKING:
    from controller.app import Wiring
    from controller.pipeline import CycleReport

logger = logging.getLogger(__name__)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Trading control plane around Hummingbot.")
db_app = typer.Typer(no_args_is_help=True, help="The embedded Postgres (used when DATABASE_URL is not set).")
flags_app = typer.Typer(no_args_is_help=True, help="Feature flags and phases.")
retention_app = typer.Typer(no_args_is_help=True, help="Retention: move and delete old data by tier.")
app.add_typer(db_app, name="db")
app.add_typer(flags_app, name="flags")
app.add_typer(retention_app, name="retention")

# Wide enough for the tables when output goes to a file or a pipe (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass(frozen=True)
class Context:
    config: ControllerConfig
    secrets: Secrets

    def flag_specs(self) -> flags.FlagsFile:
        return load_model(flags.FlagsFile, self.config.resolve(self.config.flags.file))


def _fail(message: str, code: int = 2) -> typer.Exit:
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", "-c", help="controller config file")] = DEFAULT_CONFIG,
) -> None:
    """Load and validate the configuration before any command runs."""
    try:
        loaded = load_config(config)
        secrets = load_secrets()
    except ConfigError as exc:
        raise _fail(f"invalid configuration\n{exc}") from None
    logs.configure(loaded.log.level)
    ctx.obj = Context(loaded, secrets)


def _connect(ctx: Context) -> psycopg.Connection:
    try:
        return db.connect(ctx.config, ctx.secrets)
    except (ConfigError, EmbeddedDbError) as exc:
        raise _fail(str(exc)) from None
    except psycopg.OperationalError as exc:
        raise _fail(f"cannot connect to the database: {redact(str(exc))}") from None


# --- db --------------------------------------------------------------------------------------

@db_app.command("start")
def db_start(ctx: typer.Context) -> None:
    """Start the embedded Postgres (idempotent) and print its URL."""
    try:
        info = db.embedded(ctx.obj.config).start()
    except EmbeddedDbError as exc:
        raise _fail(str(exc)) from None
    cron = "pg_cron preloaded" if info.pg_cron else "no pg_cron"
    console.print(f"embedded postgres running: pid {info.pid}, {info.url} ({info.kind}, {cron})")


@db_app.command("stop")
def db_stop(ctx: typer.Context) -> None:
    """Stop the embedded Postgres by its pid."""
    try:
        stopped = db.embedded(ctx.obj.config).stop()
    except EmbeddedDbError as exc:
        raise _fail(str(exc)) from None
    console.print("embedded postgres stopped" if stopped else "embedded postgres was not running")


@db_app.command("url")
def db_url(ctx: typer.Context) -> None:
    """Print the URL the controller connects to (DATABASE_URL shown with its password masked)."""
    if ctx.obj.secrets.database_url is not None:
        print(redact(ctx.obj.secrets.database_url.get_secret_value()))
        return
    info = db.embedded(ctx.obj.config).status()
    if info is None:
        raise _fail("the embedded database is not running: python -m controller db start", code=1)
    print(info.url)


# --- migrate ---------------------------------------------------------------------------------

@app.command("migrate")
def migrate_cmd(ctx: typer.Context) -> None:
    """Apply pending SQL migrations (and the compatibility bootstrap on plain Postgres)."""
    specs = _load_specs(ctx.obj)
    with _connect(ctx.obj) as conn:
        try:
            report = migrate(conn)
        except MigrationError as exc:
            raise _fail(str(exc)) from None
        flags.sync(conn, specs, _actor())
    console.print(f"compatibility bootstrap: {report.compat}")
    for notice in report.notices:
        console.print(f"notice: {notice}")
    if report.applied:
        console.print(f"applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
    else:
        console.print("database is up to date: nothing to apply")


# --- flags -----------------------------------------------------------------------------------

def _load_specs(ctx: Context) -> flags.FlagsFile:
    try:
        return ctx.flag_specs()
    except ConfigError as exc:
        raise _fail(f"invalid configuration\n{exc}") from None


def _print_changes(changes: list[flags.FlagChange]) -> None:
    if not changes:
        console.print("no change")
    for c in changes:
        console.print(f"{c.name}: {json.dumps(c.old)} -> {json.dumps(c.new)}")


@flags_app.command("show")
def flags_show(ctx: typer.Context) -> None:
    """List every flag: live value, default, last change."""
    specs = _load_specs(ctx.obj)
    with _connect(ctx.obj) as conn:
        _require_schema(conn)
        flags.sync(conn, specs, _actor())
        rows = flags.show(conn)
    table = Table(title="flags")
    for column in ("flag", "value", "default", "allowed", "updated", "by"):
        table.add_column(column)
    for row in rows:
        spec = specs.flags.get(row.name)
        value = json.dumps(row.value)
        table.add_row(row.name, value if row.value == row.default else f"[bold]{value}[/bold]",
                      json.dumps(row.default), spec.allowed() if spec else "(not in conf)",
                      f"{row.updated_at:%Y-%m-%d %H:%M:%S}", row.updated_by)
    console.print(table)


@flags_app.command("set")
def flags_set(ctx: typer.Context, name: str, value: str) -> None:
    """Set one flag, e.g. `flags set ml.enabled true`."""
    specs = _load_specs(ctx.obj)
    with _connect(ctx.obj) as conn:
        _require_schema(conn)
        try:
            changes = flags.set_flag(conn, specs, name, value, _actor())
        except flags.FlagError as exc:
            raise _fail(str(exc)) from None
    _print_changes(changes)


@flags_app.command("phase")
def flags_phase(ctx: typer.Context, number: int) -> None:
    """Set the flags of phase 0-4 (see conf/flags.yml and the README)."""
    specs = _load_specs(ctx.obj)
    with _connect(ctx.obj) as conn:
        _require_schema(conn)
        try:
            changes = flags.apply_phase(conn, specs, number, _actor())
        except flags.FlagError as exc:
            raise _fail(str(exc)) from None
    _print_changes(changes)


# --- the controller loop ------------------------------------------------------------------------

def _parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"not an ISO 8601 time: {text!r} (e.g. 2018-01-25T12:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


ReplayOption = Annotated[Path | None, typer.Option(help="scan recorded candles from this folder, not the exchange")]
ExchangeOption = Annotated[str | None, typer.Option(help="exchange of the recorded files to use (replay)")]
SymbolsOption = Annotated[str | None, typer.Option(help="comma-separated pairs, e.g. ETH-BTC,LTC-BTC")]


def _wiring(ctx: Context, replay: Path | None, exchange: str | None, start: datetime | None,
            symbols: str | None) -> Wiring:
    from controller import app as app_wiring  # the pipeline's imports (pandas, TA-Lib, ccxt) only when needed

    try:
        return app_wiring.build(ctx.config, ctx.secrets, replay=replay, exchange=exchange, start=start,
                                symbols=tuple(symbols.split(",")) if symbols else None)
    except (ConfigError, EmbeddedDbError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from None


@app.command("scan")
def scan_cmd(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="run one scan and exit")] = True,
    replay: ReplayOption = None,
    until: Annotated[str | None, typer.Option(help="scan time (replay), ISO 8601")] = None,
    exchange: ExchangeOption = None,
    symbols: SymbolsOption = None,
) -> None:
    """Run one scan and print a table of decisions."""
    if replay is None and until is not None:
        raise _fail("--until needs --replay: live scans happen now")
    wiring = _wiring(ctx.obj, replay, exchange, _parse_time(until), symbols)
    try:
        report = wiring.scanner.scan()
    finally:
        wiring.store.close()
    _print_report(report)


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    replay: ReplayOption = None,
    start: Annotated[str | None, typer.Option(help="first scan time (replay), ISO 8601")] = None,
    until: Annotated[str | None, typer.Option(help="last scan time (replay), ISO 8601")] = None,
    exchange: ExchangeOption = None,
    symbols: SymbolsOption = None,
) -> None:
    """Scan the universe at every candle close until stopped (SIGTERM: after the current cycle)."""
    from controller import pipeline

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from controller.app import operations

    end = _parse_time(until)
    if replay is not None and end is None:
        raise _fail("--until is required with --replay")
    wiring = _wiring(ctx.obj, replay, exchange, _parse_time(start), symbols)
    step = wiring.base_timeframe_s()
    ops = operations(wiring, ctx.obj.config, ctx.obj.secrets)
    try:
        if wiring.clock is None:
            pipeline.run_live(wiring.scanner, step, stop, on_cycle=ops.on_cycle)
        else:
            reports = pipeline.run_replay(wiring.scanner, wiring.clock.advance, wiring.clock.now, end, step, stop,
                                          on_cycle=ops.on_cycle)
            emitted = sum(r.emitted for r in reports)
            console.print(f"replayed {len(reports)} scans up to {wiring.clock.now():%Y-%m-%d %H:%M}: "
                          f"{emitted} signal(s) emitted")
    finally:
        ops.close()  # the final health report (seed 002)
        wiring.store.close()
    console.print("stopped cleanly" if stop.is_set() else "done")


def _print_report(report: CycleReport) -> None:
    if report.skipped:
        console.print(f"scan at {report.at:%Y-%m-%d %H:%M} skipped: {report.skipped}")
        return
    regime = report.regime
    console.print(f"scan at {report.at:%Y-%m-%d %H:%M}: regime {regime.regime.value} ({regime.reason})")
    table = Table(title="decisions")
    for column in ("strategy", "symbol", "decision", "confidence", "reason"):
        table.add_column(column)
    for item in sorted(report.planned, key=lambda p: (p.decision.strategy, p.decision.symbol)):
        table.add_row(item.decision.strategy, item.decision.symbol, item.outcome,
                      f"{item.decision.confidence:.2f}", item.reason)
    console.print(table)
    for name, failure in sorted(report.failures.items()):
        console.print(f"[red]failed[/red] {name}: {failure}")
    console.print(f"{report.emitted} signal(s) emitted in {report.duration_s:.2f} s")


@app.command("status")
def status_cmd(ctx: typer.Context,
               as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False) -> None:
    """Health of every component, judged by progress from the heartbeats; exit 1 when one is degraded or down."""
    from controller.status import status_command

    raise typer.Exit(status_command(ctx.obj, as_json=as_json))


@retention_app.command("run")
def retention_run(ctx: typer.Context, dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="show what a run would do; change nothing")] = False) -> None:
    """Archive and delete by tier (what the pg_cron job runs daily); report rows and bytes per table."""
    from controller.retention import retention_command

    retention_command(ctx.obj, dry_run)


@app.command("storage")
def storage_cmd(ctx: typer.Context, warn_gb: Annotated[float | None, typer.Option(
        "--warn-gb", min=0, help="warn above this size per table (default storage.warn_table_gb)")] = None) -> None:
    """Rows, size, growth per day and projected size at 30 and 90 days, per table."""
    from controller.retention import storage_command

    storage_command(ctx.obj, warn_gb)


@app.command("verify")
def verify_cmd(ctx: typer.Context, window: Annotated[str, typer.Option(
        "--window", help="how far back: 30m, 24h, 7d")] = "24h") -> None:
    """The trade funnel for the window, and every signal stuck in a state; exit 1 when something is stuck."""
    from controller.verify import verify_command

    verify_command(ctx.obj, window)


@app.command("backfill")
def backfill_cmd(
    ctx: typer.Context,
    exchange: Annotated[str, typer.Option(help="ccxt exchange id (or the recorded files' exchange with --replay)")],
    symbols: Annotated[str, typer.Option(help="comma-separated pairs, e.g. BTC-USDT,ETH-USDT")],
    timeframe: Annotated[str, typer.Option(help="candle timeframe, e.g. 1m")] = "1m",
    days: Annotated[int, typer.Option(min=1, max=3650, help="how many days back from now (or the data's end)")] = 7,
    replay: ReplayOption = None,
) -> None:
    """Fetch missing candles into the store, with a progress bar."""
    from controller.cli_data import backfill_command

    backfill_command(ctx.obj, exchange, [s.strip() for s in symbols.split(",") if s.strip()], timeframe, days, replay)


def _require_schema(conn: psycopg.Connection) -> None:
    if conn.execute("select to_regclass('flags')").fetchone()[0] is None:
        raise _fail("the database has no flags table yet: run python -m controller migrate")
