"""Shadow statistics on cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from shadow.stats import benjamini_hochberg, paired, summarize


def test_summary_of_a_known_sequence() -> None:
    s = summarize(np.array([2.0, -1.0, -3.0, 4.0, 1.0]))
    assert (s.trades, s.wins) == (5, 3)
    assert s.win_rate_pct == 60.0
    assert s.total_pnl_pct == 3.0 and s.mean_pnl_pct == pytest.approx(0.6)
    # equity reinvested: 1.02, 1.0098, 0.979506, ...: the deepest fall is from 1.02 to 0.979506
    assert s.max_drawdown_pct == pytest.approx((1.02 - 1.02 * 0.99 * 0.97) / 1.02 * 100)
    assert s.sharpe == pytest.approx(0.6 / np.std([2, -1, -3, 4, 1], ddof=1))


def test_no_run_of_losses_draws_down_more_than_the_capital() -> None:
    """Two losses of 80 % a trade summed "fall" 160 %; reinvested, 1 -> 0.2 -> 0.04 is 96 % of the peak."""
    assert summarize(np.array([-80.0, -80.0])).max_drawdown_pct == pytest.approx(96.0)
    assert summarize(np.array([5.0, -120.0, 3.0])).max_drawdown_pct == 100.0  # a loss past the capital: all of it
    rng = np.random.default_rng(3)
    assert all(summarize(rng.normal(-5, 30, 200)).max_drawdown_pct <= 100.0 for _ in range(20))


def test_no_sharpe_without_variance() -> None:
    assert summarize(np.full(12, 0.7)).sharpe is None  # equal trades: no ratio (it read 3e14 over rounding noise)
    assert summarize(np.array([0.7])).sharpe is None


def test_summary_of_nothing() -> None:
    s = summarize(np.array([]))
    assert s.trades == 0 and s.win_rate_pct is None and s.sharpe is None


def test_a_constant_improvement_is_exact_and_significant() -> None:
    rng = np.random.default_rng(1)
    champion = rng.normal(0, 3, 200)
    result = paired(champion + 0.5, champion, samples=1000)
    assert result.mean_diff == pytest.approx(0.5)
    assert result.ci_low == pytest.approx(0.5) and result.ci_high == pytest.approx(0.5)
    assert result.p_value == pytest.approx(1 / 1001)


def test_bootstrap_p_value_and_interval_agree_with_the_t_test_on_a_known_shift() -> None:
    rng = np.random.default_rng(7)
    diff = rng.normal(0.1, 1.0, 400)
    diff = (diff - diff.mean()) / diff.std(ddof=1) + 0.1  # exactly mean 0.1, sd 1: t = 2.0
    result = paired(diff, np.zeros(400), samples=20000)
    expected_p = scipy_stats.ttest_1samp(diff, 0.0).pvalue  # 0.046
    assert expected_p == pytest.approx(0.0462, abs=1e-3)
    assert result.p_value == pytest.approx(expected_p, abs=0.01)
    half = 1.96 * 1.0 / np.sqrt(400)
    assert result.ci_low == pytest.approx(0.1 - half, abs=0.01)
    assert result.ci_high == pytest.approx(0.1 + half, abs=0.01)


def test_no_difference_is_not_significant() -> None:
    rng = np.random.default_rng(3)
    champion = rng.normal(0, 2, 300)
    result = paired(champion, champion.copy())
    assert result.mean_diff == 0.0 and result.p_value == 1.0


def test_pairing_finds_a_shift_that_market_noise_hides_from_an_unpaired_test() -> None:
    rng = np.random.default_rng(11)
    market = rng.normal(0, 5, 150)  # what each candidate's market did: common to both sides
    champion = market
    variation = market + 0.3 + rng.normal(0, 0.3, 150)
    assert scipy_stats.ttest_ind(variation, champion).pvalue > 0.5
    assert paired(variation, champion).p_value < 0.001


def test_benjamini_hochberg_matches_a_hand_computed_example_and_scipy() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.20])
    # sorted 0.005 0.01 0.03 0.04 0.20 -> x m/rank: 0.025 0.025 0.05 0.05 0.20 (running min from the top)
    assert benjamini_hochberg(p) == pytest.approx([0.025, 0.05, 0.05, 0.025, 0.20])
    rng = np.random.default_rng(5)
    many = rng.uniform(0, 0.2, 40)
    assert benjamini_hochberg(many) == pytest.approx(scipy_stats.false_discovery_control(many))
