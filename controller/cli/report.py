"""`report --out FILE.html`: the dashboard as one self-contained HTML file (Plotly inlined, no network)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.base import Context, connect, console, fail, require_schema


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)


def report_cmd(ctx: typer.Context, out: Annotated[Path, typer.Option(
        "--out", help="HTML file to write (its folder must exist)")] = Path("report.html")) -> None:
    """Write the HTML report: headline figures, equity, P&L, funnel, trades on the price chart, open positions, ML,
    shadows, storage, phases."""
    path = report_command(ctx.obj, out)
    console.print(f"report written to {path}", highlight=False)


def report_command(ctx_obj: Context, out: Path) -> Path:
    from controller.ops.report import build_html, read_report  # plotly only when a report is asked for

    if not out.parent.is_dir():
        raise fail(f"--out: folder {out.parent} does not exist")
    with connect(ctx_obj) as conn:
        require_schema(conn)
        # the paper balance per quote currency is the capital the net return and drawdown % are of
        capital = {quote: rule.balance for quote, rule in ctx_obj.config.sizing.quotes.items()}
        data = read_report(conn, capital, "sizing.quotes.<quote>.balance of the controller config")
    out.write_text(build_html(data, generated_at=datetime.now(UTC)), encoding="utf-8")
    return out.resolve()
