"""Drift on a real migrated Postgres: live predictions recorded by the scorer cycle by cycle, PSI of their scores
against the model's training set; a planted shift demotes the model with the reason on its row (and `status`
and `ml promote` say so), an unshifted stream of the same length does not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg.rows import dict_row

from controller.data import flags
from controller.scan.pipeline import MlVerdict
from controller.scan.signals import Decision
from controller.scan.strategy_params import load_strategies
from ml import registry
from ml.config import DriftParams, MlConfig
from ml.features import FEATURES
from ml.scoring import MlScorer
from ml.train import ConfidenceModel, fit
from tests.support.ml_events import synthetic_events
from tests.support.ml_registry import PARAMS, save_model
from tests.support.status import context, healthy_world, row, run_status

T0 = datetime(2024, 6, 1, tzinfo=UTC)
DRIFT = DriftParams(level=0.25, window=400, min_predictions=400, check_every=40)
CYCLE = 40  # candidates recorded per scan cycle
CYCLES = 15  # 600 predictions: the window fills, then slides


@pytest.fixture(scope="module")
def model() -> ConfidenceModel:
    return fit(synthetic_events(1600, informative=True), PARAMS)


def _scorer(url: str, model: ConfidenceModel, folder: Path) -> tuple[MlScorer, str]:
    version = save_model(url, model, folder)
    with psycopg.connect(url) as conn:
        registry.promote(conn, version, actor="cli:test", force=True)
        flags.set_flag(conn, context(url).flag_specs(), "ml.enabled", "true", "test")
    scorer = MlScorer(lambda: psycopg.connect(url), load_strategies(), MlConfig(drift=DRIFT), "binance")
    with psycopg.connect(url) as conn:
        scorer.refresh(conn)
    return scorer, version


def _stream(scorer: MlScorer, model: ConfidenceModel, version: str, live: pd.DataFrame) -> None:
    """Score `live` with the model and record it as the scan does, `CYCLE` candidates a cycle."""
    for start in range(0, len(live), CYCLE):
        if "dca" not in scorer.models:
            return  # demoted: nothing scores any more
        batch = live.iloc[start:start + CYCLE][list(FEATURES)]
        confidence, dissimilarity = model.score(batch)
        rows = []
        for i, (_, values) in enumerate(batch.iterrows()):
            close = T0 + timedelta(minutes=5 * (start + i))
            decision = Decision("dca", "binance", f"C{i % 8}-USDT", 300, close, 1.0, True, 0.5, "test", {})
            verdict = MlVerdict(float(confidence[i]), version, "boosted", 1.0, False,
                                float(dissimilarity[i]),
                                {k: (None if not np.isfinite(v) else float(v)) for k, v in values.items()})
            rows.append((decision, verdict, None))
        scorer.record(rows)


def _row(url: str, version: str) -> dict:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute("select * from ml_models where version = %s", (version,)).fetchone()


def test_an_unshifted_stream_keeps_the_model_and_shows_its_drift(migrated_db: str, tmp_path: Path,
                                                                  model: ConfidenceModel,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    scorer, version = _scorer(migrated_db, model, tmp_path)
    _stream(scorer, model, version, synthetic_events(CYCLE * CYCLES, informative=True, seed=11))
    stored = _row(migrated_db, version)
    assert stored["active"] and stored["demoted_at"] is None
    assert stored["drift"]["n"] == DRIFT.window and stored["drift"]["score_psi"] < DRIFT.level
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
    code, out = run_status(migrated_db, capsys)
    assert code == 0, out
    assert "healthy" in row(out, "ml")
    code, out = run_status(migrated_db, capsys, as_json=True)
    [ml] = [c for c in json.loads(out)["components"] if c["name"] == "ml"]
    [(name, psi), *_] = stored["drift"]["features"]
    assert ml["notes"][-1].startswith(f"drift dca: score PSI {stored['drift']['score_psi']:.3f} over "
                                      f"{DRIFT.window} live (level 0.25); {name} {psi:.2f}, ")


def test_a_planted_shift_demotes_the_model_with_its_reason(migrated_db: str, tmp_path: Path,
                                                          model: ConfidenceModel,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    scorer, version = _scorer(migrated_db, model, tmp_path)
    live = synthetic_events(CYCLE * CYCLES, informative=True, seed=12)
    live["rule_confidence"] += 1.0  # the feature the label follows: the scores move up
    _stream(scorer, model, version, live)
    stored = _row(migrated_db, version)
    assert not stored["active"] and stored["demoted_by"] == "drift"
    assert stored["demotion_note"].startswith("drift: score PSI ")
    assert "rule_confidence" in stored["demotion_note"]  # the moved input is named first
    assert stored["drift"]["score_psi"] > DRIFT.level and stored["drift"]["n"] == DRIFT.min_predictions
    with psycopg.connect(migrated_db) as conn:
        assert registry.active_versions(conn) == {}
        predicted = conn.execute("select count(*) from ml_predictions").fetchone()[0]
        ok, why = registry.promote(conn, version, actor="cli:test")
    assert predicted == DRIFT.min_predictions  # demoted as soon as a full window said so; nothing scored after
    assert not ok and why.startswith("refused: demoted ") and "score PSI" in why
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
    code, out = run_status(migrated_db, capsys)
    flat = " ".join(out.split())
    assert code == 1
    assert "degraded" in row(out, "ml")
    assert f"model {version} of dca demoted: drift: score PSI" in flat


def test_a_short_window_is_measured_but_never_decides(migrated_db: str, tmp_path: Path,
                                                      model: ConfidenceModel) -> None:
    scorer, version = _scorer(migrated_db, model, tmp_path)
    live = synthetic_events(DRIFT.min_predictions - CYCLE, informative=True, seed=13)
    live["rule_confidence"] += 1.0
    _stream(scorer, model, version, live)
    stored = _row(migrated_db, version)
    assert stored["active"] and stored["drift"]["score_psi"] > DRIFT.level
