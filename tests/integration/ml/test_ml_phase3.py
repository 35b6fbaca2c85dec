"""`python -m controller flags phase 3` on the recorded demo candles: it sets the flags, trains on what was known
before the replayed window, applies the promotion gate (saying why it refuses), and replays the window with ML."""

from __future__ import annotations

import json

import psycopg

from controller.data.market_data import ohlcv_dir
from tests.integration.ml.test_ml_cli import run


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_phase_3_trains_refuses_with_the_reason_and_replays_with_ml(migrated_db: str, tmp_path) -> None:
    done = run(migrated_db, "flags", "phase", "3", "--replay", str(ohlcv_dir()), "--hours", "12",
               CONTROLLER_ML__MODEL_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout
    summary = last_json(done.stdout)
    assert summary["phase"] == 3 and summary["exchange"] == "bittrex"
    # the demo recordings hold too few entries per purged window: every strategy is refused, with the reason
    assert summary["active"] == {}
    assert summary["refused"] and all("at least 200 needed" in why or "no trainable walk-forward window" in why
                                      for why in summary["refused"].values())
    assert "no active model: the scans below score nothing" in done.stdout
    assert summary["scans"] >= 12 * 12  # every 5 minutes of the 12 hours
    with psycopg.connect(migrated_db) as conn:
        [(enabled, phase)] = conn.execute(
            "select (select value from flags where name = 'ml.enabled'), "
            "(select value from flags where name = 'phase')").fetchall()
    assert enabled is True and phase == 3


def test_phase_3_with_an_active_model_scores_the_replayed_candidates(migrated_db: str, tmp_path) -> None:
    small = {"CONTROLLER_ML__TRAIN__MIN_EVENTS": "40", "CONTROLLER_ML__TRAIN__FOLDS": "2",
             "CONTROLLER_ML__TRAIN__MIN_MINORITY_EVENTS": "10", "CONTROLLER_ML__TRAIN__MAX_ITER": "30",
             "CONTROLLER_ML__MODEL_DIR": str(tmp_path)}
    first = run(migrated_db, "flags", "phase", "3", "--replay", str(ohlcv_dir()), "--hours", "48", **small)
    assert first.returncode == 0, first.stderr + first.stdout
    summary = last_json(first.stdout)
    trained = {n: v for n, v in summary["verdicts"].items() if n not in summary["refused"]}
    assert trained, summary  # at least one strategy trained and went through the gate
    for verdict in trained.values():
        assert ("promoted" in verdict or "kept inactive" in verdict) and "(" in verdict  # with its reason
    if not summary["active"]:  # the gate refused: force one model, as an operator can, and run the phase again
        version = next(v.split(":")[0] for v in trained.values())
        forced = run(migrated_db, "ml", "promote", version, "--force", "--note", "test")
        assert forced.returncode == 0, forced.stderr
        again = run(migrated_db, "flags", "phase", "3", "--replay", str(ohlcv_dir()), "--hours", "48", **small)
        assert again.returncode == 0, again.stderr + again.stdout
        summary = last_json(again.stdout)
        assert version in summary["active"].values()
    assert sum(summary["arms"].values()) > 0, summary  # the replayed candidates were scored
    with psycopg.connect(migrated_db) as conn:
        [(predictions,)] = conn.execute("select count(*) from ml_predictions").fetchall()
    assert predictions == sum(summary["arms"].values())
