"""`db start|stop|url`, `migrate` and `flags show|set|phase`: the database and what lives in it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.table import Table

from bridge.redaction import redact
from controller.cli.base import actor, connect, console, fail, load_specs, require_schema
from controller.data import db, flags
from controller.data.embedded_db import EmbeddedDbError
from controller.data.migrate import MigrationError, migrate

db_app = typer.Typer(no_args_is_help=True, help="The embedded Postgres (used when DATABASE_URL is not set).")
flags_app = typer.Typer(no_args_is_help=True, help="Feature flags and phases.")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    app.add_typer(flags_app, name="flags")
    app.command("migrate")(migrate_cmd)


@db_app.command("start")
def db_start(ctx: typer.Context) -> None:
    """Start the embedded Postgres (idempotent) and print its URL."""
    try:
        info = db.embedded(ctx.obj.config.database).start()
    except EmbeddedDbError as exc:
        raise fail(str(exc)) from None
    cron = "pg_cron preloaded" if info.pg_cron else "no pg_cron"
    console.print(f"embedded postgres running: pid {info.pid}, {info.url} ({info.kind}, {cron})")


@db_app.command("stop")
def db_stop(ctx: typer.Context) -> None:
    """Stop the embedded Postgres by its pid."""
    try:
        stopped = db.embedded(ctx.obj.config.database).stop()
    except EmbeddedDbError as exc:
        raise fail(str(exc)) from None
    console.print("embedded postgres stopped" if stopped else "embedded postgres was not running")


@db_app.command("url")
def db_url(ctx: typer.Context) -> None:
    """Print the URL the controller connects to (DATABASE_URL shown with its password masked)."""
    if ctx.obj.secrets.database_url is not None:
        print(redact(ctx.obj.secrets.database_url.get_secret_value()))
        return
    info = db.embedded(ctx.obj.config.database).status()
    if info is None:
        raise fail("the embedded database is not running: python -m controller db start", code=1)
    print(info.url)


def migrate_cmd(ctx: typer.Context) -> None:
    """Apply pending SQL migrations (and the compatibility bootstrap on plain Postgres)."""
    specs = load_specs(ctx.obj)
    with connect(ctx.obj) as conn:
        try:
            report = migrate(conn)
        except MigrationError as exc:
            raise fail(str(exc)) from None
        flags.sync(conn, specs, actor())
    console.print(f"compatibility bootstrap: {report.compat}")
    for notice in report.notices:
        console.print(f"notice: {notice}")
    if report.adopted:
        console.print(f"recorded {len(report.adopted)} migration(s) applied by the Supabase CLI: "
                      f"{', '.join(report.adopted)}")
    if report.applied:
        console.print(f"applied {len(report.applied)} migration(s): {', '.join(report.applied)}")
    elif not report.adopted:
        console.print("database is up to date: nothing to apply")


def _print_changes(changes: list[flags.FlagChange]) -> None:
    if not changes:
        console.print("no change")
    for c in changes:
        console.print(f"{c.name}: {json.dumps(c.old)} -> {json.dumps(c.new)}")


@flags_app.command("show")
def flags_show(ctx: typer.Context) -> None:
    """List every flag: live value, default, last change."""
    specs = load_specs(ctx.obj)
    with connect(ctx.obj) as conn:
        conn.read_only = True  # showing never writes: it works on a read-only role or replica
        require_schema(conn)
        rows = flags.show(conn, specs)
    table = Table(title="flags")
    for column in ("flag", "value", "default", "allowed", "updated", "by"):
        table.add_column(column)
    for row in rows:
        spec = specs.flags.get(row.name)
        value = json.dumps(row.value)
        table.add_row(row.name, value if row.value == row.default else f"[bold]{value}[/bold]",
                      json.dumps(row.default), spec.allowed() if spec else "(not in conf)",
                      f"{row.updated_at:%Y-%m-%d %H:%M:%S}" if row.updated_at else "(conf default)", row.updated_by)
    console.print(table)


@flags_app.command("set")
def flags_set(ctx: typer.Context, name: str, value: str) -> None:
    """Set one flag, e.g. `flags set ml.enabled true`."""
    specs = load_specs(ctx.obj)
    with connect(ctx.obj) as conn:
        require_schema(conn)
        try:
            changes = flags.set_flag(conn, specs, name, value, actor())
        except flags.FlagError as exc:
            raise fail(str(exc)) from None
        except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege) as exc:
            raise fail(f"flags set {name}: the database refused the write ({db.one_line(exc)}): "
                       "connect as a role that may write the flags table") from None
    _print_changes(changes)


@flags_app.command("phase")
def flags_phase(
    ctx: typer.Context,
    number: int,
    replay: Annotated[Path | None, typer.Option("--replay", help="phase 3: folder of recorded candles to train on "
                                                                "and replay (default: ml.retrain.replay, else the "
                                                                "recorded candles beside the project)")] = None,
    exchange: Annotated[str | None, typer.Option(help="phase 3: the exchange to replay (default: the one with "
                                                      "the most recorded pairs)")] = None,
    hours: Annotated[float, typer.Option(help="phase 3: hours at the recordings' end replayed with ML")] = 24.0,
    ml_setup: Annotated[bool, typer.Option("--ml/--flags-only", help="phase 3: train, gate and scan with ML "
                                                                     "(default), or only set the flags")] = True,
) -> None:
    """Set the flags of phase 0-4 (see conf/flags.yml and docs/cli.md). Phase 3 then trains a model per strategy
    on recorded candles, applies the promotion gate (printing why it promotes or refuses) and replays the
    recordings' last `--hours` with ML on."""
    specs = load_specs(ctx.obj)
    with connect(ctx.obj) as conn:
        require_schema(conn)
        try:
            changes = flags.apply_phase(conn, specs, number, actor())
        except flags.FlagError as exc:
            raise fail(str(exc)) from None
    _print_changes(changes)
    if number == 3 and ml_setup:
        from controller.cli.ml import phase3_setup

        raise typer.Exit(phase3_setup(ctx.obj, replay, exchange, hours))
