"""`python -m controller ml …` as a user runs it (the same typer app, in this process), against a real migrated
Postgres and recorded candles."""

from __future__ import annotations

import json

import psycopg

from controller.data.market_data import ohlcv_dir
from tests.support.cli import run


def test_train_refuses_too_little_data_with_the_reason(migrated_db: str) -> None:
    done = run(migrated_db, "ml", "train", "--replay", str(ohlcv_dir()), "--strategy", "swing")
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["versions"] == {}
    assert "labelled events, at least 200 needed" in summary["strategies"]["swing"]["refused"]
    listed = run(migrated_db, "ml", "list")
    assert "no models yet" in listed.stdout


def test_train_registers_evaluate_scores_it_on_other_data_and_promote_says_why(migrated_db: str, tmp_path) -> None:
    small = {"CONTROLLER_ML__TRAIN__MIN_EVENTS": "40", "CONTROLLER_ML__TRAIN__FOLDS": "2",
             "CONTROLLER_ML__TRAIN__MIN_MINORITY_EVENTS": "10",
             "CONTROLLER_ML__TRAIN__MAX_ITER": "30", "CONTROLLER_ML__MODEL_DIR": str(tmp_path)}
    trained = run(migrated_db, "ml", "train", "--replay", str(ohlcv_dir()), "--strategy", "dca", **small)
    assert trained.returncode == 0, trained.stderr + trained.stdout
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    version = summary["versions"]["dca"]
    figures = summary["strategies"]["dca"]
    assert 0 <= figures["auc"] <= 1 and figures["rules_trades"] > 0
    assert "registered, gate" in trained.stdout

    evaluated = run(migrated_db, "ml", "evaluate", "--replay", str(ohlcv_dir()), "--model", version, **small)
    assert evaluated.returncode == 0, evaluated.stderr
    last = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert last["model"] == version and last["overlaps_training_window"] is True
    assert {"auc", "brier", "rules_win_rate", "ml_win_rate", "rules_net_pnl_pct", "ml_net_pnl_pct"} <= set(
        last["strategies"]["dca"])
    with psycopg.connect(migrated_db) as conn:
        [(evaluations,)] = conn.execute("select evaluations from ml_models where version = %s", (version,)).fetchall()
    assert len(evaluations) == 1

    promoted = run(migrated_db, "ml", "promote", version)
    with psycopg.connect(migrated_db) as conn:
        [(active, by)] = conn.execute("select active, promoted_by from ml_models where version = %s",
                                      (version,)).fetchall()
    if promoted.returncode == 0:
        assert active and by == "gate"
    else:
        assert not active and "kept inactive" in promoted.stderr and "--force" in promoted.stderr
        assert "refused: " in promoted.stderr  # the failing gate figure is named
        forced = run(migrated_db, "ml", "promote", version, "--force", "--note", "demo")
        assert forced.returncode == 0, forced.stderr
        with psycopg.connect(migrated_db) as conn:
            [(active, by)] = conn.execute("select active, promoted_by from ml_models where version = %s",
                                          (version,)).fetchall()
        assert active and by.startswith("cli:")
    assert version in run(migrated_db, "ml", "list").stdout


def test_evaluate_without_a_model_stores_its_own_record_and_changes_no_models_metrics(migrated_db: str,
                                                                                     tmp_path) -> None:
    small = {"CONTROLLER_ML__TRAIN__MIN_EVENTS": "40", "CONTROLLER_ML__TRAIN__FOLDS": "2",
             "CONTROLLER_ML__TRAIN__MIN_MINORITY_EVENTS": "10",
             "CONTROLLER_ML__TRAIN__MAX_ITER": "30", "CONTROLLER_ML__MODEL_DIR": str(tmp_path)}
    trained = run(migrated_db, "ml", "train", "--replay", str(ohlcv_dir()), "--strategy", "dca", **small)
    assert trained.returncode == 0, trained.stderr + trained.stdout
    with psycopg.connect(migrated_db) as conn:
        before = conn.execute("select version, metrics from ml_models").fetchall()
    # other settings: the fresh walk-forward differs from the stored one, so an overwrite would show
    evaluated = run(migrated_db, "ml", "evaluate", "--replay", str(ohlcv_dir()), "--strategy", "dca",
                    **{**small, "CONTROLLER_ML__TRAIN__FOLDS": "3"})
    assert evaluated.returncode == 0, evaluated.stderr
    last = json.loads(evaluated.stdout.strip().splitlines()[-1])
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select version, metrics from ml_models").fetchall() == before
        [(strategy, metrics)] = conn.execute("select strategy, metrics from ml_evaluations").fetchall()
    assert strategy == "dca" and last["evaluations"] == {"dca": 1}
    assert len(metrics["folds"]) + len(metrics["skipped_folds"]) == 3

