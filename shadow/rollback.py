"""Rollback triggers: after an applied change, live results against the pre-change baseline, judged by
tests that keep a stated false-alarm rate however often the monitor looks.

Within `monitor_h` of the change, the first of these that holds names the reason:

- a run of losing exits (every exit with P&L <= 0, whatever its reason) at least as long as the shortest
  run whose chance in `run_horizon_trades` trades at the baseline's loss rate is below the run share of
  `false_alarm` (`stats.sequential.run_threshold`), and never shorter than `consecutive_stops`;
- once `min_trades` trades closed and the baseline has `min_baseline_trades`: the win rate, or the mean
  P&L per trade, below the baseline by a one-sided mixture SPRT (`stats.sequential.mixture_sprt`, an
  always-valid test: looking after every trade does not add false alarms) at its share of `false_alarm`,
  and the drop at least as large as `win_rate_drop_points` / `pnl_drop_pct` (statistically there and
  large enough to matter).

Emergency: a scan that reads a regime in `emergency_regimes` (PANIC) after the change rolls it back at
once. Gradual (the seed's "48 h of underperformance -> revert 50 %"): a change that tripped nothing but
whose window's mean P&L sits below the baseline (`underperforms`) moves half-way back; if the next
`monitor_h` after that do not recover (the same test against the same baseline), it is rolled back fully.

The three shares add up to `false_alarm` (Bonferroni), so the monitor's false-alarm rate on an unchanged
strategy is at most `false_alarm` in the tests' model (independent trades, the baseline's rates);
`bench/shadow_stats.py` measures it on resampled real trades. The baseline is the live book before the
change, so a drift of the market between the two periods still shows as a drop: comparing with a live
shadow of the old parameters on the same candles is what removes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from shadow.settings import RollbackConfig
from stats.sequential import mixture_sprt, run_threshold


@dataclass(frozen=True)
class LiveTrade:
    closed_at: datetime
    exit_reason: str
    pnl_pct: float
    arm: str | None = None  # during a canary: "canary" (the applied parameters) or "control"


@dataclass(frozen=True)
class Baseline:
    trades: int
    win_rate_pct: float
    mean_pnl_pct: float
    sd_pnl_pct: float = 0.0
    losses: int | None = None  # exits with P&L <= 0 (None: from the win rate)

    @property
    def loss_count(self) -> int:
        return self.losses if self.losses is not None else round(self.trades * (1 - self.win_rate_pct / 100))


def baseline_of(trades: list[LiveTrade]) -> Baseline | None:
    if not trades:
        return None
    pnl = np.array([t.pnl_pct for t in trades], dtype=np.float64)
    wins = int((pnl > 0).sum())
    sd = float(pnl.std(ddof=1)) if len(pnl) > 1 else 0.0
    return Baseline(len(pnl), wins / len(pnl) * 100, float(pnl.mean()), sd, len(pnl) - wins)


def loss_run_needed(baseline: Baseline | None, config: RollbackConfig) -> int:
    """The run of losing exits that triggers a rollback. The loss rate is the baseline's with one loss and
    one win added (Laplace), so a short baseline (or none: 1/2) is not read as a certainty."""
    trades, losses = (baseline.trades, baseline.loss_count) if baseline else (0, 0)
    rate = (losses + 1) / (trades + 2)
    alpha = config.false_alarm * config.run_share
    return max(config.consecutive_stops, run_threshold(rate, config.run_horizon_trades, alpha))


def emergency(applied_at: datetime, now: datetime, readings: list[tuple[datetime, str, str]],
              config: RollbackConfig) -> str | None:
    """Why the change must be rolled back at once because of the market, or None. `readings`: (scan time,
    regime, what it read) as the scans recorded them. A regime in `emergency_regimes` (PANIC) at or after the
    change, within its monitoring window, rolls it back whatever the trades say: parameters tuned on a calmer
    market are not the ones to hold through a crash."""
    end = min(now, applied_at + timedelta(hours=config.monitor_h))
    for at, regime, read in sorted(readings):
        if applied_at <= at <= end and regime in config.emergency_regimes:
            return f"emergency: the regime turned {regime} at {at:%Y-%m-%d %H:%M} UTC ({read})"
    return None


def trigger(applied_at: datetime, now: datetime, baseline: Baseline | None, after: list[LiveTrade],
            config: RollbackConfig, *, with_shadow: bool = False) -> str | None:
    """Why the change must be rolled back, or None. `after`: trades closed since the change, oldest first.
    `with_shadow`: the previous parameters are replayed beside the applied ones (`against_previous` judges
    performance on the same candles), so the win-rate and P&L tests against the earlier book, which also
    see the market's drift between the two periods, are left to it; the losing run still counts."""
    if now > applied_at + timedelta(hours=config.monitor_h):
        return None
    watched = [t for t in after if applied_at <= t.closed_at <= applied_at + timedelta(hours=config.monitor_h)]
    needed = loss_run_needed(baseline, config)
    run = 0
    for trade in watched:
        run = run + 1 if trade.pnl_pct <= 0 else 0
        if run >= needed:
            return f"{run} consecutive losing exits since the change (a run this long: under " \
                   f"{config.false_alarm * config.run_share:.1%} in {config.run_horizon_trades} trades at the " \
                   f"baseline's loss rate)"
    if with_shadow or baseline is None or baseline.trades < config.min_baseline_trades \
            or len(watched) < config.min_trades:
        return None
    pnl = np.array([t.pnl_pct for t in watched], dtype=np.float64)
    share = (1 - config.run_share) / 2
    p0 = baseline.win_rate_pct / 100
    if 0 < p0 < 1:
        sd = math.sqrt(p0 * (1 - p0))
        wins = mixture_sprt((pnl > 0).astype(np.float64), p0, sd, alpha=config.false_alarm * share,
                            tau=config.tau_sd * sd)
        drop = baseline.win_rate_pct - wins.mean * 100
        if wins.rejects and drop >= config.win_rate_drop_points:
            return (f"win rate {wins.mean * 100:.1f} % over {wins.n} trades, down {drop:.1f} points from "
                    f"{baseline.win_rate_pct:.1f} % (sequential p {wins.p_value:.3f})")
    if baseline.sd_pnl_pct > 0:
        mean = mixture_sprt(pnl, baseline.mean_pnl_pct, baseline.sd_pnl_pct, alpha=config.false_alarm * share,
                            tau=config.tau_sd * baseline.sd_pnl_pct)
        drop = baseline.mean_pnl_pct - mean.mean
        if mean.rejects and drop >= config.pnl_drop_pct / 100 * abs(baseline.mean_pnl_pct):
            return (f"mean P&L {mean.mean:+.2f} % per trade over {mean.n} trades, down {drop:.2f} points from "
                    f"{baseline.mean_pnl_pct:+.2f} % (sequential p {mean.p_value:.3f})")
    return None


def underperforms(baseline: Baseline | None, after: list[LiveTrade], config: RollbackConfig) -> str | None:
    """The gradual trigger, judged once at the end of a monitoring window: why the trades of the window
    underperformed the baseline, or None. The mean P&L per trade is below the baseline's by the mixture
    SPRT at `gradual_false_alarm` (looser than the immediate tests: what follows is a half step back that
    the next window can undo), and at least `min_trades` trades closed."""
    if baseline is None or baseline.trades < config.min_baseline_trades or baseline.sd_pnl_pct <= 0:
        return None
    if len(after) < config.min_trades:
        return None
    pnl = np.array([t.pnl_pct for t in after], dtype=np.float64)
    test = mixture_sprt(pnl, baseline.mean_pnl_pct, baseline.sd_pnl_pct, alpha=config.gradual_false_alarm,
                        tau=config.tau_sd * baseline.sd_pnl_pct)
    if not test.rejects:
        return None
    return (f"mean P&L {test.mean:+.2f} % per trade over {test.n} trades in {config.monitor_h:g} h, below the "
            f"baseline's {baseline.mean_pnl_pct:+.2f} % (sequential p {test.p_value:.3f})")


def half_way(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """Stored parameters ({"default": {...}, "tiers": {...}}) half-way back from `current` to `previous`:
    every value that differs moves half the distance (integers rounded toward `previous`)."""
    def mid(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
        out = dict(now)
        for key, value in now.items():
            old = before.get(key, value)
            if value == old or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(value, int) and isinstance(old, int):
                out[key] = value + math.ceil((old - value) / 2) if old > value else value - math.ceil((value - old) / 2)
            else:
                out[key] = round(value + (old - value) / 2, 10)
        return out
    tiers = {tier: mid(p, previous.get("tiers", {}).get(tier, previous["default"]))
             for tier, p in current.get("tiers", {}).items()}
    return {"default": mid(current["default"], previous["default"]), "tiers": tiers}


def against_previous(better: np.ndarray, config: RollbackConfig) -> str | None:
    """The live-shadow trigger: on the candidates since the change where the applied parameters and the
    previous ones (replayed beside them on the same candles) came out differently, `better` is 1 where the
    applied did better, 0 where worse. With no difference between the two sets each is a fair coin, a
    null whose variance is known (1/4), so the mixture SPRT's false-alarm rate holds however often it looks;
    the market's drift is the same for both sides and cancels. Fires when the applied set does worse at
    `shadow_false_alarm`."""
    if len(better) < config.min_trades:
        return None
    test = mixture_sprt(better.astype(np.float64), 0.5, 0.5, alpha=config.shadow_false_alarm, tau=config.tau_sd * 0.5)
    if not test.rejects:
        return None
    return (f"on the same candles the previous parameters did better on {test.n - round(test.mean * test.n)} of "
            f"{test.n} candidates where the two differed (sequential p {test.p_value:.3f})")
