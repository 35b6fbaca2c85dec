"""`status` shows the ML booster's out-of-distribution and stale counts, and a stale active model degrades it:
the heartbeat is the one `ml.scoring.MlScorer` writes, read back through the status table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from controller.data import flags
from controller.scan.strategy_params import load_strategies
from ml.config import MlConfig
from ml.registry import LoadedModel
from ml.scoring import MlScorer
from tests.support.status import context, healthy_world, row, run_status

NOW = datetime.now(UTC)


def scorer_heartbeat(url: str, *, model_age_days: float) -> None:
    scorer = MlScorer(lambda: psycopg.connect(url, autocommit=True), load_strategies(), MlConfig(max_age_days=30),
                      "binance", wall_clock=lambda: NOW)
    scorer.models["dca"] = LoadedModel("dca-20260101T000000-abcdef12", "dca", None,  # type: ignore[arg-type]
                                       NOW - timedelta(days=model_age_days), {})
    scorer.counters.update({"cycles": 40, "scored": 17, "boosted": 9, "control": 3, "ood": 3, "stale": 2})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select heartbeat('ml', %s)", (Jsonb(scorer.progress()),))
        flags.set_flag(conn, context(url).flag_specs(), "ml.enabled", "true", "test")


def test_the_status_table_shows_ood_and_stale_counts(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
    scorer_heartbeat(migrated_db, model_age_days=2)
    code, out = run_status(migrated_db, capsys)
    line = row(out, "ml")
    assert code == 0, out
    assert "healthy" in line
    assert "scored 17: boosted 9, control 3, ood 3, stale 2" in " ".join(out.split())


def test_a_stale_active_model_degrades_ml_and_says_why(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
    scorer_heartbeat(migrated_db, model_age_days=45)
    code, out = run_status(migrated_db, capsys)
    flat = " ".join(out.split())
    assert code == 1
    assert "degraded" in row(out, "ml")
    assert "model dca-20260101T000000-abcdef12 is stale: its scores have no effect" in flat
    code, out = run_status(migrated_db, capsys, as_json=True)
    [ml] = [c for c in json.loads(out)["components"] if c["name"] == "ml"]
    assert ml["state"] == "degraded" and ml["notes"] == ["scored 17: boosted 9, control 3, ood 3, stale 2"]
