"""The promotion gate refuses on each of its figures and names it; it passes a model with a real edge."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from ml.config import GateParams, TrainParams
from ml.gate import decide, held_back_split, overlap_block, verdict, with_family
from ml.train import walk_forward
from tests.support.ml_events import synthetic_events

PARAMS = TrainParams(folds=3, min_events=100, max_iter=60)


@pytest.fixture(scope="module")
def good() -> dict:
    metrics = walk_forward(synthetic_events(informative=True), PARAMS, threshold=0.6)
    with_family({"dca": metrics}, "test")
    return metrics


def _failing(metrics: dict, evaluations: list | None = None, params: GateParams | None = None) -> list[str]:
    return [c.figure for c in decide(metrics, evaluations or [], params or GateParams()) if not c.passed]


def test_an_informative_model_passes_every_figure(good: dict) -> None:
    assert _failing(good) == []
    g = good["out_of_sample"]["gate"]
    assert g["auc"]["low"] > 0.5 and g["brier_skill"] > 0 and g["edge"]["low_pct"] > 0
    assert good["held_back"]["n"] >= 100 and len(good["held_back"]["assets"]) == 2


def test_too_few_out_of_sample_entries_are_refused_by_name(good: dict) -> None:
    ok, why = verdict(decide(good, [], GateParams(min_out_of_sample=5000)))
    assert not ok and "out-of-sample entries: 1800 out-of-sample entries (at least 5000)" in why


def test_a_strategy_that_passes_alone_fails_among_three_when_its_p_does_not_survive_holm(good: dict) -> None:
    metrics = copy.deepcopy(good)
    metrics["family"]["p"] = {"dca": 0.02}
    assert _failing(metrics) == []  # alone, 0.02 < 0.05
    metrics["family"]["p"] = {"dca": 0.02, "swing": 0.3, "channel": 0.5}
    ok, why = verdict(decide(metrics, [], GateParams()))
    assert not ok and "Holm across strategies: p 0.0200, Holm-adjusted over 3 strategies 0.0600" in why
    metrics["family"]["p"] = {"dca": 0.02, "swing": 0.01, "channel": 0.5}  # steps: 0.03, then 2 x 0.02 = 0.04
    assert _failing(metrics) == []


def test_a_model_without_a_real_edge_is_refused_on_the_auc_brier_and_edge(good: dict) -> None:
    noise = walk_forward(synthetic_events(informative=False, seed=3), PARAMS, threshold=0.6)
    with_family({"dca": noise}, "test")
    failing = _failing(noise)
    assert "AUC lower bound" in failing and "edge lower bound" in failing and "Holm across strategies" in failing


def test_losing_on_held_back_assets_or_on_other_data_is_refused(good: dict) -> None:
    metrics = copy.deepcopy(good)
    metrics["held_back"]["trading"]["ml_return_per_unit_pct"] = -1.92
    metrics["held_back"]["trading"]["rules_return_per_unit_pct"] = -1.88
    ok, why = verdict(decide(metrics, [], GateParams()))
    assert not ok and "held-back assets" in why and "-1.9200% vs rules -1.8800% per unit (must not lose)" in why

    losing = {"replay": "other-candles", "overlaps_training_window": False,
              "out_of_sample": {"trading": {"ml_return_per_unit_pct": -0.3, "rules_return_per_unit_pct": -0.2}}}
    assert _failing(good, [losing]) == ["evaluation on other-candles"]
    assert _failing(good, [{**losing, "overlaps_training_window": True}]) == []  # not out of sample: not read


def test_metrics_without_gate_figures_are_refused_with_what_to_do() -> None:
    ok, why = verdict(decide({"out_of_sample": {"auc": 0.57}}, [], GateParams()))
    assert not ok and "no gate figures recorded with this model: train it again" in why


def test_held_back_assets_are_left_out_of_training_and_tested_later() -> None:
    events = synthetic_events(800, informative=True)
    train, test, held = held_back_split(events, 0.25, seed=0)
    bases = events["symbol"].str.split("-").str[0]
    assert len(held) == 2 and not set(bases.iloc[train]) & set(held) and set(bases.iloc[test]) == set(held)
    assert events["horizon_end"].iloc[train].max() < events["decided_at"].iloc[test].min()


def test_the_bootstrap_block_spans_a_labels_overlap() -> None:
    decided = pd.date_range("2024-01-01", periods=200, freq="1h").to_numpy()
    assert overlap_block(decided, decided + np.timedelta64(6, "h")) == 6  # each label spans the next 5 entries
    assert overlap_block(decided, decided + np.timedelta64(30, "m")) == 1
