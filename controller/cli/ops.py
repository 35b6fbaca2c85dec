"""`status`, `retention run`, `storage` and `verify`: the operator's view of a running system."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import psycopg
import typer
from rich.console import Console

from bridge.redaction import redact, secret_parts
from controller.cli.base import Context, connect, fail
from controller.config_base import ConfigError
from controller.data import db
from controller.data.embedded_db import EmbeddedDbError
from controller.ops.health import HealthConfig, HealthReport, assess, read_database, render_table
from controller.ops.retention import (
    DEFAULT_WARN_TABLE_GB,
    ROW_ACTIONS,
    RetentionError,
    human_bytes,
    retention_table,
    run_retention,
    storage_report,
    storage_table,
    storage_warnings,
)
from controller.ops.status import report_json
from controller.ops.verify import Thresholds, parse_window, print_report, verify

retention_app = typer.Typer(no_args_is_help=True, help="Retention: move and delete old data by tier.")


def register(app: typer.Typer) -> None:
    app.add_typer(retention_app, name="retention")
    app.command("status")(status_cmd)
    app.command("storage")(storage_cmd)
    app.command("verify")(verify_cmd)


def status_cmd(ctx: typer.Context,
               as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False) -> None:
    """Health of every component, judged by progress from the heartbeats; exit 1 when one is degraded or down."""
    raise typer.Exit(status_command(ctx.obj, as_json=as_json))


@retention_app.command("run")
def retention_run(ctx: typer.Context, dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="show what a run would do; change nothing")] = False) -> None:
    """Archive and delete by tier (what the pg_cron job runs daily); report rows and bytes per table."""
    retention_command(ctx.obj, dry_run)


def storage_cmd(ctx: typer.Context, warn_gb: Annotated[float | None, typer.Option(
        "--warn-gb", min=0, help="warn above this size per table (default storage.warn_table_gb)")] = None) -> None:
    """Rows, size, growth per day and projected size at 30 and 90 days, per table."""
    storage_command(ctx.obj, warn_gb)


def verify_cmd(ctx: typer.Context, window: Annotated[str, typer.Option(
        "--window", help="how far back: 30m, 24h, 7d")] = "24h") -> None:
    """The trade funnel for the window, and every signal stuck in a state; exit 1 when something is stuck."""
    verify_command(ctx.obj, window)


def _flag_defaults(ctx_obj: Context) -> dict[str, Any]:
    try:
        specs = ctx_obj.flag_specs()
    except ConfigError:
        return {}  # the table's values still count; a flag missing from both is treated as off
    return {name: spec.default for name, spec in specs.flags.items()}


def _secrets(ctx_obj: Context) -> list[str]:
    url = ctx_obj.secrets.database_url
    return list(secret_parts(url.get_secret_value())) if url is not None else []


def health_from_database(ctx_obj: Context) -> HealthReport:
    """Read heartbeats and flags and judge them; a database that cannot be read makes the store down."""
    config = ctx_obj.config
    health_config: HealthConfig = getattr(config, "health", None) or HealthConfig()
    controller_name = config.loop.heartbeat_component
    try:
        with db.connect(config.database, ctx_obj.secrets) as conn:
            snapshot = read_database(conn, _flag_defaults(ctx_obj))
    except psycopg.errors.UndefinedTable:
        problem = "the database has no heartbeats or flags table: run python -m controller migrate"
    except (psycopg.Error, ConfigError, EmbeddedDbError) as exc:
        problem = f"cannot read the database: {redact(str(exc).strip(), _secrets(ctx_obj))}"
    else:
        return assess(snapshot.heartbeats, snapshot.now, health_config, flags=snapshot.flags,
                      controller_name=controller_name)
    return assess((), datetime.now(UTC), health_config, store_error=problem, controller_name=controller_name)


def status_command(ctx_obj: Context, *, as_json: bool = False) -> int:
    """Print the health table (or JSON) and return the exit code: 0 healthy, 1 degraded or down."""
    report = health_from_database(ctx_obj)
    if as_json:
        print(report_json(report))
    else:
        # Created per call so that output follows sys.stdout as it is now (pipes, tests).
        console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)
        console.print(render_table(report))
    return report.exit_code()


def retention_command(ctx_obj: Context, dry_run: bool, *, console: Console | None = None) -> None:
    """Run retention now (or, with dry_run, show what it would do) and print the report."""
    console = console or Console()
    with connect(ctx_obj) as conn:
        try:
            report = run_retention(conn, dry_run=dry_run)
        except RetentionError as exc:
            raise fail(str(exc), code=exc.code) from None
    console.print(retention_table(report, dry_run=dry_run))
    freed = sum(r.bytes for r in report if r.action == "bytes_freed")
    changed = sum(r.rows for r in report if r.action in ROW_ACTIONS)
    verb = "would change" if dry_run else "changed"
    console.print(f"{verb} {changed:,} row(s); net bytes freed {human_bytes(freed)}"
                  f"{' (estimate)' if dry_run else ''}", highlight=False)
    for row in report:
        if row.action in ("skipped", "incomplete"):
            console.print(f"[yellow]{row.action}[/yellow]: {row.detail}")


def configured_warn_gb(ctx_obj: Context) -> float:
    """`storage.warn_table_gb` from the controller config when it has that section, else the default."""
    storage = getattr(ctx_obj.config, "storage", None)
    return float(getattr(storage, "warn_table_gb", DEFAULT_WARN_TABLE_GB))


def storage_command(ctx_obj: Context, warn_gb: float | None = None, *, console: Console | None = None) -> None:
    """Print rows, size, growth and projections per table, with a warning for tables above `warn_gb`."""
    console = console or Console()
    limit = configured_warn_gb(ctx_obj) if warn_gb is None else warn_gb
    if limit <= 0:
        raise fail(f"--warn-gb must be positive, got {limit:g}")
    with connect(ctx_obj) as conn:
        report = storage_report(conn)
    console.print(storage_table(report, limit))
    warnings = storage_warnings(report, limit)
    for line in warnings:
        console.print(f"[bold yellow]warning[/bold yellow]: {line}", highlight=False)
    if not warnings:
        console.print(f"every table is below the {limit:g} GB warning size, now and in 90 days", highlight=False)


def verify_command(ctx_obj: Context, window: str, *, console: Console | None = None,
                   thresholds: Thresholds | None = None, now: datetime | None = None) -> None:
    """Print the funnel, P&L and stuck signals of the window ending now; exit 1 when a signal is stuck."""
    console = console or Console()
    try:
        span = parse_window(window)
    except ValueError as exc:
        print(f"error: --window: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    with connect(ctx_obj) as conn:
        report = verify(conn, span, now, thresholds or Thresholds())
    print_report(report, console)
    if not report.healthy:
        raise typer.Exit(report.exit_code)
