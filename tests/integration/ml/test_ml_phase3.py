"""`python -m controller flags phase 3` on the recorded demo candles: it sets the flags, trains on what was known
before the replayed window, applies the promotion gate (saying why it refuses), and replays the window with ML."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg

from controller.data.market_data import ohlcv_dir
from tests.support.cli import run


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_phase_3_trains_refuses_with_the_reason_and_replays_with_ml(migrated_db: str, tmp_path: Path) -> None:
    done = run(migrated_db, "flags", "phase", "3", "--replay", str(ohlcv_dir()), "--hours", "6",
               CONTROLLER_ML__MODEL_DIR=str(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout
    summary = last_json(done.stdout)
    assert summary["phase"] == 3 and summary["exchange"] == "bittrex"
    # the demo recordings hold too few entries per purged window: every strategy is refused, with the reason
    assert summary["active"] == {}
    assert summary["refused"] and all("at least 200 needed" in why or "no trainable walk-forward window" in why
                                      for why in summary["refused"].values())
    assert "no active model: the scans below score nothing" in done.stdout
    assert summary["scans"] >= 6 * 12  # every 5 minutes of the 6 hours
    with psycopg.connect(migrated_db) as conn:
        [(enabled, phase)] = conn.execute(
            "select (select value from flags where name = 'ml.enabled'), "
            "(select value from flags where name = 'phase')").fetchall()
    assert enabled is True and phase == 3


def recordings_until(folder: Path, until_ms: int, into: Path) -> Path:
    """The demo recordings cut at `until_ms` (the windows' end then falls just after a few known entries)."""
    into.mkdir()
    for path in sorted(folder.glob("*.csv")):
        lines = path.read_text().splitlines()
        kept = [lines[0], *(line for line in lines[1:] if int(line.split(",")[0]) <= until_ms)]
        (into / path.name).write_text("\n".join(kept) + "\n")
    return into


def test_phase_3_with_an_active_model_scores_the_replayed_candidates(migrated_db: str, tmp_path: Path) -> None:
    # cut at 2018-01-27 02:00 UTC: DCA entered on XLM-BTC at 01:15 (CHANNEL at 00:15, 00:35 and 00:50)
    folder = recordings_until(ohlcv_dir(), 1517018400000, tmp_path / "candles")
    small = {"CONTROLLER_ML__TRAIN__MIN_EVENTS": "40", "CONTROLLER_ML__TRAIN__FOLDS": "2",
             "CONTROLLER_ML__TRAIN__MIN_MINORITY_EVENTS": "10", "CONTROLLER_ML__TRAIN__MAX_ITER": "30",
             "CONTROLLER_ML__MODEL_DIR": str(tmp_path / "models")}
    # an operator forced a DCA model active earlier (the gate alone keeps these models inactive)
    trained = run(migrated_db, "ml", "train", "--replay", str(folder), "--strategy", "dca", **small)
    assert trained.returncode == 0, trained.stderr + trained.stdout
    version = last_json(trained.stdout)["versions"]["dca"]
    assert run(migrated_db, "ml", "promote", version, "--force", "--note", "test").returncode == 0

    done = run(migrated_db, "flags", "phase", "3", "--replay", str(folder), "--hours", "3", **small)
    assert done.returncode == 0, done.stderr + done.stdout
    summary = last_json(done.stdout)
    assert summary["window_end"].startswith("2018-01-27T02:0")
    trained_now = {n: v for n, v in summary["verdicts"].items() if n not in summary["refused"]}
    assert trained_now, summary  # the phase trained at least one strategy and put it through the gate
    for verdict in trained_now.values():
        assert ("promoted" in verdict or "kept inactive" in verdict) and "(" in verdict  # with its reason
    assert "dca" in summary["active"]
    assert summary["arms"] and sum(summary["arms"].values()) >= 1, summary  # the window's entry was scored
    with psycopg.connect(migrated_db) as conn:
        [(predictions,)] = conn.execute("select count(*) from ml_predictions").fetchall()
    assert predictions == sum(summary["arms"].values())
