"""Rollback triggers: after an applied change, live results against the pre-change baseline.

Within `monitor_h` of the change: `consecutive_stops` stop losses in a row, or (once `min_trades` trades
closed) the win rate down `win_rate_drop_points` points, or the mean P&L per trade down `pnl_drop_pct` %
of the baseline's magnitude. The first that holds names the reason; the caller records the rollback as a
new row pointing at the change and activates the previous parameters again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shadow.settings import RollbackConfig


@dataclass(frozen=True)
class LiveTrade:
    closed_at: datetime
    exit_reason: str
    pnl_pct: float


@dataclass(frozen=True)
class Baseline:
    trades: int
    win_rate_pct: float
    mean_pnl_pct: float


def baseline_of(trades: list[LiveTrade]) -> Baseline | None:
    if not trades:
        return None
    wins = sum(t.pnl_pct > 0 for t in trades)
    return Baseline(len(trades), wins / len(trades) * 100, sum(t.pnl_pct for t in trades) / len(trades))


def trigger(applied_at: datetime, now: datetime, baseline: Baseline | None, after: list[LiveTrade],
            config: RollbackConfig) -> str | None:
    """Why the change must be rolled back, or None. `after`: trades closed since the change, oldest first."""
    if now > applied_at + timedelta(hours=config.monitor_h):
        return None
    watched = [t for t in after if applied_at <= t.closed_at <= applied_at + timedelta(hours=config.monitor_h)]
    run = 0
    for trade in watched:
        run = run + 1 if trade.exit_reason == "stop_loss" else 0
        if run >= config.consecutive_stops:
            return f"{run} consecutive stop losses since the change"
    if baseline is None or len(watched) < config.min_trades:
        return None
    live = baseline_of(watched)
    assert live is not None
    if baseline.win_rate_pct - live.win_rate_pct >= config.win_rate_drop_points:
        return (f"win rate {live.win_rate_pct:.1f} % over {live.trades} trades, down "
                f"{baseline.win_rate_pct - live.win_rate_pct:.1f} points from {baseline.win_rate_pct:.1f} %")
    drop = baseline.mean_pnl_pct - live.mean_pnl_pct
    if drop > 0 and drop >= config.pnl_drop_pct / 100 * abs(baseline.mean_pnl_pct):
        return (f"mean P&L {live.mean_pnl_pct:+.2f} % per trade, down {drop:.2f} points from "
                f"{baseline.mean_pnl_pct:+.2f} % (more than {config.pnl_drop_pct:g} %)")
    return None
