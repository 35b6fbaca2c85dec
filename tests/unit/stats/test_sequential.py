"""The sequential tests keep their false-alarm rate over every look and find a real drop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from stats.sequential import mixture_sprt, run_probability, run_threshold


def _brute_run_probability(q: float, n: int, k: int) -> float:
    total = 0.0
    for outcome in itertools.product((0, 1), repeat=n):  # 1: a loss
        longest = run = 0
        for lost in outcome:
            run = run + 1 if lost else 0
            longest = max(longest, run)
        if longest >= k:
            losses = sum(outcome)
            total += q ** losses * (1 - q) ** (n - losses)
    return total


@pytest.mark.parametrize(("q", "n", "k"), [(0.5, 10, 3), (0.6, 12, 4), (0.2, 9, 2), (0.9, 8, 8)])
def test_the_run_probability_is_the_exact_enumeration(q: float, n: int, k: int) -> None:
    assert run_probability(q, n, k) == pytest.approx(_brute_run_probability(q, n, k), abs=1e-12)


def test_the_run_threshold_is_the_shortest_run_below_the_rate() -> None:
    k = run_threshold(0.6, 50, 0.01)
    assert run_probability(0.6, 50, k) <= 0.01 < run_probability(0.6, 50, k - 1)
    assert run_threshold(0.05, 50, 0.01) < k  # a strategy that rarely loses needs a shorter run


def _fired(paths: np.ndarray, alpha: float) -> float:
    hits = 0
    for path in paths:
        hits += any(mixture_sprt(path[:n], 0.0, 1.0, alpha=alpha, tau=0.5).rejects for n in range(1, len(path) + 1))
    return hits / len(paths)


def test_looking_after_every_observation_keeps_the_false_alarm_rate() -> None:
    rng = np.random.default_rng(5)
    paths = rng.normal(0.0, 1.0, size=(400, 100))
    assert _fired(paths, 0.05) <= 0.05  # 100 looks each; a fixed-sample test looked at 100 times fires far more
    naive = np.mean([(np.cumsum(p) / np.sqrt(np.arange(1, 101)) < -1.645).any() for p in paths])
    assert naive > 0.2


def test_a_drop_of_one_standard_deviation_is_found_within_a_few_dozen_observations() -> None:
    rng = np.random.default_rng(6)
    assert _fired(rng.normal(-1.0, 1.0, size=(100, 30)), 0.05) >= 0.95
    assert _fired(rng.normal(+1.0, 1.0, size=(100, 30)), 0.05) == 0.0  # one-sided: a rise is no alarm
