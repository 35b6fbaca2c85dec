"""Which comparison a variation gets: no-op, per unit at risk, or equal size with symbol-day clusters."""

from __future__ import annotations

import numpy as np

from shadow.stats import compare, paired, symbol_days


def _champion(n: int = 400, seed: int = 2, mean: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    entered = rng.random(n) < 0.6
    return np.where(entered, rng.normal(mean, 3.0, n), 0.0), entered


def test_a_copy_of_champion_is_not_tested() -> None:
    c, ce = _champion()
    ones = np.ones(len(c))
    assert compare(c.copy(), c, ce.copy(), ce, ones, ones) is None


def test_a_one_and_a_half_size_copy_is_not_significant() -> None:
    c, ce = _champion(mean=1.5)  # a strategy that earns: scaling it up scales its P&L
    ones = np.ones(len(c))
    result = compare(c.copy(), c, ce.copy(), ce, ones * 1.5, ones)
    assert result is not None and result.basis == "per unit at risk"
    assert abs(result.mean_diff) < 1e-12 and result.p_value == 1.0
    # the scaled P&L the leaderboard used to compare calls the same copy different
    assert paired(c * 1.5, c).p_value < 0.01


def test_a_sizing_rule_that_puts_more_where_more_is_earned_shows_per_unit() -> None:
    rng = np.random.default_rng(4)
    c, ce = _champion(2000)
    ones = np.ones(len(c))
    size = np.where(c > 0, 1.5, 0.5) * np.where(rng.random(len(c)) < 0.8, 1.0, 0.0) + 0.5  # leans to winners
    result = compare(c.copy(), c, ce.copy(), ce, size, ones)
    assert result is not None and result.basis == "per unit at risk"
    assert result.ci_low > 0 and result.p_value < 0.01


def test_symbol_day_clusters_widen_the_interval_of_trades_that_move_together() -> None:
    rng = np.random.default_rng(8)
    days = np.repeat(np.arange(60), 10)  # ten candidates a day share that day's move
    move = rng.normal(0.0, 2.0, 60)[days]
    c, ce = np.zeros(600), np.zeros(600, dtype=bool)
    v, ve = move + rng.normal(0, 0.5, 600), np.ones(600, dtype=bool)
    clusters = symbol_days(np.full(600, "ADA-BTC"),
                           np.datetime64("2026-01-01") + days.astype("timedelta64[D]"))
    ones = np.ones(600)
    iid = compare(v, c, ve, ce, ones, ones)
    clustered = compare(v, c, ve, ce, ones, ones, clusters=clusters)
    assert iid is not None and clustered is not None and clustered.scheme == "cluster"
    assert (clustered.ci_high - clustered.ci_low) > 2 * (iid.ci_high - iid.ci_low)
    assert clustered.mde is not None and iid.mde is not None and clustered.mde > 2 * iid.mde


def test_p_is_shown_with_its_resolution() -> None:
    c, ce = _champion()
    ones = np.ones(len(c))
    result = compare(c + np.where(ce, 5.0, 0.0), c, ce, ce, ones, ones, samples=999)
    assert result is not None and result.p.display() == "< 0.001" and result.resolution == 1 / 1000
