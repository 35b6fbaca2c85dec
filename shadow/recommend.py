"""Recommendations: which variation earned a bounded step of the champion's parameters, or why none did.

Pure: the evidence comes in, a `Recommendation` (with its evidence) or the list of reasons comes out.
The gates, in order: calibration (CHAMPION's simulated exits must agree with the real trades, or the
replay is not trusted), safety (regime stable, few adjustments a day), then the seed's confidence tiers
(trades, win-rate outperformance, Benjamini-Hochberg q, days of evidence), tried from HIGH down.

What is recommended is the winning variation's parameter set exactly as it was replayed: every key it
changed, in the default and every tier, so the set that would trade is the set that earned the evidence
(its hash is the variation's). The direction is the evidence's: champion -> the variation that did better.
Each changed value must lie within `step_ratio_min`-`step_ratio_max` times the current one, within its
limit's `max_change` where it has one, and must not leave (or move further outside) the limit's absolute
range. A variation that breaks a bound is refused with the reason, never cut to a set nobody replayed; a
current value already outside its range is reported, not "corrected". A variation whose sizing or ML gate
differs from the champion's is refused too: those are not strategy parameters, so applying its strategy
parameters alone would trade a set that was not replayed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.scan.strategy_params import StrategyConfig
from shadow.settings import Limit, RecommendConfig, ShadowSettings
from shadow.stats import Paired, Summary
from shadow.variations import Variation


@dataclass(frozen=True)
class Calibration:
    """CHAMPION's simulated outcome against the real closed trades."""

    trades: int  # comparable real trades: a barrier exit, one entry fill, a replay that reached an exit
    agreement: float | None  # share of them matched on exit reason AND net P&L (within pnl_match_points)
    mean_entry_error_pct: float | None = None
    mean_exit_error_pct: float | None = None
    mean_pnl_diff_pct: float | None = None
    matches: int = 0
    reason_agreement: float | None = None  # share with the same exit reason, P&L aside
    mean_pnl_gap_pct: float | None = None  # mean |replayed - real| net P&L, points
    worst_pnl_gap_pct: float | None = None
    not_comparable: dict[str, int] = field(default_factory=dict)  # why, and how many, outside `trades`


@dataclass(frozen=True)
class Evidence:
    """One variation against CHAMPION in the recommendation window."""

    name: str
    summary: Summary
    champion: Summary
    paired: Paired
    q_value: float
    days: float

    @property
    def outperformance_pct(self) -> float:
        return (self.summary.win_rate_pct or 0.0) - (self.champion.win_rate_pct or 0.0)

    def as_json(self) -> dict[str, Any]:
        return {"variation": self.name, "trades": self.summary.trades, "champion_trades": self.champion.trades,
                "win_rate_pct": self.summary.win_rate_pct, "champion_win_rate_pct": self.champion.win_rate_pct,
                "outperformance_pct": self.outperformance_pct, "mean_diff_pct": self.paired.mean_diff,
                "ci": [self.paired.ci_low, self.paired.ci_high], "p_value": self.paired.p_value,
                "q_value": self.q_value, "paired_candidates": self.paired.n, "days": self.days}


@dataclass(frozen=True)
class Recommendation:
    strategy: str
    variation: str
    tier: str
    changes: dict[str, dict[str, Any]]  # parameter -> {tier or "default": [from, to]}
    section: StrategyConfig[Any]  # the tested variation's parameters, exactly as replayed
    evidence: dict[str, Any]


@dataclass(frozen=True)
class NoRecommendation:
    strategy: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # current values outside their range: reported only


OFFSETS = {"breakout_factor": 1.0}  # a factor: its limits and ratios read as the breakout in percent


@dataclass(frozen=True)
class Move:
    """One key of one parameter set (the default or a tier) as the variation changes it."""

    key: str
    where: str  # "default" or a tier
    current: float
    tested: float


def moves(champion: StrategyConfig[Any], variation: StrategyConfig[Any]) -> list[Move]:
    """Every value the variation changes, in the default and in each tier's complete set."""
    current, target = champion.params, variation.params
    sets = [("default", current.default, target.default)]
    sets += [(tier, current.for_tier(tier), target.for_tier(tier)) for tier in sorted(current.tiers)]
    out = []
    for where, cur_params, tgt_params in sets:
        tested = tgt_params.model_dump()
        for key, cur in cur_params.model_dump().items():
            if tested[key] != cur:
                out.append(Move(key, where, cur, tested[key]))
    return out


def _outside(value: float, limit: Limit) -> float:
    """How far `value` lies outside the limit's absolute range (0 inside, or without one)."""
    below = limit.min - value if limit.min is not None else 0.0
    above = value - limit.max if limit.max is not None else 0.0
    return max(0.0, below, above)


def _range_text(limit: Limit) -> str:
    low = "-inf" if limit.min is None else f"{limit.min:g}"
    high = "inf" if limit.max is None else f"{limit.max:g}"
    return f"[{low}, {high}]"


def check_move(move: Move, config: RecommendConfig) -> str | None:
    """Why the move is refused, or None. The move is the tested value itself: a move that breaks a bound
    is refused, never cut to a value nobody replayed. A move from a current value already outside the
    range toward it is allowed (`outside_notes` reports the current value)."""
    name = f"{move.key} ({move.where}) {move.current:g} -> {move.tested:g}"
    offset = OFFSETS.get(move.key, 0.0)
    cur, new = move.current - offset, move.tested - offset
    if cur <= 0 or new <= 0:
        return f"{name}: a step relative to the current value needs both above 0"
    ratio = new / cur
    if not config.step_ratio_min <= ratio <= config.step_ratio_max:
        return f"{name}: x{ratio:.3g} is outside x{config.step_ratio_min:g}-{config.step_ratio_max:g} per step"
    limit = config.limits.get(move.key)
    if limit is None:
        return None
    if abs(ratio - 1) > limit.max_change + 1e-12:
        return f"{name}: {abs(ratio - 1):.0%} change, more than its {limit.max_change:.0%} per step"
    was_out, now_out = _outside(move.current - offset, limit), _outside(new, limit)
    bounds = _range_text(limit)
    if was_out == 0 and now_out > 0:
        return f"{name}: leaves its range {bounds}"
    if was_out > 0 and now_out > was_out:
        return f"{name}: the current value is already outside {bounds} and this moves it further out"
    return None


def safety(now: datetime, regime_changes: list[datetime], applied: list[datetime],
           config: RecommendConfig) -> list[str]:
    """Why it is not safe to change parameters now (empty: safe)."""
    reasons = []
    recent = [t for t in regime_changes if t > now - timedelta(hours=config.regime_stable_h)]
    if recent:
        reasons.append(f"safety: the market regime changed {(now - max(recent)).total_seconds() / 3600:.1f} h ago; "
                       f"it must be stable for {config.regime_stable_h:g} h")
    today = [t for t in applied if t > now - timedelta(hours=24)]
    if len(today) >= config.max_per_day:
        reasons.append(f"safety: {len(today)} adjustments applied in the last 24 h (at most {config.max_per_day})")
    return reasons


def calibration_gate(calibration: Calibration, settings: ShadowSettings) -> list[str]:
    """Why CHAMPION's replay is not trusted (empty: it is). `min_calibration_trades` 0 turns the gate off:
    candles replayed without an executor have no real trades to check against."""
    if settings.min_calibration_trades == 0:
        return []
    if calibration.trades < settings.min_calibration_trades or calibration.agreement is None:
        return [f"calibration: {calibration.trades} real closed trades to check CHAMPION's replay against, "
                f"need {settings.min_calibration_trades}"]
    if calibration.agreement < settings.min_agreement:
        return [f"calibration: CHAMPION's replay matches {calibration.agreement:.0%} of the comparable real trades on "
                f"exit reason and net P&L, below shadow.min_agreement {settings.min_agreement:.0%}: the replay is "
                "not trusted"]
    return []


def tier_of(evidence: Evidence, config: RecommendConfig) -> tuple[str | None, list[str]]:
    """The first tier the evidence passes, or None and what each tier lacked."""
    misses = []
    for name, tier in config.tiers.items():
        lacks = []
        if evidence.summary.trades < tier.trades:
            lacks.append(f"{evidence.summary.trades} trades < {tier.trades}")
        if evidence.outperformance_pct < tier.outperformance_pct:
            lacks.append(f"win rate +{evidence.outperformance_pct:.1f} points < {tier.outperformance_pct:g}")
        if evidence.paired.mean_diff <= 0:
            lacks.append(f"paired P&L difference {evidence.paired.mean_diff:+.3f} % not positive")
        if evidence.q_value > tier.max_q:
            lacks.append(f"q {evidence.q_value:.3f} > {tier.max_q:g}")
        if evidence.days < tier.days:
            lacks.append(f"{evidence.days:.1f} days < {tier.days:g}")
        if not lacks:
            return name, []
        misses.append(f"{name}: {', '.join(lacks)}")
    return None, misses


def outside_notes(champion: StrategyConfig[Any], config: RecommendConfig) -> list[str]:
    """Every current value outside its limit's absolute range, reported (no recommendation corrects it)."""
    params = champion.params
    sets = [("default", params.default), *((tier, params.for_tier(tier)) for tier in sorted(params.tiers))]
    notes = []
    for key, limit in config.limits.items():
        offset = OFFSETS.get(key, 0.0)
        where = [w for w, p in sets if key in type(p).model_fields and _outside(getattr(p, key) - offset, limit) > 0]
        if where:
            value = getattr(params.default, key) if "default" in where else getattr(params.for_tier(where[0]), key)
            notes.append(f"{key} {value:g} ({', '.join(where)}) is outside its range {_range_text(limit)}:"
                         " reported, not corrected")
    return notes


def tested_changes(champion: StrategyConfig[Any], variation: Variation, config: RecommendConfig,
                   champion_ml_threshold: float | None = None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The variation's changes exactly as replayed ({key: {default or tier: [from, to]}}) and why they
    cannot be applied (empty: they can)."""
    refusals: list[str] = []
    if variation.size_multiplier != 1.0 or variation.volatility_sizing is not None:
        sizing = f"size x{variation.size_multiplier:g}" + (", volatility sizing" if variation.volatility_sizing
                                                            else "")
        refusals.append(f"its sizing ({sizing}) is not a strategy parameter: the live book would trade another "
                        "set than the one replayed")
    if variation.ml_threshold != champion_ml_threshold:
        refusals.append(f"its ML threshold {variation.ml_threshold} is not a strategy parameter: the live book "
                        "would trade another set than the one replayed")
    changes: dict[str, dict[str, Any]] = {}
    for move in moves(champion, variation.section):
        if refused := check_move(move, config):
            refusals.append(refused)
        changes.setdefault(move.key, {})[move.where] = [move.current, move.tested]
    return changes, refusals


def recommend(strategy: str, champion: StrategyConfig[Any], variations: dict[str, Variation],
              evidence: list[Evidence], calibration: Calibration, *, now: datetime, regime_changes: list[datetime],
              applied: list[datetime], settings: ShadowSettings,
              config: RecommendConfig) -> Recommendation | NoRecommendation:
    """The best-supported tested variation of `strategy`, exactly as replayed, or the reasons there is none."""
    reasons = calibration_gate(calibration, settings) + safety(now, regime_changes, applied, config)
    outside = outside_notes(champion, config)
    if reasons:
        return NoRecommendation(strategy, reasons, outside)
    ranked: list[tuple[int, float, Evidence, str]] = []
    order = list(config.tiers)
    for item in evidence:
        tier, misses = tier_of(item, config)
        if tier is None:
            reasons.append(f"{item.name}: no tier ({'; '.join(misses[-1:])})")
            continue
        ranked.append((order.index(tier), -item.paired.mean_diff, item, tier))
    for _, _, item, tier in sorted(ranked, key=lambda r: (r[0], r[1])):
        variation = variations[item.name]
        changes, refusals = tested_changes(champion, variation, config, settings.champion_ml_threshold)
        if refusals:
            reasons.append(f"{item.name}: passes {tier} but is not applied as tested: {'; '.join(refusals)}")
            continue
        if not changes:
            reasons.append(f"{item.name}: passes {tier} but changes no strategy parameter")
            continue
        return Recommendation(strategy, item.name, tier, changes, variation.section, {
            **item.as_json(), "tier": tier, "calibration": calibration.__dict__,
            "notes": outside,
            "window_h": config.window_h, "variation_params_hash": variation.params_hash})
    if not evidence:
        reasons.append("no variation has outcomes in the window yet")
    return NoRecommendation(strategy, reasons, outside)
