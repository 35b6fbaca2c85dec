"""Phases 3 and 4 of the offline demo, through the `ml` and `shadow` packages' public functions.

3. ML (issues #12, #14): events labelled over the recorded candles *before* the phase-3 window only, and
   only those whose label horizon ends before it (walk-forward: nothing of the window leaks into training);
   each strategy's model validated by purged walk-forward folds, registered and put through the promotion
   gate (its reason printed either way); then `ml.enabled` (the phase-3 flags) and the window replayed with
   the executor and the ML scorer, so each candidate is scored into its arm (boosted or control).
4. Shadows (issues #13, #14): the phase-4 flags; the shadow evaluator's pass (`shadow.service.run_pass`)
   over the scans replayed so far; the leaderboard (CHAMPION, CONSERVATIVE, AGGRESSIVE, ...); the
   recommendation or why none is made; a recommendation applied with `shadow.apply` when one is made, and
   the rollback monitor's verdict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import pandas as pd
import psycopg
from rich.table import Table

from controller.data import flags
from controller.scan.strategy_params import StrategiesConfig, load_strategies
from ml.events import Recording, events_from_series, load_candles, recordings
from ml.retrain import train_and_register
from ml.scoring import MlScorer
from shadow.apply import ApplyRefused, apply, monitor
from shadow.recommend import NoRecommendation
from shadow.service import data_time, run_pass
from shadow.variations import load as load_variation_file


class Demo(Protocol):
    """What the phases use of offline.demo's Demo (offline.demo imports this module, not the reverse)."""

    config: Any
    specs: flags.FlagsFile
    store: Any  # its pool lends the scan's per-cycle lookups a connection

    @property
    def selection(self) -> Any: ...

    @property
    def core(self) -> tuple[str, ...]: ...

    @property
    def clock(self) -> Any: ...

    def conn(self) -> psycopg.Connection: ...


# replay `hours` more with the executor, the scan scoring with this ML scorer; returns the scans made
Replay = Callable[[float, str, MlScorer], Awaitable[int]]


def _strategies(demo: Demo) -> StrategiesConfig:
    return load_strategies(demo.config.resolve(demo.config.loop.strategies_file),
                           demo.config.resolve(demo.config.loop.tiers_file))


def _flags(demo: Demo) -> dict[str, Any]:
    with demo.conn() as conn:
        return dict(flags.live_values(conn, demo.specs))


def training_series(demo: Demo, before: datetime) -> list[tuple[Recording, pd.DataFrame]]:
    """The recorded pairs phases 3 and 4 scan (and any BTC reference) cut to the candles closed before `before`."""
    selection = demo.selection
    wanted = set(demo.core)  # the pairs phases 3 and 4 scan
    out = []
    for recording in recordings(selection.folder):
        mine = recording.exchange == selection.exchange and recording.symbol in wanted
        if not mine and not recording.symbol.startswith("BTC-"):
            continue
        candles = load_candles(recording.path)
        step = pd.Timedelta(recording.timeframe.replace("m", "min"))
        candles = candles[candles["ts"] + step <= pd.Timestamp(before)].reset_index(drop=True)
        if len(candles) >= 60:
            out.append((recording, candles))
    return out


def train_before(demo: Demo, window_start: datetime, console: Any) -> dict[str, str]:
    """Train, register and gate a model per strategy on what was known before `window_start`; the verdicts."""
    strategies = _strategies(demo)
    series = training_series(demo, window_start)
    events, candles = events_from_series(series, strategies, demo.config.ml.costs)
    if not events.empty:
        events = events[pd.to_datetime(events["horizon_end"], utc=True) < pd.Timestamp(window_start)]
    console.print(f"  training: {len(events)} labelled entries from {candles} candles before "
                  f"{window_start:%Y-%m-%d %H:%M} (labels ending before the window only)")
    threshold = float(_flags(demo)["ml.min_confidence"])
    with demo.conn() as conn:
        outcome = train_and_register(conn, events.reset_index(drop=True), demo.config.ml, threshold, actor="demo",
                                     promote=True, strategies=strategies)
        conn.commit()
    verdicts = dict(outcome.verdicts)
    for name, result in outcome.results.items():
        if "refused" in result:
            verdicts[name] = f"not trained: {result['refused']}"
    for name in sorted(verdicts):
        console.print(f"  {name}: {verdicts[name]}", highlight=False)
    return verdicts


async def run_phase3(demo: Demo, hours: float, replay: Replay, console: Any) -> None:
    window_start = demo.clock.now()
    console.print(f"phase 3: ML trained walk-forward on the candles before {window_start:%Y-%m-%d %H:%M}, "
                  f"then {hours:g} h replayed with ml.enabled")
    train_before(demo, window_start, console)
    with demo.conn() as conn:
        active = conn.execute("select count(*) from ml_models where active").fetchone()[0]
    if not active:
        console.print("  [yellow]no model passed the promotion gate (reasons above): the window is replayed "
                      "with ML scoring nothing[/]")
    await replay(hours, "ML: ", scorer(demo))
    with demo.conn() as conn:
        arms = conn.execute("select arm, count(*) from ml_predictions group by 1 order by 1").fetchall()
    console.print("  ml_predictions by arm: " + (", ".join(f"{a} {n}" for a, n in arms) or "none"))
    if not active:
        console.print("  [yellow]so the checklist's 100+ ML-influenced trades cannot hold on this data: with no "
                      "active model no signal is boosted (each strategy's reason is printed above)[/]")


def scorer(demo: Demo) -> MlScorer:
    """The ML booster of the scan: it scores only with ml.enabled and an active model."""
    return MlScorer(demo.store.pool.connection, _strategies(demo), demo.config.ml, demo.selection.exchange)


def leaderboard(demo: Demo) -> list[tuple[Any, ...]]:
    with demo.conn() as conn:
        return conn.execute(
            "select strategy, name, window_h, trades, win_rate_pct, avg_pnl_pct, total_pnl_pct, paired_n,"
            " mean_diff_pct, q_value, windows_h, q_shown from dashboard_shadow_leaderboard order by strategy,"
            " window_h, name = 'CHAMPION' desc, name").fetchall()


def top_rows(rows: list[tuple[Any, ...]], limit: int = 10) -> list[tuple[Any, ...]]:
    """The rows worth reading first: each strategy's CHAMPION on its longest window, then the variations most
    clearly different from it (lowest stored q), then those with the most trades."""
    longest = {}
    for row in rows:
        longest[row[0]] = max(longest.get(row[0], row[2]), row[2])
    champions = [r for r in rows if r[1] == "CHAMPION" and r[2] == longest[r[0]]]
    others = sorted((r for r in rows if r not in champions),
                    key=lambda r: (r[9] is None, r[9] if r[9] is not None else 0.0, -(r[3] or 0)))
    return (champions + others)[:limit]


async def run_phase4(demo: Demo, hours: float, replay: Replay, console: Any, paper_now: Callable[[], datetime],
                     every_h: float = 4.0) -> None:
    """The evaluator beside the replay, as `controller run` schedules it beside the scan: a pass on the scans so
    far, then one every `every_h` replayed hours (outcomes resolve as later candles arrive); a recommendation
    is applied (the demo turns `shadow.apply` on, as a user would) and the rollback monitor watches the trades
    closed after it."""
    strategies = _strategies(demo)
    spec = load_variation_file()
    with demo.conn() as conn:
        flags.set_many(conn, demo.specs, {"shadow.apply": True}, "demo")
    live = _flags(demo)
    console.print(f"phase 4: shadow.apply={live['shadow.apply']}; an evaluation pass on the scans so far, then "
                  f"every {every_h:g} h of {hours:g} h replayed on (outcomes resolve on the candles that follow)")
    state = Phase4()
    with demo.conn() as conn:
        now = data_time(conn)
        if now is not None:
            _pass(demo, conn, strategies, spec, live, now, paper_now, console, state)
    left = hours
    while left > 0 and demo.clock.now() < demo.selection.end:
        await replay(min(every_h, left), "shadows: ", scorer(demo))
        left -= every_h
        with demo.conn() as conn:
            now = data_time(conn)
            _pass(demo, conn, strategies, spec, live, now, paper_now, console, state)
    _print_leaderboard(demo, console)
    e = state.last
    if e is not None:
        console.print(f"  shadow outcomes: {state.evaluated_total} evaluated, {e.still_pending} still pending "
                      f"(their exits and time limits reach past the replayed candles), {e.performance_rows} "
                      "leaderboard rows")
    for strategy, what in state.recommendations.items():
        console.print(f"  shadow recommend {strategy}: {what}", highlight=False)
    if not state.applied:
        console.print("  no rollback: nothing was applied, so there is nothing to monitor")
    elif not state.rolled_back:
        console.print(f"  no rollback: the monitor's triggers (a {'/'.join(spec.rollback.emergency_regimes)} "
                      f"regime, a losing run rare at the baseline's loss rate, win rate down "
                      f"{spec.rollback.win_rate_drop_points:g} points or mean P&L down {spec.rollback.pnl_drop_pct:g} "
                      f"% by a sequential test after {spec.rollback.min_trades} trades) did not fire on the "
                      f"{state.trades_after_apply} trades closed since the change")


class Phase4:
    """What the passes of phase 4 found, for its summary."""

    def __init__(self) -> None:
        self.last: Any = None
        self.evaluated_total = 0
        self.recommendations: dict[str, str] = {}  # strategy -> the last pass's recommendation or why none
        self.applied: dict[int, int] = {}
        self.rolled_back: list[tuple[int, str]] = []
        self.trades_after_apply = 0
        self.applied_at: datetime | None = None


def _pass(demo: Demo, conn: psycopg.Connection, strategies: StrategiesConfig, spec: Any, live: dict[str, Any],
          now: datetime, paper_now: Callable[[], datetime], console: Any, state: Phase4) -> None:
    """One evaluation pass; a recommendation it writes is applied, and the monitor runs, on the executor's
    clock: the paper trades close on that clock, so the change must be stamped on it for the monitor to tell
    the trades before it from those after."""
    report = run_pass(conn, strategies, spec, {**live, "shadow.apply": False}, now)
    conn.commit()
    e = report.evaluation
    state.evaluated_total = conn.execute("select count(*) from shadow_outcomes where status = 'evaluated'"
                                     " and would_enter").fetchone()[0]
    state.last = e
    line = (f"  pass at {now:%Y-%m-%d %H:%M}: {e.candidates} candidates, {e.evaluated} outcomes evaluated "
            f"({state.evaluated_total} in all), {e.still_pending} pending")
    for strategy, result in report.recommendations.items():
        if isinstance(result, NoRecommendation):
            state.recommendations.setdefault(strategy, f"none: {'; '.join(result.reasons)}")
            if not state.recommendations[strategy].startswith("recommendation"):
                state.recommendations[strategy] = f"none: {'; '.join(result.reasons)}"
        else:
            what = f"{result.variation} ({result.tier}) {result.changes}"
            state.recommendations[strategy] = f"recommendation {what} at {now:%Y-%m-%d %H:%M}"
            line += f"; {strategy}: recommends {what}"
    console.print(line, highlight=False)
    for note in e.notes:
        console.print(f"    note: {note}", highlight=False)
    for rec_id in report.written.values():
        try:
            version = apply(conn, rec_id, strategies, live, paper_now())
            state.applied[rec_id] = version
            state.applied_at = state.applied_at or paper_now()
            console.print(f"  applied recommendation {rec_id} with shadow.apply: strategy_params version {version} "
                          "active; the scan trades on it from now on", highlight=False)
        except ApplyRefused as exc:
            console.print(f"  not applied: {exc}", highlight=False)
        conn.commit()
    for rec_id, reason in [*report.rolled_back, *monitor(conn, strategies, spec.rollback, paper_now())]:
        state.rolled_back.append((rec_id, reason))
        console.print(f"  rolled back recommendation {rec_id}: {reason}", highlight=False)
    conn.commit()
    if state.applied_at is not None:
        state.trades_after_apply = conn.execute("select count(*) from trades where closed_at >= %s",
                                                (state.applied_at,)).fetchone()[0]


def _print_leaderboard(demo: Demo, console: Any) -> None:
    rows = leaderboard(demo)
    shown = top_rows(rows)
    table = Table(title=f"shadow leaderboard (dashboard_shadow_leaderboard): the top {len(shown)} of {len(rows)} rows")
    for column in ("strategy", "variation", "window h", "trades", "win %", "avg %", "total %", "paired n",
                   "diff % vs CHAMPION", "q"):
        table.add_column(column)
    for strategy, name, _, trades, win, avg, total, n, diff, _, windows, q_shown in shown:
        # the figures as the view rounded them, q as `shadow report` shows it
        table.add_row(strategy, name, "/".join(str(h) for h in windows or ()),
                      *("-" if v is None else str(v) for v in (trades, win, avg, total, n, diff, q_shown)))
    console.print(table)
    if len(rows) > len(shown):
        console.print(f"  ... and {len(rows) - len(shown)} more rows: `python -m controller shadow report` or the "
                      "HTML report show them all")
