"""The `settings`, `recommend` and `rollback` sections of `conf/variations.yml`.

Defaults are the seed system's values (SEED_SYSTEM.md §5): confidence tiers, adjustment limits, safety
rules and rollback triggers.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from controller.config_base import Frozen


class ShadowSettings(Frozen):
    fee_pct: float = Field(0.1, ge=0, le=5, description="taker fee per side, percent (Binance spot 0.1)")
    slippage_pct: float = Field(0.05, ge=0, le=5, description="adverse fill distance per side, percent")
    champion_ml_threshold: float | None = Field(None, ge=0, le=1,
                                                description="the live ML gate, when there is one")
    min_agreement: float = Field(0.8, ge=0, le=1, description="share of comparable real trades CHAMPION's replay "
                                                              "matches (exit reason and net P&L) before any "
                                                              "recommendation")
    pnl_match_points: float = Field(0.25, ge=0, le=10, description="a replayed trade matches a real one when the "
                                                                   "exit reasons agree and the net P&L differ by "
                                                                   "at most this many percentage points")
    min_calibration_trades: int = Field(5, ge=0, description="real trades needed to judge agreement (0: no "
                                                                         "calibration gate)")
    bootstrap_samples: int = Field(2000, ge=100, le=100000)
    seed: int = 13
    windows_h: tuple[int, ...] = Field((24, 72, 168, 720), min_length=1, description="statistics windows, hours")
    evaluate_every_s: int = Field(300, ge=10, description="the evaluator's schedule beside the scan loop")


class Tier(Frozen):
    """A confidence tier: the evidence a variation needs before its tested parameters are recommended."""

    trades: int = Field(ge=1)
    outperformance_pct: float = Field(ge=0, description="variation win rate minus CHAMPION's, points")
    max_q: float = Field(gt=0, le=1, description="Benjamini-Hochberg adjusted p-value at most this")
    days: float = Field(gt=0, description="days the evidence spans, at least this")


class Limit(Frozen):
    """Per adjustment: at most `max_change` (a fraction of the current value), and never out of [min, max]
    where a range is given (a bound of None: none on that side)."""

    max_change: float = Field(gt=0, le=1)
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _range(self) -> Limit:
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min:g}) must be below max ({self.max:g})")
        return self


def _tiers() -> dict[str, Tier]:
    return {"HIGH": Tier(trades=100, outperformance_pct=10, max_q=0.01, days=3),
            "MEDIUM": Tier(trades=50, outperformance_pct=5, max_q=0.05, days=2),
            "LOW": Tier(trades=30, outperformance_pct=3, max_q=0.10, days=1)}


def _limits() -> dict[str, Limit]:
    # Seed ADJUSTMENT_LIMITS in this project's units (percent for *_pct; breakout as a factor).
    return {"stop_loss_pct": Limit(max_change=0.20, min=3.0, max=10.0),
            "take_profit_pct": Limit(max_change=0.15),
            "min_drop_pct": Limit(max_change=0.20, min=2.0, max=10.0),
            "breakout_factor": Limit(max_change=0.25, min=0.02, max=0.08)}


class RecommendConfig(Frozen):
    tiers: dict[str, Tier] = Field(default_factory=_tiers, description="tried in order, first passing wins")
    limits: dict[str, Limit] = Field(default_factory=_limits, description="per-key bounds on top of the step "
                                                                          "ratio every changed key obeys")
    step_ratio_min: float = Field(0.5, gt=0, le=1, description="a changed value is at least this times the "
                                                               "current one (seed: x0.5-1.5)")
    step_ratio_max: float = Field(1.5, ge=1, description="and at most this times")
    window_h: int = Field(72, ge=1, description="the statistics window recommendations are drawn from")
    regime_stable_h: float = Field(12, ge=0, description="the regime has not changed for this long")
    max_per_day: int = Field(3, ge=0, description="applied adjustments per 24 h, all strategies")
    canary_share: float = Field(0.0, ge=0, lt=1, description="an applied change first trades on this share of "
                                                             "the decisions, drawn at random, the rest on the "
                                                             "previous parameters, until its monitoring window "
                                                             "passes (0: all at once)")


class RollbackConfig(Frozen):
    monitor_h: float = Field(48, gt=0, description="how long after a change live results are watched")
    emergency_regimes: tuple[str, ...] = Field(("PANIC",), description="a scan reading one of these regimes "
                                                                       "after a change rolls it back at once")
    false_alarm: float = Field(0.05, gt=0, lt=1, description="the monitor's false-alarm rate on an unchanged "
                                                             "strategy, shared by its three tests")
    run_share: float = Field(0.2, gt=0, lt=1, description="the losing-run test's share of false_alarm; the "
                                                          "win-rate and P&L tests split the rest")
    run_horizon_trades: int = Field(50, ge=1, description="trades over which a losing run's chance is bounded")
    tau_sd: float = Field(0.5, gt=0, description="the sequential tests' mixture scale, in baseline standard "
                                                 "deviations: the drop they are most sensitive to")
    win_rate_drop_points: float = Field(15, gt=0, description="a win-rate alarm also needs a drop this large")
    consecutive_stops: int = Field(3, ge=1, description="the shortest losing run that can trigger, whatever "
                                                        "the baseline")
    pnl_drop_pct: float = Field(20, gt=0, description="a P&L alarm also needs the mean down this much "
                                                      "relative to the baseline")
    min_trades: int = Field(5, ge=1, description="trades after the change before win rate and P&L are judged")
    shadow_false_alarm: float = Field(0.02, gt=0, lt=1, description="the live-shadow test's false-alarm rate: "
                                                                    "applied vs previous parameters on the same "
                                                                    "candles")
    gradual_false_alarm: float = Field(0.2, gt=0, lt=1, description="the 50 % revert's false-alarm rate on an "
                                                                     "unchanged strategy, judged once per window")
    min_baseline_trades: int = Field(10, ge=2, description="trades before the change needed to judge win rate "
                                                           "and P&L against them")
