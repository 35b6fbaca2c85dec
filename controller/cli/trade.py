"""`python -m controller close SIGNAL_ID | --all`: ask the executor to exit a position at market (reason manual)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import typer

from controller.cli.base import actor, connect, console, fail


def register(app: typer.Typer) -> None:
    app.command("close")(close_cmd)


def close_cmd(ctx: typer.Context,
              signal_id: Annotated[str | None, typer.Argument(help="the signal whose position to close")] = None,
              close_all: Annotated[bool, typer.Option("--all", help="every executing signal")] = False) -> None:
    """Ask the bot executing a signal to exit at market (reason manual) on its next claim cycle."""
    if (signal_id is None) == (not close_all):
        raise fail("give a SIGNAL_ID or --all (not both)")
    target = None
    if signal_id is not None:
        try:
            target = UUID(signal_id)
        except ValueError:
            raise fail(f"not a signal id: {signal_id!r}") from None
    with connect(ctx.obj) as conn:
        flagged = [row[0] for row in conn.execute("select * from request_close(%s, %s)", (target, actor()))]
        if target is not None and not flagged:
            row = conn.execute("select status from signals where id = %s", (target,)).fetchone()
            raise fail(f"signal {target} is {'unknown' if row is None else row[0]}, not executing: nothing to close")
    for flagged_id in flagged:
        console.print(f"close requested: {flagged_id} (the executor exits it at market, reason manual)")
    if not flagged:
        console.print("no executing signal to close")
