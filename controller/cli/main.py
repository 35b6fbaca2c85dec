"""The typer app: `python -m controller …`. Each command group lives in its own module and registers here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bridge.version import VERSION
from controller.cli import access, data, db, ml, ops, phase, report, scan, shadow, trade
from controller.cli.base import Context, fail
from controller.config import DEFAULT_CONFIG, load_config, load_secrets
from controller.config_base import ConfigError
from controller.ops import logs

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Trading control plane around Hummingbot.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(VERSION)
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Path, typer.Option("--config", "-c", help="controller config file")] = DEFAULT_CONFIG,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the release version and exit")] = False,
) -> None:
    """Load and validate the configuration before any command runs."""
    try:
        loaded = load_config(config)
        secrets = load_secrets()
    except ConfigError as exc:
        raise fail(f"invalid configuration\n{exc}") from None
    logs.configure(loaded.log.level)
    ctx.obj = Context(loaded, secrets)


for group in (db, scan, data, ops, trade, ml, shadow, phase, report, access):
    group.register(app)
