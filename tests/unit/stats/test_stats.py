"""The shared statistics: known values, and how often each test fires when nothing is there (A/A)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from stats import auc, multiple, power, resample, scores
from stats.pvalues import PValue, from_resamples


def _pairwise_delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    """DeLong's structural components by direct pair counting (O(m n)): an independent route to the same figures."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)))


def test_delong_matches_pair_counting_and_scikit_learn_with_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + 0.6 * y, 1)  # rounded: many ties
    got = auc.delong(y, s)
    expected_auc, expected_se = _pairwise_delong(y, s)
    assert got.auc == pytest.approx(expected_auc, abs=1e-12) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got.se == pytest.approx(expected_se, rel=1e-9)
    assert got.low == pytest.approx(got.auc - 1.959964 * got.se, abs=1e-6)
    assert got.p_above_half.value == pytest.approx(norm.sf((got.auc - 0.5) / got.se))


def test_delong_fires_at_its_nominal_rate_on_scores_unrelated_to_the_outcome() -> None:
    rng = np.random.default_rng(2)
    fired = sum(auc.delong(rng.integers(0, 2, 200), rng.normal(size=200)).p_above_half.value < 0.05
                for _ in range(2000))
    assert 0.035 < fired / 2000 < 0.065  # 5 % one-sided; 2000 runs give +-1 point


def test_the_delong_interval_covers_a_known_auc() -> None:
    rng = np.random.default_rng(3)
    d = 0.5
    truth = norm.cdf(d / np.sqrt(2))  # binormal: positives N(d, 1), negatives N(0, 1)
    covered = 0
    for _ in range(1000):
        y = rng.integers(0, 2, 300)
        result = auc.delong(y, rng.normal(size=300) + d * y)
        covered += result.low <= truth <= result.high
    assert 0.93 < covered / 1000 < 0.97


def test_delong_refuses_what_it_cannot_measure() -> None:
    with pytest.raises(ValueError, match="at least 2 of each class"):
        auc.delong(np.array([1, 0, 0, 0]), np.array([0.1, 0.2, 0.3, 0.4]))
    with pytest.raises(ValueError, match="0 and 1"):
        auc.delong(np.array([2, 0, 1, 0]), np.arange(4.0))


def test_a_resampled_p_value_is_shown_with_its_resolution() -> None:
    floor = from_resamples(0, 999)
    assert floor.value == pytest.approx(0.001) and floor.at_floor and floor.display() == "< 0.001"
    assert from_resamples(0, 1999).display() == "< 0.001"
    assert from_resamples(0, 199).display() == "< 0.010"  # 1/200 = 0.005: cannot claim < 0.001
    assert from_resamples(41, 999).display() == "0.042"
    assert PValue(0.00002).display() == "< 0.001"
    with pytest.raises(ValueError):
        PValue(1.2)


def test_a_paired_a_a_comparison_fires_at_about_five_percent_and_reports_p_never_zero() -> None:
    rng = np.random.default_rng(4)
    fired = 0
    for k in range(400):
        a = rng.normal(size=80)
        b = rng.normal(size=80)
        result = resample.paired_difference(a, b, resamples=400, seed=k)
        fired += result.p_two_sided.value < 0.05
        assert result.p_two_sided.value >= 1 / 401
    assert 0.02 < fired / 400 < 0.09


def test_a_planted_difference_is_found_and_its_interval_covers_it() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(0.5, 1.0, 400)
    result = resample.paired_difference(a, np.zeros(400), resamples=2000)
    assert result.low < 0.5 < result.high and result.low > 0
    assert result.p_above_zero.value == pytest.approx(1 / 2001) and result.p_above_zero.display() == "< 0.001"


def _ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    e = rng.normal(size=n)
    x = np.empty(n)
    x[0] = e[0] / np.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


@pytest.mark.parametrize("scheme", ["block", "stationary"])
def test_block_bootstraps_keep_the_dependence_an_iid_bootstrap_loses(scheme: str) -> None:
    rng = np.random.default_rng(6)
    n, phi = 600, 0.7
    truth = np.sqrt(1 / (1 - phi) ** 2 / n)  # long-run sd of the mean of an AR(1) with unit innovations
    ratios_block, ratios_iid = [], []
    for k in range(40):
        x = _ar1(rng, n, phi)
        w_block = resample.weights(n, 500, np.random.default_rng(k), scheme=scheme, block=25)
        w_iid = resample.weights(n, 500, np.random.default_rng(k))
        ratios_block.append(((w_block @ x) / n).std() / truth)
        ratios_iid.append(((w_iid @ x) / n).std() / truth)
    assert 0.75 < np.mean(ratios_block) < 1.1
    assert np.mean(ratios_iid) < 0.55  # the iid bootstrap claims about twice the precision there is


def test_the_stationary_bootstrap_draws_blocks_of_the_asked_mean_length() -> None:
    n, length = 5000, 10
    idx = resample.indices(n, 50, np.random.default_rng(7), scheme="stationary", block=length)
    runs = (np.diff(idx, axis=1) != 1).sum(axis=1) + 1  # a block ends where the next position does not follow
    mean_run = n / runs.mean()
    assert mean_run == pytest.approx(length, rel=0.05)
    fixed = resample.indices(n, 50, np.random.default_rng(7), scheme="block", block=length)
    assert n / ((np.diff(fixed, axis=1) != 1).sum(axis=1) + 1).mean() == pytest.approx(length, rel=0.02)
    w = resample.weights(n, 20, np.random.default_rng(8), scheme="stationary", block=length)
    assert w.shape == (20, n) and (w.sum(axis=1) == n).all()


def test_the_cluster_bootstrap_draws_whole_clusters() -> None:
    clusters = np.repeat(["a", "b", "c", "d"], [3, 1, 5, 2])
    w = resample.weights(len(clusters), 300, np.random.default_rng(9), scheme="cluster", clusters=clusters)
    for name in "abcd":
        block = w[:, clusters == name]
        assert (block == block[:, :1]).all()  # every member of a cluster drawn the same number of times
    assert (w[:, clusters == "a"][:, 0] > 1).any()
    with pytest.raises(ValueError, match="one cluster label per entry"):
        resample.weights(5, 10, np.random.default_rng(0), scheme="cluster", clusters=np.arange(3))
    with pytest.raises(ValueError, match="unknown bootstrap scheme"):
        resample.weights(5, 10, np.random.default_rng(0), scheme="jackknife")  # type: ignore[arg-type]


def test_sizing_by_noise_adds_nothing_per_unit_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(10)
    fired = 0
    for k in range(300):
        r = rng.normal(0, 2, 150)
        size = rng.uniform(0.5, 1.5, 150)  # sizes unrelated to the outcome
        fired += resample.ratio_difference(r, size, resamples=400, seed=k).p_above_zero.value < 0.05
    assert fired / 300 < 0.09


def test_holm_and_benjamini_hochberg_known_values() -> None:
    np.testing.assert_allclose(multiple.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(multiple.benjamini_hochberg([0.01, 0.04, 0.03]), [0.03, 0.04, 0.04])
    np.testing.assert_allclose(multiple.benjamini_hochberg([0.005, 0.011, 0.02, 0.04, 0.13]),
                               [0.025, 0.0275, 0.1 / 3, 0.05, 0.13])
    assert multiple.holm([]).size == 0
    with pytest.raises(ValueError):
        multiple.holm([0.2, 1.5])


def test_holm_keeps_the_family_wise_error_of_three_null_strategies_at_five_percent() -> None:
    rng = np.random.default_rng(11)
    p = rng.uniform(size=(20000, 3))
    # Holm rejects anything only when its first step does: the smallest p times the family size
    for row in p[:50]:
        assert multiple.holm(row).min() == pytest.approx(min(1.0, 3 * row.min()))
    raw = (p < 0.05).any(axis=1).mean()
    held = (3 * p.min(axis=1) < 0.05).mean()
    assert raw == pytest.approx(1 - 0.95**3, abs=0.01)  # about 14 % uncorrected
    assert held == pytest.approx(0.05, abs=0.006)


def test_trades_needed_for_45_to_50_percent() -> None:
    even = power.trades_needed_rates(0.45, 0.50)
    assert 1550 <= even.control <= 1570 and even.treatment == even.control
    skewed = power.trades_needed_rates(0.45, 0.50, treatment_share=0.8)
    assert 960 <= skewed.control <= 985 and 3840 <= skewed.treatment <= 3940
    assert power.rate_power(0.45, 0.50, even.control, even.treatment) == pytest.approx(0.8, abs=0.005)
    assert power.detectable_rate(0.45, even.control, even.treatment) == pytest.approx(0.50, abs=0.002)
    assert power.detectable_rate(0.45, 50, 50) - 0.45 > 0.25  # 100 trades detect only a huge lift


def test_the_power_figure_is_what_a_simulated_experiment_achieves() -> None:
    rng = np.random.default_rng(12)
    n = power.trades_needed_rates(0.45, 0.50).control
    a = rng.binomial(n, 0.45, 4000) / n
    b = rng.binomial(n, 0.50, 4000) / n
    pooled = (a + b) / 2
    z = (b - a) / np.sqrt(pooled * (1 - pooled) * 2 / n)
    assert (np.abs(z) > 1.96).mean() == pytest.approx(0.80, abs=0.025)


def test_mean_sample_size_and_detectable_mean_agree() -> None:
    n = power.trades_needed_mean(sd=2.0, delta=0.5)
    assert n == 126  # (1.96 + 0.8416)^2 * (2 / 0.5)^2 = 125.6
    assert power.detectable_mean(2.0, n) == pytest.approx(0.5, rel=0.01)
    with pytest.raises(ValueError):
        power.trades_needed_mean(sd=0.0, delta=1.0)


def test_brier_skill_is_zero_for_the_base_rate_and_one_for_certainty() -> None:
    y = np.array([1, 0, 0, 1, 0, 0, 0, 1])
    assert scores.brier_skill(y, np.full(8, y.mean())) == pytest.approx(0.0)
    assert scores.brier_skill(y, y.astype(float)) == pytest.approx(1.0)
    assert scores.brier_skill(y, np.full(8, 0.9)) < 0


def test_wilson_interval_of_none_in_two_hundred() -> None:
    from stats.rates import wilson

    low, high = wilson(0, 200)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.0188, abs=0.0005)
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=0.0005) and high == pytest.approx(0.5962, abs=0.0005)


def test_the_rate_difference_interval_excludes_zero_at_about_five_percent_under_no_difference() -> None:
    from stats.rates import rate_difference

    diff, low, high = rate_difference(90, 120, 24, 60)
    assert diff == pytest.approx(0.35) and 0.19 < low < 0.21 and 0.47 < high < 0.51
    rng = np.random.default_rng(13)
    fired = 0
    for _ in range(1000):
        a, b = rng.binomial(100, 0.45), rng.binomial(25, 0.45)
        _, low, high = rate_difference(a, 100, b, 25)
        fired += low > 0 or high < 0
    assert 0.03 < fired / 1000 < 0.07
