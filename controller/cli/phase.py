"""`phase check N|all [--json]`: each rollout phase's success criteria, read from the database, as a checklist."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from controller.cli.base import Context, connect, console, fail, require_schema
from controller.ops.phase_check import PHASES, PhaseResult, check

phase_app = typer.Typer(no_args_is_help=True, help="Recovery phases: their success criteria.")


def register(app: typer.Typer) -> None:
    app.add_typer(phase_app, name="phase")


def parse_phases(text: str) -> list[int]:
    """'all' -> 1..4; '2' -> [2]; anything else is a usage error."""
    if text == "all":
        return list(PHASES)
    if text.isdigit() and int(text) in PHASES:
        return [int(text)]
    raise fail(f"phase must be 1, 2, 3, 4 or all, got {text!r}")


def checklist(result: PhaseResult) -> Table:
    verdict = "[green]holds[/]" if result.ok else "[red]does not hold[/]"
    table = Table(title=f"phase {result.phase}: {result.title}: {verdict}", title_justify="left")
    table.add_column("", width=2)
    table.add_column("criterion")
    table.add_column("figure")
    for c in result.checks:
        table.add_row("[green]✓[/]" if c.ok else "[red]✗[/]", c.name, c.figure)
    return table


@phase_app.command("check")
def check_cmd(ctx: typer.Context,
              phase: Annotated[str, typer.Argument(help="1, 2, 3, 4 or all")],
              as_json: Annotated[bool, typer.Option("--json", help="print the checklist as JSON")] = False) -> None:
    """Check a phase's success criteria against the database; exit 0 when all hold, 1 otherwise."""
    raise typer.Exit(check_command(ctx.obj, parse_phases(phase), as_json=as_json))


def check_command(ctx_obj: Context, phases: list[int], *, as_json: bool = False) -> int:
    with connect(ctx_obj) as conn:
        require_schema(conn)
        results = check(conn, phases)
    ok = all(r.ok for r in results)
    if as_json:
        print(json.dumps({"ok": ok, "phases": [r.as_dict() for r in results]}, indent=2))
    else:
        for result in results:
            console.print(checklist(result), highlight=False)
    return 0 if ok else 1
