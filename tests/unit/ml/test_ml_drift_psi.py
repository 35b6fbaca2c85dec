"""PSI (`ml.drift`): the formula on a case worked by hand, a discrete feature and a missing bin, a planted shift,
and how often it passes the demotion level when live data come from the training distribution (A/A)."""

from __future__ import annotations

import numpy as np

from ml.drift import FLOOR, DriftReading, DriftReference, Histogram, demotion, measure, psi, shares


def test_psi_on_a_case_worked_by_hand() -> None:
    reference = Histogram(np.array([0.5]), np.array([0.5, 0.5, 0.0]))
    live = np.array([0.0, 1.0, 1.0, 1.0])  # shares 0.25 / 0.75, nothing missing
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert abs(psi(reference, live) - expected) < 1e-12


def test_deciles_of_a_discrete_feature_collapse_and_missing_values_have_their_own_bin() -> None:
    values = np.repeat([0.0, 1.0, 2.0], 100)
    hist = Histogram.of(values, bins=10)
    assert len(hist.edges) <= 3 and abs(hist.shares.sum() - 1) < 1e-12 and hist.shares[-1] == 0
    assert psi(hist, values) == 0.0
    with_missing = np.append(values[:270], np.full(30, np.nan))  # a tenth missing where training never was
    assert psi(hist, with_missing) > 0.25
    assert shares(hist.edges, with_missing)[-1] == 0.1
    assert FLOOR < 0.01


def test_a_planted_shift_passes_the_level_and_names_the_feature_that_moved() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(4000, 3))
    reference = DriftReference.of(("a", "b", "c"), train, np.array([True, True, True]), rng.uniform(size=800), 10)
    live = rng.normal(size=(500, 3))
    live[:, 1] += 1.0
    reading = measure(reference, rng.uniform(0.3, 1.0, size=500), {"a": live[:, 0], "b": live[:, 1],
                                                                    "c": live[:, 2]})
    assert reading.score_psi > 0.25 and reading.worst(1)[0][0] == "b"
    why = demotion(reading, level=0.25, min_predictions=500)
    assert why is not None and why.startswith("drift: score PSI ") and "(largest feature PSIs: b " in why
    assert demotion(reading, level=0.25, min_predictions=501) is None  # too few to decide


def _aa_rate(n: int, reference_n: int, runs: int, seed: int) -> float:
    """Share of unshifted live windows of `n` scores whose PSI against a reference of `reference_n` passes
    0.25: both drawn from one distribution, so every pass is a false demotion."""
    rng = np.random.default_rng(seed)
    passed = 0
    for _ in range(runs):
        reference = Histogram.of(rng.beta(2, 5, size=reference_n), 10)
        reading = DriftReading(n, psi(reference, rng.beta(2, 5, size=n)), {})
        passed += demotion(reading, level=0.25, min_predictions=n) is not None
    return passed / runs


def test_an_unshifted_stream_of_the_configured_length_almost_never_passes_the_level() -> None:
    # the default window (500 live scores) against a calibration slice of 600: measured 0 of 2,000;
    # at 50 live scores the same level passes about 1 % of unshifted windows
    assert _aa_rate(500, 600, 2000, seed=1) < 0.002
    assert _aa_rate(50, 600, 2000, seed=2) > _aa_rate(500, 600, 2000, seed=3)
