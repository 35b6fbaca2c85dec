"""Recommendations: every tier, limit and safety rule; the calibration gate; rollback triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.scan.strategy_params import StrategiesConfig, load_strategies
from shadow.recommend import Calibration, Evidence, NoRecommendation, Recommendation, adjust, recommend
from shadow.rollback import Baseline, LiveTrade, loss_run_needed, trigger
from shadow.settings import Limit, RecommendConfig, RollbackConfig, ShadowSettings
from shadow.stats import Paired, Summary
from shadow.variations import Change, vary
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
               variation_change: Change | None = None) -> Recommendation | NoRecommendation:
    change = variation_change or Change(set={"min_drop_pct": 3.0, "stop_loss_pct": 6.0})
    varied = vary(champion.dca, change, "test")
    return recommend("dca", champion.dca, {e.name: varied for e in evidence}, evidence, calibration, now=NOW,
                     regime_changes=regime_changes or [], applied=applied or [], settings=SETTINGS, config=CONFIG)


@pytest.mark.parametrize(("evidence", "tier", "multiplier"), [
    (_evidence(), "HIGH", 1.0),
    (_evidence(trades=60, outperformance=6, q=0.04, days=2.5), "MEDIUM", 0.5),
    (_evidence(trades=35, outperformance=3.5, q=0.08, days=1.2), "LOW", 0.25),
])
def test_each_tier_moves_its_share_of_the_way(champion: StrategiesConfig, evidence: Evidence, tier: str,
                                             multiplier: float) -> None:
    result = _recommend(champion, [evidence])
    assert isinstance(result, Recommendation)
    assert result.tier == tier
    # min_drop_pct 3.75 -> 3.0: the step is multiplier x -0.75, at most 20 % of 3.75 = 0.75
    expected = round(3.75 - 0.75 * multiplier, 10)
    assert result.changes["min_drop_pct"]["default"] == [3.75, expected]
    assert result.section.params.default.min_drop_pct == expected
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


def test_limits_cap_the_step_and_the_range() -> None:
    limit = Limit(max_change=0.20, min=3.0, max=10.0)
    assert adjust(5.0, 9.0, 1.0, limit) == 6.0  # at most 20 % of 5 per adjustment
    assert adjust(5.0, 5.5, 1.0, limit) == 5.5  # a small step is taken whole
    assert adjust(5.0, 9.0, 0.25, limit) == 6.0  # 0.25 x 4 = 1.0 = the cap
    assert adjust(5.0, 6.0, 0.5, limit) == 5.5
    assert adjust(3.2, 1.0, 1.0, limit) == 3.0  # never below min
    assert adjust(27.9, 6.0, 1.0, limit) == pytest.approx(22.32)  # outside the range: toward it, one capped step
    breakout = Limit(max_change=0.25, min=0.02, max=0.08)
    assert adjust(1.01, 1.05, 1.0, breakout, offset=1.0) == pytest.approx(1.0125)  # 1 % -> 1.25 %, then floor .02
    assert adjust(1.03, 1.05, 1.0, breakout, offset=1.0) == pytest.approx(1.0375)


def test_stop_loss_step_is_limited_in_the_recommendation(champion: StrategiesConfig) -> None:
    result = _recommend(champion, [_evidence()])
    assert isinstance(result, Recommendation)
    assert result.changes["stop_loss_pct"]["default"] == [27.9, pytest.approx(22.32)]


def test_a_parameter_without_a_limit_is_never_adjusted(champion: StrategiesConfig) -> None:
    result = _recommend(champion, [_evidence()], variation_change=Change(set={"rsi_min": 20.0}))
    assert isinstance(result, NoRecommendation)
    assert "no adjustment limit" in result.reasons[0] and "rsi_min" in result.reasons[0]


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
