"""`shadow evaluate | report | calibrate | recommend | apply ID | rollback ID`: shadow testing by hand.

The evaluator also runs beside `run` on its own schedule while the flag `shadow.enabled` is on.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from controller.cli.base import Context, connect, console, fail, parse_time, require_schema
from controller.config_base import ConfigError
from controller.data import flags
from stats.pvalues import PValue

shadow_app = typer.Typer(no_args_is_help=True, help="Shadow variations: evaluate, report, recommend, apply, roll back.")

VariationsOption = Annotated[Path | None, typer.Option("--variations", help="variations file "
                                                       "(default conf/variations.yml)")]
AtOption = Annotated[str | None, typer.Option("--at", help="evaluate as of this time, ISO 8601 (default: the end "
                                                            "of the newest scanned candle)")]


def register(app: typer.Typer) -> None:
    app.add_typer(shadow_app, name="shadow")


def _load(ctx: Context, variations: Path | None) -> tuple[Any, Any]:
    from controller.scan.strategy_params import load_strategies
    from shadow.variations import DEFAULT_VARIATIONS, load

    config = ctx.config
    try:
        conf = load_strategies(config.resolve(config.loop.strategies_file), config.resolve(config.loop.tiers_file))
        spec = load(config.resolve(variations) if variations else DEFAULT_VARIATIONS)
        from shadow.variations import build

        build(spec, conf, variations or DEFAULT_VARIATIONS)  # every variation validated before anything runs
    except ConfigError as exc:
        raise fail(str(exc)) from None
    return conf, spec


def _flags(ctx: Context, conn: psycopg.Connection) -> dict[str, Any]:
    return dict(flags.live_values(conn, ctx.flag_specs()))


def _now(conn: psycopg.Connection, at: str | None) -> datetime:
    from shadow.service import data_time

    when = parse_time(at) or data_time(conn)
    if when is None:
        raise fail("no scans in the database yet: nothing to evaluate (run a scan first, or pass --at)")
    return when


def _pass(ctx: Context, variations: Path | None, at: str | None, *, recommend_now: bool) -> Any:
    from shadow.service import run_pass

    conf, spec = _load(ctx, variations)
    with connect(ctx) as conn:
        require_schema(conn)
        now = _now(conn, at)
        live = _flags(ctx, conn)
        if not live.get("shadow.enabled", False):
            console.print("[yellow]note: shadow.enabled is off; the loop does not evaluate, this run is by hand[/]")
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}"),
                      console=console, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(task: str, done: int) -> None:
                if task not in tasks:
                    tasks[task] = bar.add_task(task, total=None)
                bar.update(tasks[task], completed=done)

            report = run_pass(conn, conf, spec, live, now, recommend_now=recommend_now, progress=progress)
    e = report.evaluation
    console.print(f"evaluated as of {now:%Y-%m-%d %H:%M} UTC: {e.candidates} new candidates, {e.outcomes_written} "
                  f"outcome rows, {e.evaluated} replayed ({_by_tf(e.by_timeframe)}), {e.still_pending} still pending, "
                  f"{e.performance_rows} performance rows")
    for note in e.notes[:10]:
        console.print(f"  note: {note}")
    for strategy, cal in sorted(e.calibration.items()):
        agreement = "n/a" if cal.agreement is None else f"{cal.agreement:.0%}"
        console.print(f"  calibration {strategy}: CHAMPION matches {agreement} of {cal.trades} comparable real trades "
                      f"on exit reason and net P&L (exit price error {_pct(cal.mean_exit_error_pct)}, "
                      f"P&L difference {_pct(cal.mean_pnl_diff_pct)})")
    return report


def _by_tf(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} on {tf}" for tf, n in sorted(counts.items())) or "none"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f} %"


@shadow_app.command("evaluate")
def evaluate_cmd(ctx: typer.Context, variations: VariationsOption = None, at: AtOption = None) -> None:
    """Decide every variation on the new scans, replay outcomes whose horizon passed, compute statistics."""
    _pass(ctx.obj, variations, at, recommend_now=False)


@shadow_app.command("calibrate")
def calibrate_cmd(ctx: typer.Context, variations: VariationsOption = None,
                  as_json: Annotated[bool, typer.Option("--json", help="print JSON, one entry a strategy")] = False
                  ) -> None:
    """Replay CHAMPION on the market path of every real closed trade and print, per strategy, how many of the
    comparable trades it matches on exit reason and net P&L (the figure the recommendation gate uses)."""
    import json

    from shadow.evaluate import EvaluationReport, calibrate

    _, spec = _load(ctx.obj, variations)
    with connect(ctx.obj) as conn:
        require_schema(conn)
        result = calibrate(conn, spec.settings, EvaluationReport())
    tolerance = spec.settings.pnl_match_points
    if as_json:
        console.print_json(json.dumps({strategy: {
            "comparable": cal.trades, "matches": cal.matches, "share": cal.agreement,
            "reason_share": cal.reason_agreement, "mean_pnl_gap_points": cal.mean_pnl_gap_pct,
            "worst_pnl_gap_points": cal.worst_pnl_gap_pct, "pnl_match_points": tolerance,
            "not_comparable": cal.not_comparable} for strategy, cal in sorted(result.items())}))
        return
    table = Table(title=f"CHAMPION's replay against the real trades (a match: same exit reason, net P&L within "
                        f"{tolerance:g} points)")
    for column in ("strategy", "comparable", "matches", "share", "same reason", "mean P&L gap", "worst P&L gap",
                   "not comparable"):
        table.add_column(column)
    for strategy, cal in sorted(result.items()):
        share = "n/a" if cal.agreement is None else f"{cal.agreement:.0%}"
        reasons = "n/a" if cal.reason_agreement is None else f"{cal.reason_agreement:.0%}"
        apart = ", ".join(f"{n} {why}" for why, n in sorted(cal.not_comparable.items())) or "none"
        table.add_row(strategy, str(cal.trades), str(cal.matches), share, reasons, _pct(cal.mean_pnl_gap_pct),
                      _pct(cal.worst_pnl_gap_pct), apart)
    console.print(table)


@shadow_app.command("recommend")
def recommend_cmd(ctx: typer.Context, variations: VariationsOption = None, at: AtOption = None) -> None:
    """Evaluate, then print each strategy's recommendation (written as a proposed row) or why none is made."""
    from shadow.recommend import Recommendation

    report = _pass(ctx.obj, variations, at, recommend_now=True)
    for strategy, result in sorted(report.recommendations.items()):
        if isinstance(result, Recommendation):
            rec_id = report.written.get(strategy)
            changes = "; ".join(f"{key}: " + ", ".join(f"{where} {a:g} -> {b:g}" for where, (a, b) in per.items())
                                for key, per in result.changes.items())
            console.print(f"[green]{strategy}: recommendation {rec_id}[/] from {result.variation} ({result.tier}): "
                          f"{changes}")
            ev = result.evidence
            console.print(f"  evidence: {ev['trades']} trades, win rate {ev['win_rate_pct']:.1f} % vs "
                          f"{ev['champion_win_rate_pct']:.1f} %, paired difference {ev['mean_diff_pct']:+.2f} % "
                          f"[{ev['ci'][0]:+.2f}, {ev['ci'][1]:+.2f}], q {PValue(min(1.0, ev['q_value'])).display()}")
            for note in ev.get("notes", []):
                console.print(f"  note: {note}")
            if rec_id in report.applied:
                console.print(f"  applied: strategy_params version {report.applied[rec_id]} (shadow.apply is on)")
            else:
                console.print(f"  not applied: python -m controller shadow apply {rec_id} (needs shadow.apply)")
        else:
            console.print(f"[yellow]{strategy}: no recommendation[/]")
            for reason in result.reasons[:8]:
                console.print(f"  - {reason}")
            for note in result.notes:
                console.print(f"  note: {note}")
    for note in report.notes:
        console.print(f"note: {note}")
    for rec_id, reason in report.rolled_back:
        console.print(f"[red]rolled back recommendation {rec_id}[/]: {reason}")


@shadow_app.command("report")
def report_cmd(ctx: typer.Context,
               window: Annotated[int | None, typer.Option(help="window in hours (default: all)")] = None) -> None:
    """The leaderboard (dashboard_shadow_leaderboard), and recommendations with their status."""
    with connect(ctx.obj) as conn:
        require_schema(conn)
        rows = conn.execute(
            "select strategy, name, windows_h, evidence_start, evidence_end, trades, win_rate_pct, avg_pnl_pct,"
            " total_pnl_pct, max_drawdown_pct, sharpe, mean_diff_pct, ci_low_pct, ci_high_pct, q_shown, basis"
            " from dashboard_shadow_leaderboard where %s::int is null or %s = any(windows_h)"
            " order by strategy, window_h, total_pnl_pct desc nulls last", (window, window)).fetchall()
        recs = conn.execute("select id, strategy, variation, tier, status, rollback_of, created_at from recommendations"
                            " order by id desc limit 10").fetchall()
    if not rows:
        console.print("no shadow performance yet: run python -m controller shadow evaluate")
        return
    table = Table(title="shadow leaderboard (net of fees and slippage, per unit of capital; difference to CHAMPION"
                        " as stored by the latest pass, q Benjamini-Hochberg over the pass)")
    longest = max(len(r[1]) for r in rows)
    for column in ("strategy", "variation", "window h", "evidence", "trades", "win %", "mean %", "total %",
                   "max dd %", "sharpe", "vs CHAMPION %", "95 % CI", "q", "basis"):
        # a variation's name is what a reader looks for: never cut, the figures wrap instead
        table.add_column(column, no_wrap=column == "variation", min_width=longest if column == "variation" else None)
    for r in rows:
        windows = "/".join(str(h) for h in r[2] or () if h is not None)  # "168/720": the same evidence
        table.add_row(r[0], r[1], windows, _span(r[3], r[4]), str(r[5]), _num(r[6], 1), _num(r[7], 2),
                      _num(r[8], 2), _num(r[9], 2), _num(r[10], 2), _num(r[11], 2),
                      "" if r[12] is None else f"[{r[12]:+.2f}, {r[13]:+.2f}]", r[14] or "", r[15] or "")
    console.print(table)
    for r in recs:
        undo = f", rollback of {r[5]}" if r[5] else ""
        console.print(f"recommendation {r[0]}: {r[1]} {r[2] or ''} {r[3] or ''} {r[4]}{undo} ({r[6]:%Y-%m-%d %H:%M})")


def _num(value: Any, digits: int) -> str:
    return "" if value is None else f"{float(value):.{digits}f}"


def _span(start: datetime | None, end: datetime | None) -> str:
    """The span the window's evidence covers (its first to last candidate)."""
    return "" if start is None or end is None else f"{start:%m-%d %H:%M} to {end:%m-%d %H:%M}"


@shadow_app.command("apply")
def apply_cmd(ctx: typer.Context, recommendation_id: Annotated[int, typer.Argument(help="recommendation id")],
              variations: VariationsOption = None) -> None:
    """Activate a proposed recommendation as a new strategy_params version (needs the flag shadow.apply)."""
    from datetime import UTC

    from shadow.apply import ApplyRefused, apply

    conf, _ = _load(ctx.obj, variations)
    with connect(ctx.obj) as conn:
        require_schema(conn)
        try:
            version = apply(conn, recommendation_id, conf, _flags(ctx.obj, conn), datetime.now(UTC))
        except ApplyRefused as exc:
            raise fail(str(exc)) from None
    console.print(f"recommendation {recommendation_id} applied: strategy_params version {version}; "
                  "the next scan uses it")


@shadow_app.command("rollback")
def rollback_cmd(ctx: typer.Context, recommendation_id: Annotated[int, typer.Argument(help="recommendation id")],
                 reason: Annotated[str, typer.Option(help="why, recorded on the rollback row")] = "by hand",
                 variations: VariationsOption = None) -> None:
    """Undo an applied recommendation: a new row pointing at it; the previous parameters are active again."""
    from datetime import UTC

    from shadow.apply import ApplyRefused, rollback

    conf, _ = _load(ctx.obj, variations)
    with connect(ctx.obj) as conn:
        require_schema(conn)
        try:
            row = rollback(conn, recommendation_id, conf, reason, datetime.now(UTC))
        except ApplyRefused as exc:
            raise fail(str(exc)) from None
    console.print(f"recommendation {recommendation_id} rolled back (row {row}); the previous parameters are active")
