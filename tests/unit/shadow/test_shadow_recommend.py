"""Recommendations: every tier, limit and safety rule; the calibration gate; rollback triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from controller.scan.strategy_params import StrategiesConfig, load_strategies
from shadow.compare import evidence_days
from shadow.recommend import Calibration, Evidence, NoRecommendation, Recommendation, recommend
from shadow.rollback import (
    Baseline,
    LiveTrade,
    against_previous,
    emergency,
    half_way,
    loss_run_needed,
    trigger,
    underperforms,
)
from shadow.settings import RecommendConfig, RollbackConfig, ShadowSettings
from shadow.stats import Paired, Summary
from shadow.variations import Change, Variation, vary
from stats.sequential import run_probability

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
CONFIG = RecommendConfig()
SETTINGS = ShadowSettings()
GOOD = Calibration(trades=20, agreement=0.95)


@pytest.fixture(scope="module")
def champion() -> StrategiesConfig:
    return load_strategies()


def _summary(trades: int, win_rate: float) -> Summary:
    return Summary(trades, round(trades * win_rate / 100), win_rate, 0.1, 0.1 * trades, 0.2, 1.0)


def _evidence(name: str = "DCA_DROPS_3", *, trades: int = 120, outperformance: float = 12.0, q: float = 0.005,
              days: float = 4.0, mean_diff: float = 0.4) -> Evidence:
    return Evidence(name, _summary(trades, 50 + outperformance), _summary(trades, 50),
                    Paired(trades, mean_diff, mean_diff / 2, mean_diff * 2, q), q, days)


def _recommend(champion: StrategiesConfig, evidence: list[Evidence], *, calibration: Calibration = GOOD,
               regime_changes: list[datetime] | None = None, applied: list[datetime] | None = None,
               variation_change: Change | None = None, strategy: str = "dca",
               size_multiplier: float = 1.0) -> Recommendation | NoRecommendation:
    change = variation_change or Change(set={"min_drop_pct": 3.0}, scale={"volume_ratio_min": 1.1})
    section = dict(champion.items())[strategy]
    varied = Variation("V", strategy, vary(section, change, "test"), size_multiplier=size_multiplier)
    return recommend(strategy, section, {e.name: varied for e in evidence}, evidence, calibration, now=NOW,
                     regime_changes=regime_changes or [], applied=applied or [], settings=SETTINGS, config=CONFIG)


@pytest.mark.parametrize(("evidence", "tier"), [
    (_evidence(), "HIGH"),
    (_evidence(trades=60, outperformance=6, q=0.04, days=2.5), "MEDIUM"),
    (_evidence(trades=35, outperformance=3.5, q=0.08, days=1.2), "LOW"),
])
def test_each_tier_recommends_the_tested_variation_exactly(champion: StrategiesConfig, evidence: Evidence,
                                                           tier: str) -> None:
    change = Change(set={"min_drop_pct": 3.0}, scale={"volume_ratio_min": 1.1})
    tested = vary(champion.dca, change, "test")
    result = _recommend(champion, [evidence], variation_change=change)
    assert isinstance(result, Recommendation)
    assert result.tier == tier
    # every key the variation changed, at the value it was replayed with: the same parameter set (hash)
    assert result.section.params_hash() == tested.params_hash() != champion.dca.params_hash()
    assert result.evidence["variation_params_hash"] == tested.params_hash()
    assert result.changes["min_drop_pct"]["default"] == [3.75, 3.0]
    assert result.changes["volume_ratio_min"]["default"] == [1.29, pytest.approx(1.419)]
    assert result.evidence["tier"] == tier and result.evidence["trades"] == evidence.summary.trades


@pytest.mark.parametrize(("evidence", "lack"), [
    (_evidence(trades=29), "29 trades < 30"),
    (_evidence(outperformance=2.0), "win rate +2.0 points < 3"),
    (_evidence(q=0.2), "q 0.200 > 0.1"),
    (_evidence(days=0.5), "0.5 days < 1"),
    (_evidence(mean_diff=-0.1), "not positive"),
])
def test_evidence_below_every_tier_is_no_recommendation(champion: StrategiesConfig, evidence: Evidence,
                                                        lack: str) -> None:
    result = _recommend(champion, [evidence])
    assert isinstance(result, NoRecommendation)
    assert lack in result.reasons[0]


def test_keys_without_a_limit_are_applied_as_tested(champion: StrategiesConfig) -> None:
    # buy zone, volume ratio, trailing and time limit have no adjustment limit: they move with the rest
    change = Change(scale={"buy_zone": 1.4, "volume_ratio_min": 0.8, "trailing_delta_pct": 0.6,
                           "time_limit_s": 1.25})
    result = _recommend(champion, [_evidence()], variation_change=change, strategy="channel")
    assert isinstance(result, Recommendation)
    assert set(result.changes) == {"buy_zone", "volume_ratio_min", "trailing_delta_pct", "time_limit_s"}
    assert result.section.params_hash() == vary(champion.channel, change, "test").params_hash()
    # every tier's complete set moves, not only the default
    assert set(result.changes["buy_zone"]) == {"default", *champion.channel.params.tiers}


@pytest.mark.parametrize(("strategy", "change", "refusal"), [
    # the case: channel's stop of 14.6 % is already above the 10 % limit; widening it further is
    # refused, never turned into a tightening to a value nobody replayed
    ("channel", Change(scale={"stop_loss_pct": 1.2}), "stop_loss_pct (default) 14.6 -> 17.52: the current value "
                                                      "is already outside [3, 10] and this moves it further out"),
    ("dca", Change(set={"rsi_min": 10.0}), "rsi_min (default) 28 -> 10: x0.357 is outside x0.5-1.5 per step"),
    ("dca", Change(set={"min_drop_pct": 2.5}), "min_drop_pct (default) 3.75 -> 2.5: 33% change, more than its "
                                               "20% per step"),
    ("dca", Change(scale={"take_profit_pct": 1.2}), "take_profit_pct (default) 3 -> 3.6: 20% change, more than "
                                                    "its 15% per step"),
])
def test_a_variation_beyond_a_bound_is_refused_with_the_reason_not_clipped(champion: StrategiesConfig,
                                                                           strategy: str, change: Change,
                                                                           refusal: str) -> None:
    result = _recommend(champion, [_evidence()], variation_change=change, strategy=strategy)
    assert isinstance(result, NoRecommendation)
    assert "passes HIGH but is not applied as tested" in result.reasons[0] and refusal in result.reasons[0]


def test_a_move_that_leaves_the_range_is_refused(champion: StrategiesConfig) -> None:
    inside = vary(champion.dca, Change(set={"stop_loss_pct": 3.5}), "test")
    tested = Variation("TIGHT", "dca", vary(inside, Change(set={"stop_loss_pct": 2.9}), "test"))
    evidence = _evidence("TIGHT")
    result = recommend("dca", inside, {"TIGHT": tested}, [evidence], GOOD, now=NOW, regime_changes=[], applied=[],
                       settings=SETTINGS, config=CONFIG)
    assert isinstance(result, NoRecommendation) and "3.5 -> 2.9: leaves its range [3, 10]" in result.reasons[0]


def test_a_current_value_outside_its_range_is_reported_not_corrected(champion: StrategiesConfig) -> None:
    # DCA's stop of 27.9 % is outside 3-10 %: a tested step toward the range is applied as tested (22.32),
    # with a note; nothing pulls it to 10
    result = _recommend(champion, [_evidence()], variation_change=Change(scale={"stop_loss_pct": 0.8}))
    assert isinstance(result, Recommendation)
    assert result.changes["stop_loss_pct"]["default"] == [27.9, pytest.approx(22.32)]
    assert "stop_loss_pct 27.9 (default) is outside its range [3, 10]: reported, not corrected" in \
        result.evidence["notes"]
    # reported whatever the variation changes, also when nothing is recommended
    refused = _recommend(champion, [_evidence(q=0.5)])
    assert isinstance(refused, NoRecommendation) and any(n.startswith("stop_loss_pct 27.9") for n in refused.notes)


def test_a_variation_that_changes_its_size_is_not_applied(champion: StrategiesConfig) -> None:
    result = _recommend(champion, [_evidence()], size_multiplier=0.75)
    assert isinstance(result, NoRecommendation) and "its sizing (size x0.75) is not a strategy parameter" in \
        result.reasons[0]


def test_a_full_window_spans_its_length_so_every_tier_is_reachable() -> None:
    end = datetime(2026, 3, 4, tzinfo=UTC)
    first, last = end - timedelta(hours=72), end - timedelta(minutes=5)  # closes of the window's 5m candles
    assert evidence_days(first, last, 300, 72) == pytest.approx(3.0)  # HIGH needs 3 days
    assert evidence_days(first, last, 300, 72) >= CONFIG.tiers["HIGH"].days
    assert evidence_days(last, last, 300, 72) == pytest.approx(300 / 86400)
    assert evidence_days(first - timedelta(hours=1), last, 300, 72) == pytest.approx(3.0)  # never beyond the window


def test_regime_must_be_stable_for_12_hours(champion: StrategiesConfig) -> None:
    result = _recommend(champion, [_evidence()], regime_changes=[NOW - timedelta(hours=5)])
    assert isinstance(result, NoRecommendation) and "regime changed 5.0 h ago" in result.reasons[0]
    assert isinstance(_recommend(champion, [_evidence()], regime_changes=[NOW - timedelta(hours=13)]), Recommendation)


def test_at_most_three_adjustments_a_day(champion: StrategiesConfig) -> None:
    three = [NOW - timedelta(hours=h) for h in (1, 5, 20)]
    result = _recommend(champion, [_evidence()], applied=three)
    assert isinstance(result, NoRecommendation) and "3 adjustments applied in the last 24 h" in result.reasons[0]
    older = [NOW - timedelta(hours=h) for h in (1, 5, 25)]
    assert isinstance(_recommend(champion, [_evidence()], applied=older), Recommendation)


def test_low_agreement_with_real_trades_blocks_recommendations(champion: StrategiesConfig) -> None:
    result = _recommend(champion, [_evidence()], calibration=Calibration(trades=20, agreement=0.6))
    assert isinstance(result, NoRecommendation) and "below shadow.min_agreement 80%" in result.reasons[0]
    result = _recommend(champion, [_evidence()], calibration=Calibration(trades=2, agreement=1.0))
    assert isinstance(result, NoRecommendation) and "2 real closed trades" in result.reasons[0]


def test_the_best_tier_wins_then_the_largest_difference(champion: StrategiesConfig) -> None:
    low = _evidence("A", trades=35, outperformance=3.5, q=0.08, days=1.2, mean_diff=2.0)
    high = _evidence("B", mean_diff=0.3)
    result = _recommend(champion, [low, high])
    assert isinstance(result, Recommendation) and result.variation == "B" and result.tier == "HIGH"


# ------------------------------------------------------------------------------------------ rollback

APPLIED = NOW - timedelta(hours=10)
BASE = Baseline(trades=40, win_rate_pct=60.0, mean_pnl_pct=1.0, sd_pnl_pct=2.0, losses=16)
RB = RollbackConfig()


def _trades(*items: tuple[str, float]) -> list[LiveTrade]:
    return [LiveTrade(APPLIED + timedelta(minutes=30 * (i + 1)), reason, pnl) for i, (reason, pnl) in enumerate(items)]


def test_a_run_of_losses_as_likely_as_noise_does_not_roll_back() -> None:
    # 40 % of the baseline lost: three losses in a row happen in most 20-trade stretches of that strategy
    stops = _trades(("take_profit", 2.0), ("stop_loss", -3.0), ("stop_loss", -3.0), ("stop_loss", -3.0))
    assert trigger(APPLIED, NOW, BASE, stops, RB) is None


def test_a_run_of_losing_exits_of_any_reason_rolls_back_once_it_is_rare_at_the_baseline_rate() -> None:
    needed = loss_run_needed(BASE, RB)
    # the run's chance in 50 trades at a 17/42 loss rate is at most 1 %; a run one shorter is above it
    assert run_probability(17 / 42, RB.run_horizon_trades, needed) <= 0.01
    assert run_probability(17 / 42, RB.run_horizon_trades, needed - 1) > 0.01
    reasons = ["trailing_stop", "time_limit", "stop_loss"]
    losing = [(reasons[i % 3], -0.5) for i in range(needed)]
    reason = trigger(APPLIED, NOW, BASE, _trades(*losing), RB)
    assert reason is not None and reason.startswith(f"{needed} consecutive losing exits")
    assert trigger(APPLIED, NOW, BASE, _trades(*losing[:-1], ("take_profit", 1.0), losing[-1]), RB) is None


def test_a_sustained_win_rate_drop_rolls_back_and_a_short_one_does_not() -> None:
    pattern = [("take_profit", 3.0)] + [("trailing_stop", -0.2)] * 4  # 20 % wins, mean +0.44
    reason = trigger(APPLIED, NOW, BASE, _trades(*(pattern * 6)), RB)  # 30 trades
    assert reason is not None and reason.startswith("win rate 20.0 % over 30 trades, down 40.0 points")
    assert trigger(APPLIED, NOW, BASE, _trades(*(pattern * 2)), RB) is None  # 10 trades: not yet evidence


def test_a_sustained_pnl_drop_rolls_back() -> None:
    pattern = [("take_profit", 0.5)] * 3 + [("trailing_stop", -2.0)] * 2  # 60 % wins, mean -0.5 vs +1.0
    reason = trigger(APPLIED, NOW, BASE, _trades(*(pattern * 6)), RB)
    assert reason is not None and reason.startswith("mean P&L -0.50 % per trade over 30 trades")
    near = [("take_profit", 1.5)] * 3 + [("trailing_stop", -0.1)] * 2  # mean 0.86: down 14 %, below 20 %
    assert trigger(APPLIED, NOW, BASE, _trades(*(near * 20)), RB) is None


def test_nothing_is_judged_after_the_monitoring_window_or_on_too_few_trades() -> None:
    stops = _trades(*[("stop_loss", -3.0)] * 12)
    assert trigger(APPLIED, APPLIED + timedelta(hours=49), BASE, stops, RB) is None
    assert trigger(APPLIED, NOW, BASE, _trades(("time_limit", -5.0)), RB) is None


def test_a_panic_reading_after_the_change_rolls_it_back_at_once() -> None:
    calm = [(APPLIED + timedelta(hours=h), "NORMAL", "BTC-USDT: 1h +0.10 %") for h in (1, 2)]
    panic = (APPLIED + timedelta(hours=3), "PANIC", "BTC-USDT: 1h -3.40 %")
    assert emergency(APPLIED, NOW, calm, RB) is None
    assert emergency(APPLIED, NOW, [(APPLIED - timedelta(hours=1), "PANIC", "before"), *calm], RB) is None
    reason = emergency(APPLIED, NOW, [*calm, panic], RB)
    assert reason == f"emergency: the regime turned PANIC at {panic[0]:%Y-%m-%d %H:%M} UTC (BTC-USDT: 1h -3.40 %)"
    late = (APPLIED + timedelta(hours=RB.monitor_h + 1), "PANIC", "after the window")
    assert emergency(APPLIED, late[0], [*calm, late], RB) is None


def test_half_way_moves_every_changed_value_half_the_distance_back() -> None:
    current = {"default": {"min_drop_pct": 3.0, "grid_levels": 5, "rsi_min": 28.0},
               "tiers": {"large": {"min_drop_pct": 2.0, "grid_levels": 5, "rsi_min": 28.0}}}
    previous = {"default": {"min_drop_pct": 3.75, "grid_levels": 2, "rsi_min": 28.0},
                "tiers": {"large": {"min_drop_pct": 1.5, "grid_levels": 2, "rsi_min": 28.0}}}
    halved = half_way(current, previous)
    assert halved["default"] == {"min_drop_pct": 3.375, "grid_levels": 3, "rsi_min": 28.0}  # 5 -> 2: 3, nearer 2
    assert halved["tiers"]["large"] == {"min_drop_pct": 1.75, "grid_levels": 3, "rsi_min": 28.0}


def test_underperformance_needs_a_window_clearly_below_the_baseline() -> None:
    base = Baseline(trades=20, win_rate_pct=50.0, mean_pnl_pct=1.0, sd_pnl_pct=2.05, losses=10)
    bad = _trades(*[("take_profit", 0.5), ("trailing_stop", -1.5)] * 10)  # -0.5 a trade
    reason = underperforms(base, bad, RB)
    assert reason is not None and reason.startswith("mean P&L -0.50 % per trade over 20 trades in 48 h")
    assert underperforms(base, bad[:4], RB) is None  # fewer than min_trades
    assert underperforms(base, _trades(*[("take_profit", 1.5), ("trailing_stop", 0.0)] * 10), RB) is None  # +0.75
    assert underperforms(None, bad, RB) is None


def test_a_variation_with_its_own_ml_threshold_is_not_applied(champion: StrategiesConfig) -> None:
    varied = Variation("V", "dca", vary(champion.dca, Change(set={"min_drop_pct": 3.0}), "test"), ml_threshold=0.55)
    result = recommend("dca", champion.dca, {"V": varied}, [_evidence("V")], GOOD, now=NOW, regime_changes=[],
                       applied=[], settings=SETTINGS, config=CONFIG)
    assert isinstance(result, NoRecommendation) and "its ML threshold 0.55 is not a strategy parameter" in \
        result.reasons[0]


def test_the_live_shadow_fires_when_the_previous_parameters_keep_doing_better_on_the_same_candles() -> None:
    rng = np.random.default_rng(7)
    fair = [against_previous(rng.random(60) < 0.5, RB) for _ in range(200)]  # no difference: a fair coin
    assert sum(r is not None for r in fair) <= 10  # at most a few of 200 (the test's rate is 2 %)
    worse = np.array([True, False, False, False] * 20)  # the previous set better on 3 of 4 candidates
    reason = against_previous(worse, RB)
    assert reason is not None
    assert reason.startswith("on the same candles the previous parameters did better on 60 of 80")
    assert against_previous(worse[:4], RB) is None  # fewer than min_trades differing candidates
    assert against_previous(~worse, RB) is None  # the applied set better: no alarm


def test_take_profit_is_bounded_relative_to_the_current_value_only(champion: StrategiesConfig) -> None:
    # no absolute range: x0.9 of 3 % passes (within 15 % a step, within x0.5-1.5)
    result = _recommend(champion, [_evidence()], variation_change=Change(scale={"take_profit_pct": 0.9}))
    assert isinstance(result, Recommendation)
    assert result.changes["take_profit_pct"]["default"] == [3.0, pytest.approx(2.7)]


def test_with_a_live_shadow_the_book_tests_give_way_and_the_losing_run_still_counts() -> None:
    pattern = [("take_profit", 0.5)] * 3 + [("trailing_stop", -2.0)] * 2  # the P&L drop of the test above
    assert trigger(APPLIED, NOW, BASE, _trades(*(pattern * 6)), RB) is not None
    assert trigger(APPLIED, NOW, BASE, _trades(*(pattern * 6)), RB, with_shadow=True) is None
    losing = [("trailing_stop", -0.5)] * loss_run_needed(BASE, RB)
    reason = trigger(APPLIED, NOW, BASE, _trades(*losing), RB, with_shadow=True)
    assert reason is not None and "consecutive losing exits" in reason
