"""What every command group shares: the loaded configuration, the console, and how a command fails."""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from rich.console import Console

from controller.config import ControllerConfig
from controller.config_base import ConfigError, load_model
from controller.data import db, flags
from controller.data.db import Secrets
from controller.data.embedded_db import EmbeddedDbError

# Wide enough for the tables when output goes to a file or a pipe (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 160)


@dataclass(frozen=True)
class Context:
    config: ControllerConfig
    secrets: Secrets

    def flag_specs(self) -> flags.FlagsFile:
        return load_model(flags.FlagsFile, self.config.resolve(self.config.flags.file))


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: …` to stderr and return the exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


def actor() -> str:
    return f"cli:{getpass.getuser()}"


def connect(ctx: Context) -> psycopg.Connection:
    """A connection to the configured database, or a clean exit that says why not."""
    try:
        return db.connect(ctx.config.database, ctx.secrets)
    except (ConfigError, EmbeddedDbError) as exc:
        raise fail(str(exc)) from None
    except psycopg.OperationalError as exc:
        raise fail(f"cannot connect to the database: {db.one_line(exc)}") from None


def require_schema(conn: psycopg.Connection) -> None:
    if conn.execute("select to_regclass('flags')").fetchone()[0] is None:
        raise fail("the database has no flags table yet: run python -m controller migrate")


def load_specs(ctx: Context) -> flags.FlagsFile:
    try:
        return ctx.flag_specs()
    except ConfigError as exc:
        raise fail(f"invalid configuration\n{exc}") from None


def parse_time(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"not an ISO 8601 time: {text!r} (e.g. 2018-01-25T12:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


ReplayOption = Annotated[Path | None, typer.Option(help="scan recorded candles from this folder, not the exchange")]
ExchangeOption = Annotated[str | None, typer.Option(help="exchange of the recorded files to use (replay)")]
SymbolsOption = Annotated[str | None, typer.Option(help="comma-separated pairs, e.g. ETH-BTC,LTC-BTC")]
