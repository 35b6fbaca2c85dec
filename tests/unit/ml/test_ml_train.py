"""Training refuses what cannot be learnt, validates without leaking across time, and calibrates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.config import GateParams, TrainParams
from ml.features import FEATURES
from ml.gate import decide, verdict, with_family
from ml.train import (
    Forest,
    ForestUnsupported,
    TrainingRefused,
    _tree_sums,
    check_internals,
    check_target,
    fit,
    multiplier,
    uniqueness,
    walk_forward,
    walk_forward_folds,
    warm_up,
)
from tests.support.ml_events import synthetic_events

PARAMS = TrainParams(folds=3, min_events=100, max_iter=60)


def gate_of(metrics: dict, evaluations: list | None = None, params: GateParams | None = None) -> tuple[bool, str]:
    """The gate's verdict on one strategy's walk-forward metrics, as a retrain of that strategy alone."""
    with_family({"dca": metrics}, "test")
    return verdict(decide(metrics, evaluations or [], params or GateParams()))


def test_a_constant_target_is_refused_with_a_clear_message() -> None:
    with pytest.raises(TrainingRefused, match=r"constant \(all 500 labels are 1\)"):
        check_target(np.ones(500, dtype=np.int64), PARAMS)
    events = synthetic_events(500, informative=False)
    events["label"] = 1
    with pytest.raises(TrainingRefused, match="constant"):
        fit(events, PARAMS)


def test_a_near_constant_target_is_refused() -> None:
    labels = np.zeros(1000, dtype=np.int64)
    labels[:8] = 1
    with pytest.raises(TrainingRefused, match=r"near-constant \(8 wins of 1000 events"):
        check_target(labels, PARAMS)


def test_string_labels_and_too_few_events_are_refused() -> None:
    with pytest.raises(TrainingRefused, match="integers 0 and 1"):
        check_target(np.array(["WIN", "LOSS"] * 100), PARAMS)
    with pytest.raises(TrainingRefused, match="50 labelled events, at least 100"):
        check_target(np.array([0, 1] * 25), PARAMS)


def test_walk_forward_training_labels_end_before_each_test_block_begins() -> None:
    events = synthetic_events(1000, informative=False)
    folds = walk_forward_folds(events, 4)
    assert len(folds) == 4
    for fold in folds:
        test_start = events["decided_at"].iloc[fold.test].min()
        assert events["horizon_end"].iloc[fold.train].max() < test_start  # purged: no overlapping label
        assert len(fold.train) > 0
        # the events whose horizon reaches into the test block are left out (the embargo)
        embargoed = (events["decided_at"] < test_start) & (events["horizon_end"] >= test_start)
        assert embargoed.sum() == 6 and not set(np.flatnonzero(embargoed)) & set(fold.train)


def test_an_informative_feature_gives_calibrated_confidence_and_beats_rules_out_of_sample() -> None:
    metrics = walk_forward(synthetic_events(informative=True), PARAMS, threshold=0.6)
    oos = metrics["out_of_sample"]
    assert oos["auc"] > 0.75
    assert oos["brier"] < 0.25 * 0.95  # better than always saying the base rate (~0.25)
    for row in oos["calibration"]:
        if row["n"] >= 80:
            assert abs(row["mean_confidence"] - row["win_rate"]) < 0.12, row
    ok, why = gate_of(metrics)
    assert ok, why
    assert "AUC" in why and "Brier skill" in why and "held-back assets" in why and "Holm" in why
    trading = oos["trading"]
    assert trading["ml_return_per_unit_pct"] > trading["rules_return_per_unit_pct"]
    assert trading["above_threshold_win_rate"] > trading["rules_win_rate"]


def test_noise_does_not_pass_the_gate() -> None:
    metrics = walk_forward(synthetic_events(informative=False, seed=3), PARAMS, threshold=0.6)
    assert 0.4 < metrics["out_of_sample"]["auc"] < 0.6
    ok, why = gate_of(metrics)
    assert not ok and why.startswith("refused: ") and "AUC lower bound" in why


def test_the_size_multiplier_stays_within_half_and_one_and_a_half() -> None:
    p = np.linspace(0, 1, 101)
    m = multiplier(p, 0.6)
    assert m.min() == 0.5 and m.max() == 1.5 and multiplier(np.array([0.6]), 0.6)[0] == 1.0
    assert np.all(np.diff(m) >= 0)


def test_a_model_ignores_features_its_training_never_held_and_flags_unlike_inputs() -> None:
    events = synthetic_events(800, informative=True)
    model = fit(events, PARAMS)
    assert model.unused == ("btc_change_1h_pct",)
    row = events.iloc[[0]].copy()
    with_value = row.assign(btc_change_1h_pct=5.0)
    assert model.predict(row)[0] == model.predict(with_value)[0]
    assert model.dissimilarity(row)[0] < 1.0  # a training row: nearer its neighbours than the average pair
    far = row.copy()
    far[list(FEATURES)] = 1e6
    assert model.dissimilarity(far)[0] > 1e3


def test_a_feature_that_appears_only_in_the_latest_events_is_unused_not_a_crash() -> None:
    events = synthetic_events(800, informative=True)
    events.loc[events.index < 700, "btc_change_4h_pct"] = np.nan  # e.g. a BTC reference recorded only lately
    model = fit(events, PARAMS)
    assert set(model.unused) == {"btc_change_1h_pct", "btc_change_4h_pct"}


def test_the_compiled_forest_scores_exactly_as_scikit_learn_including_missing_values() -> None:
    events = synthetic_events(1500, informative=True, seed=3)
    events.loc[events.index % 5 == 0, "rsi"] = np.nan  # missing in training: the trees learn a NaN branch
    model = fit(events, TrainParams(folds=3, min_events=100, max_iter=120))
    rows = synthetic_events(300, informative=True, seed=4)
    rows.loc[rows.index % 3 == 0, "rsi"] = np.nan
    rows.loc[rows.index % 7 == 0, "roc"] = np.nan  # never missing in training: the trees' default branch
    expected = model.classifier.predict_proba(model.matrix(rows))[:, 1]
    got = model.predict(rows)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert got.std() > 0.05  # the rows really fall into different leaves


def test_a_model_saved_and_loaded_again_scores_the_same() -> None:
    import pickle

    model = fit(synthetic_events(800, informative=True), PARAMS)
    rows = synthetic_events(50, informative=True, seed=9)
    before = model.predict(rows)
    again = pickle.loads(pickle.dumps(model))  # noqa: S301 - our own bytes, just written
    assert "_forest" not in again.__dict__  # the artefact holds the classifier; the forest is rebuilt from it
    np.testing.assert_array_equal(again.predict(rows), before)


def test_score_reads_the_batch_once_and_agrees_with_predict_and_dissimilarity() -> None:
    model = fit(synthetic_events(800, informative=True), PARAMS)
    rows = synthetic_events(40, informative=True, seed=5)
    features_only = rows[list(FEATURES)]  # the frame the scan builds: the fast path
    p, d = model.score(features_only)
    np.testing.assert_array_equal(p, model.predict(rows))
    np.testing.assert_array_equal(d, model.dissimilarity(rows))
    assert features_only["btc_change_1h_pct"].isna().all()  # scoring zeroed a copy, not the caller's frame


def test_the_forest_sends_a_value_equal_to_a_threshold_left_as_scikit_learn_does() -> None:
    model = fit(synthetic_events(1200, informative=True, seed=6), PARAMS)
    forest = model.forest
    splits = np.flatnonzero(forest.column < forest.n_features)  # NaN-left splits, read from the plain column
    rows = synthetic_events(len(splits), informative=True, seed=7)[list(FEATURES)].to_numpy(dtype=np.float64)
    rows[np.arange(len(splits)), forest.column[splits]] = forest.threshold[splits]  # exactly on a split
    expected = model.classifier.predict_proba(model.matrix(rows))[:, 1]
    np.testing.assert_allclose(model.forest.predict(model.matrix(rows)), expected, rtol=0, atol=1e-12)


def test_changed_scikit_learn_internals_are_named_not_a_deep_crash() -> None:
    model = fit(synthetic_events(800, informative=True), PARAMS)
    booster = model.classifier.calibrated_classifiers_[0].estimator.estimator
    check_internals(booster)  # the pinned scikit-learn has them
    del booster._predictors  # what an upgrade that renames the private trees would look like
    with pytest.raises(ForestUnsupported, match=r"lacks _predictors.*requirements/constraints.txt"):
        Forest.of(model.classifier)


def test_warming_up_compiles_the_walk_scoring_uses() -> None:
    warm_up()
    compiled = list(_tree_sums.signatures)
    model = fit(synthetic_events(800, informative=True), PARAMS)
    model.predict(synthetic_events(30, informative=True, seed=8))
    assert compiled and list(_tree_sums.signatures) == compiled  # scoring found its compiled walk: no new compile


def test_the_trees_never_fit_an_entry_whose_label_is_still_open_when_the_calibration_window_begins() -> None:
    events = synthetic_events(800, informative=True, seed=21)
    params = TrainParams(folds=2, min_events=100, max_iter=60, min_samples_leaf=5)
    cut = int(len(events) * (1 - params.calibration_share))
    late = np.arange(cut - 60, cut)  # entries just before the calibration window
    open_late = events.copy()
    open_late.loc[late, "horizon_end"] = open_late.loc[late, "decided_at"] + pd.Timedelta(hours=100)
    probe = synthetic_events(200, informative=True, seed=22)

    def trees(frame: pd.DataFrame) -> np.ndarray:
        """The trees' scores (before calibration) of the probe rows."""
        model = fit(frame, params)
        [member] = model.classifier.calibrated_classifiers_
        return member.estimator.predict_proba(model.matrix(probe))[:, 1]

    def flipped(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out.loc[late, "label"] = 1 - out.loc[late, "label"]
        return out

    # labels still open when the calibration window begins: their outcomes do not reach the trees at all
    np.testing.assert_array_equal(trees(open_late), trees(flipped(open_late)))
    # closed in time, the same entries are fitted: flipping their outcomes changes the trees (the check can fail)
    assert np.abs(trees(events) - trees(flipped(events))).max() > 0.01


def test_labels_open_together_on_one_symbol_share_their_weight_and_other_symbols_do_not_count() -> None:
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    hours = [(0, 4), (0, 4), (0, 4), (10, 14), (12, 16), (0, 4)]  # three alike; two half overlapping; one alone
    events = pd.DataFrame({"decided_at": [t0 + pd.Timedelta(hours=a) for a, _ in hours],
                           "exit_ts": [t0 + pd.Timedelta(hours=b) for _, b in hours],
                           "symbol": ["A-USDT"] * 5 + ["B-USDT"]})
    np.testing.assert_allclose(uniqueness(events), [1 / 3, 1 / 3, 1 / 3, 0.75, 0.75, 1.0])
