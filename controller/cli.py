"""`python -m controller …`: the controller's command line."""

from __future__ import annotations

import getpass
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

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

logger = logging.getLogger(__name__)

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Trading control plane around Hummingbot.")
db_app = typer.Typer(no_args_is_help=True, help="The embedded Postgres (used when DATABASE_URL is not set).")
flags_app = typer.Typer(no_args_is_help=True, help="Feature flags and phases.")
app.add_typer(db_app, name="db")
app.add_typer(flags_app, name="flags")

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


def _require_schema(conn: psycopg.Connection) -> None:
    if conn.execute("select to_regclass('flags')").fetchone()[0] is None:
        raise _fail("the database has no flags table yet: run python -m controller migrate")
