"""The retrainer beside the loop: when it is due, and that a failed or hung retrain alerts and keeps the
active model."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from controller.scan.strategy_params import load_strategies
from ml import registry
from ml.config import MlConfig, RetrainConfig
from ml.retrain import Retrainer, TrainOutcome
from ml.train import TrainingRefused, fit
from tests.support.clock import WAIT_S
from tests.support.ml_events import synthetic_events
from tests.support.ml_registry import PARAMS, save_model

# A retrain that should finish gets a deadline a loaded 2-core box never reaches; only the hang test, whose
# job never returns, uses a short one (so it is abandoned quickly, whatever the load).
CONFIG = MlConfig(retrain=RetrainConfig(interval_h=24, min_new_labels=3, timeout_s=WAIT_S))
HANG_CONFIG = MlConfig(retrain=RetrainConfig(interval_h=24, min_new_labels=3, timeout_s=0.5))


def _retrainer(url: str, alerts: list[tuple[str, str]], train=None, now: datetime | None = None,
               config: MlConfig = CONFIG) -> Retrainer:
    return Retrainer(config, load_strategies(), lambda: psycopg.connect(url), lambda c, t: alerts.append((c, t)),
                     threshold=lambda: 0.6, clock=lambda: now or datetime.now(UTC), train=train)


@pytest.fixture(scope="module")
def model():
    return fit(synthetic_events(400, informative=True), PARAMS)


def _close_trades(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        for i in range(n):
            [(sid,)] = conn.execute(
                "insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount,"
                " take_profit_pct, confidence, status, finished_at) values (now(), 'dca', 'x', %s, 'buy', 1, 50, 3,"
                " 0.5, 'closed', now()) returning id", (f"T{i}-BTC",)).fetchall()
            conn.execute("insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price,"
                         " pnl_quote, pnl_pct, exit_reason, opened_at, closed_at) values (%s, 'x', %s, 'buy', 1, 1,"
                         " 1, 1, 1, 'take_profit', now(), now() + interval '1 minute')", (sid, f"T{i}-BTC"))


def test_a_retrain_is_due_daily_or_after_enough_new_labels(migrated_db: str, tmp_path: Path, model) -> None:
    alerts: list[tuple[str, str]] = []
    assert _retrainer(migrated_db, alerts).due() == "no model yet"
    save_model(migrated_db, model, tmp_path, now=datetime.now(UTC))
    assert _retrainer(migrated_db, alerts).due() is None
    assert "older than 24 h" in _retrainer(migrated_db, alerts, now=datetime.now(UTC) + timedelta(hours=25)).due()
    _close_trades(migrated_db, 3)
    assert _retrainer(migrated_db, alerts).due() == "3 trades closed since the newest model"


def test_a_failed_retrain_alerts_and_keeps_the_active_model(migrated_db: str, tmp_path: Path, model) -> None:
    version = save_model(migrated_db, model, tmp_path)
    with psycopg.connect(migrated_db) as conn:
        registry.promote(conn, version, actor="cli:test", force=True)
    alerts: list[tuple[str, str]] = []

    def refuse() -> TrainOutcome:
        raise TrainingRefused("refused: the target is constant (all 300 labels are 1)")

    retrainer = _retrainer(migrated_db, alerts, train=refuse)
    assert retrainer.run_once("test") is False
    assert alerts and alerts[0][0] == "ml:retrain" and "the active model stays" in alerts[0][1]
    assert "constant" in alerts[0][1] and retrainer.failures == 1
    with psycopg.connect(migrated_db) as conn:
        assert registry.active_versions(conn) == {"dca": version}
        assert conn.execute("select count(*) from ml_models").fetchone()[0] == 1


def test_a_hung_retrain_is_abandoned_at_its_timeout(migrated_db: str, tmp_path: Path, model) -> None:
    version = save_model(migrated_db, model, tmp_path)
    with psycopg.connect(migrated_db) as conn:
        registry.promote(conn, version, actor="cli:test", force=True)
    never = threading.Event()
    alerts: list[tuple[str, str]] = []

    def hang() -> TrainOutcome:
        never.wait()
        return TrainOutcome()

    try:
        assert _retrainer(migrated_db, alerts, train=hang, config=HANG_CONFIG).run_once("test") is False
        assert "StrategyTimeout" in alerts[0][1]
        with psycopg.connect(migrated_db) as conn:
            assert registry.active_versions(conn) == {"dca": version}
    finally:
        never.set()


def test_a_real_retrain_on_stored_candles_refuses_too_little_data(migrated_db: str) -> None:
    alerts: list[tuple[str, str]] = []
    retrainer = _retrainer(migrated_db, alerts)  # its own training: the store holds no candles
    assert retrainer.run_once("test") is False
    assert "no labelled entries" in alerts[0][1]
