"""Recommendations: which variation earned a bounded step of the champion's parameters, or why none did.

Pure: the evidence comes in, a `Recommendation` (with its evidence) or the list of reasons comes out.
The gates, in order: calibration (CHAMPION's simulated exits must agree with the real trades, or the
replay is not trusted), safety (regime stable, few adjustments a day), then the seed's confidence tiers
(trades, win-rate outperformance, Benjamini-Hochberg q, days of evidence), tried from HIGH down. The
winning variation's parameter values are approached by the tier's multiplier, at most `max_change` of the
current value per step and never outside [min, max]; a parameter without a limit is never adjusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from controller.scan.strategy_params import StrategyConfig
from shadow.settings import Limit, RecommendConfig, ShadowSettings
from shadow.stats import Paired, Summary


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
    section: StrategyConfig[Any]  # the champion with the changes
    evidence: dict[str, Any]


@dataclass(frozen=True)
class NoRecommendation:
    strategy: str
    reasons: list[str] = field(default_factory=list)


def adjust(current: float, target: float, multiplier: float, limit: Limit, offset: float = 0.0) -> float:
    """One bounded step from `current` toward `target`.

    Values are measured from `offset` (1.0 for a factor such as breakout_factor, so its limits read as the
    breakout in percent). The step is the tier's share of the way, at most `max_change` of the current
    value, and the result stays within [min, max] without ever stepping more than `max_change`.
    """
    cur, tgt = current - offset, target - offset
    bound = limit.max_change * abs(cur)
    step = max(-bound, min(bound, (tgt - cur) * multiplier))
    new = min(limit.max, max(limit.min, cur + step))
    new = min(cur + bound, max(cur - bound, new))
    return round(new + offset, 10)


OFFSETS = {"breakout_factor": 1.0}


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


def changes_toward(champion: StrategyConfig[Any], variation: StrategyConfig[Any], multiplier: float,
                   config: RecommendConfig) -> tuple[dict[str, dict[str, Any]], StrategyConfig[Any], list[str]]:
    """Bounded steps of every limited parameter the variation changes, in the default and each tier."""
    current, target = champion.params, variation.params
    changes: dict[str, dict[str, Any]] = {}
    unlimited: set[str] = set()
    new_default = current.default.model_dump()
    new_tiers = {tier: p.model_dump() for tier, p in current.tiers.items()}
    sets = [("default", current.default, target.default, new_default)]
    sets += [(tier, current.tiers[tier], target.for_tier(tier), new_tiers[tier]) for tier in current.tiers]
    for where, cur_params, tgt_params, out in sets:
        for key, cur in cur_params.model_dump().items():
            tgt = getattr(tgt_params, key)
            if tgt == cur:
                continue
            limit = config.limits.get(key)
            if limit is None:
                unlimited.add(key)
                continue
            new = adjust(float(cur), float(tgt), multiplier, limit, OFFSETS.get(key, 0.0))
            if isinstance(cur, int) and not isinstance(cur, bool):
                new = round(new)
            if new != cur:
                out[key] = new
                changes.setdefault(key, {})[where] = [cur, new]
    params = type(current).model_validate({"default": new_default, "tiers": new_tiers}).with_tier_map(current.tier_map)
    notes = [f"not adjusted (no adjustment limit): {', '.join(sorted(unlimited))}"] if unlimited else []
    return changes, champion.model_copy(update={"params": params}), notes


def recommend(strategy: str, champion: StrategyConfig[Any], variations: dict[str, StrategyConfig[Any]],
              evidence: list[Evidence], calibration: Calibration, *, now: datetime, regime_changes: list[datetime],
              applied: list[datetime], settings: ShadowSettings,
              config: RecommendConfig) -> Recommendation | NoRecommendation:
    """The best-supported bounded change for `strategy`, or the reasons there is none."""
    reasons = calibration_gate(calibration, settings) + safety(now, regime_changes, applied, config)
    if reasons:
        return NoRecommendation(strategy, reasons)
    ranked: list[tuple[int, float, Evidence, str]] = []
    order = list(config.tiers)
    for item in evidence:
        tier, misses = tier_of(item, config)
        if tier is None:
            reasons.append(f"{item.name}: no tier ({'; '.join(misses[-1:])})")
            continue
        ranked.append((order.index(tier), -item.paired.mean_diff, item, tier))
    for _, _, item, tier in sorted(ranked, key=lambda r: (r[0], r[1])):
        changes, section, notes = changes_toward(champion, variations[item.name], config.tiers[tier].multiplier,
                                                 config)
        if not changes:
            reasons.append(f"{item.name}: passes {tier} but changes no parameter with an adjustment limit"
                           + (f" ({notes[0]})" if notes else ""))
            continue
        return Recommendation(strategy, item.name, tier, changes, section, {
            **item.as_json(), "tier": tier, "multiplier": config.tiers[tier].multiplier,
            "calibration": calibration.__dict__, "notes": notes, "window_h": config.window_h})
    if not evidence:
        reasons.append("no variation has outcomes in the window yet")
    return NoRecommendation(strategy, reasons)
