"""The registry on a real Postgres (hash and feature checks, the promotion gate) and the scan with ML on:
batch scoring, the control split, OOD and stale models, the veto, the dashboard's arms."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from controller.data import flags
from controller.data.storage.postgres import PostgresStore
from controller.scan.regime import Regime
from controller.scan.strategy_params import load_strategies
from ml import registry
from ml.config import GateParams, MlConfig
from ml.features import FEATURES, REGIME_FEATURES
from ml.gate import with_family
from ml.payoff import threshold
from ml.scoring import MlScorer
from ml.train import ConfidenceModel, fit, walk_forward
from tests.support.ml_events import synthetic_events
from tests.support.ml_registry import PARAMS, save_model
from tests.support.scan import ACT_AS_CAUTION, BTC_SIZING, ENTRY_SCAN, SPECS, rows, scanner

SMALL_GATE = GateParams(min_out_of_sample=100, min_held_back=30)  # 600 synthetic entries


@pytest.fixture(scope="module")
def wide_model() -> tuple[ConfidenceModel, dict[str, Any]]:
    """A model whose training inputs span every live value (so nothing is OOD), with its walk-forward metrics:
    the regime reading is missing in part of its training rows, as it is in the scan these tests run."""
    events = synthetic_events(600, informative=True)
    events[list(FEATURES)] = events[list(FEATURES)] * 1000.0
    events["btc_change_1h_pct"] = np.nan
    events.loc[events.index % 3 == 0, list(REGIME_FEATURES)] = np.nan
    metrics = walk_forward(events, PARAMS, 0.6, gate=SMALL_GATE)
    with_family({"dca": metrics}, "test")
    return fit(events, PARAMS), metrics


@pytest.fixture(scope="module")
def narrow_model() -> ConfidenceModel:
    events = synthetic_events(600, informative=True)
    events[list(FEATURES)] = events[list(FEATURES)] * 1e-6
    return fit(events, PARAMS)


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    with psycopg.connect(migrated_db) as conn:
        flags.sync(conn, SPECS, "test")
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


def _activate(url: str, version: str) -> None:
    with psycopg.connect(url) as conn:
        registry.promote(conn, version, actor="cli:test", force=True)


def _set_flags(url: str, **values: str) -> None:
    with psycopg.connect(url) as conn:
        for name, value in values.items():
            flags.set_flag(conn, SPECS, name.replace("_", ".", 1), value, "test")


# What the rules alone size an ADA-BTC entry at: the scanner's BTC amount at CAUTION's multiplier.
BASE = BTC_SIZING.quotes["BTC"].amount * ACT_AS_CAUTION.size_multiplier[Regime.CAUTION]


def _scan(store: PostgresStore, url: str) -> tuple[Any, MlScorer]:
    scan, _ = scanner(store, ENTRY_SCAN, symbols=("ADA-BTC",))
    scorer = MlScorer(lambda: psycopg.connect(url), load_strategies(), MlConfig(), "bittrex")
    scan.scorer = scorer
    return scan.scan(), scorer


# --- registry ----------------------------------------------------------------------------------------


def test_a_saved_model_loads_and_a_changed_artefact_is_refused(migrated_db: str, tmp_path: Path,
                                                               wide_model: tuple[ConfidenceModel, dict]) -> None:
    version = save_model(migrated_db, wide_model[0], tmp_path)
    with psycopg.connect(migrated_db) as conn:
        loaded = registry.load(conn, version)
        [(path, digest, features)] = conn.execute(
            "select artefact_path, artefact_sha256, features from ml_models where version = %s", (version,)).fetchall()
        assert digest == registry.sha256_of(Path(path)) and features == list(FEATURES)
        assert loaded.model.predict(synthetic_events(5, informative=True)).shape == (5,)

        with open(path, "ab") as handle:
            handle.write(b"\0")
        with pytest.raises(registry.ArtefactMismatch, match="SHA-256"):
            registry.load(conn, version)


def test_a_feature_list_that_differs_by_name_is_refused(migrated_db: str, tmp_path: Path,
                                                        wide_model: tuple[ConfidenceModel, dict]) -> None:
    version = save_model(migrated_db, wide_model[0], tmp_path)
    with psycopg.connect(migrated_db) as conn:
        renamed = [("rsi_14" if f == "rsi" else f) for f in FEATURES]
        conn.execute("update ml_models set features = %s where version = %s",
                     (psycopg.types.json.Jsonb(renamed), version))
        with pytest.raises(registry.ArtefactMismatch, match=r"missing \['rsi'\], unexpected \['rsi_14'\]"):
            registry.load(conn, version)
        # code that computes the renamed list, with a row that agrees: the artefact itself still disagrees
        with pytest.raises(registry.ArtefactMismatch, match="feature list of the artefact"):
            registry.load(conn, version, expected_features=tuple(renamed))


def test_the_gate_promotes_only_a_model_that_passes_every_figure_and_beats_the_active_one(
        migrated_db: str, tmp_path: Path, wide_model: tuple[ConfidenceModel, dict]) -> None:
    model, good = wide_model
    noise = walk_forward(synthetic_events(600, informative=False, seed=5), PARAMS, 0.6, gate=SMALL_GATE)
    with_family({"dca": noise}, "test")
    weak = save_model(migrated_db, model, tmp_path, noise, now=datetime(2024, 1, 1, tzinfo=UTC))
    strong = save_model(migrated_db, model, tmp_path, good, now=datetime(2024, 1, 2, tzinfo=UTC))
    with psycopg.connect(migrated_db) as conn:
        promoted, why = registry.promote(conn, weak, actor="cli:alice", params=SMALL_GATE)
        assert not promoted and why.startswith("refused: ") and "AUC lower bound" in why
        assert registry.active_versions(conn) == {}

        promoted, why = registry.promote(conn, strong, actor="cli:alice", params=SMALL_GATE)
        assert promoted, why
        assert registry.active_versions(conn) == {"dca": strong}
        [(by,)] = conn.execute("select promoted_by from ml_models where version = %s", (strong,)).fetchall()
        assert by == "gate"

        promoted, why = registry.promote(conn, weak, actor="cli:bob", force=True, note="testing the control")
        assert promoted and "forced by cli:bob" in why
        [(active, by, note)] = conn.execute(
            "select active, promoted_by, promotion_note from ml_models where version = %s", (weak,)).fetchall()
        assert active and by == "cli:bob" and "testing the control" in note
        assert registry.active_versions(conn) == {"dca": weak}


# --- the scan with ML on -------------------------------------------------------------------------------


def test_ml_off_leaves_signals_unscored(store: PostgresStore, migrated_db: str, tmp_path: Path,
                                        wide_model: tuple[ConfidenceModel, dict]) -> None:
    _activate(migrated_db, save_model(migrated_db, wide_model[0], tmp_path))
    report, _ = _scan(store, migrated_db)
    assert report.emitted == 1
    [(confidence, model, amount)] = rows(migrated_db, "select ml_confidence, model_version, quote_amount from signals")
    assert (confidence, model, float(amount)) == (None, None, pytest.approx(BASE))
    assert rows(migrated_db, "select count(*) from ml_predictions") == [(0,)]


def test_a_boosted_signal_carries_its_score_and_a_scaled_size(store: PostgresStore, migrated_db: str,
                                                               tmp_path: Path,
                                                               wide_model: tuple[ConfidenceModel, dict]) -> None:
    version = save_model(migrated_db, wide_model[0], tmp_path)
    _activate(migrated_db, version)
    _set_flags(migrated_db, ml_enabled="true", ml_control_share="0")
    report, scorer = _scan(store, migrated_db)
    assert report.emitted == 1
    [(signal_id, confidence, model, amount)] = rows(
        migrated_db, "select id, ml_confidence, model_version, quote_amount from signals")
    [(p_signal, p_conf, arm, mult, dissimilarity)] = rows(
        migrated_db, "select signal_id, confidence, arm, size_multiplier, dissimilarity from ml_predictions")
    assert model == version and p_signal == signal_id and arm == "boosted"
    assert confidence == pytest.approx(p_conf) and 0 <= confidence <= 1
    # the threshold is DCA's break-even by its take profit, stop and costs (the floor flag is 0)
    break_even = threshold(load_strategies().dca.params.for_symbol("ADA-BTC"), MlConfig().costs)
    assert 0.9 < break_even < 0.95
    assert mult == pytest.approx(min(1.5, max(0.5, 1 + 2 * (confidence - break_even))))
    assert float(amount) == pytest.approx(BASE * mult)
    assert dissimilarity < MlConfig().ood_max_dissimilarity
    [(progress,)] = rows(migrated_db, "select progress from heartbeats where component = 'ml'")
    assert progress["boosted"] == 1 and progress["models"] == {"dca": version}
    assert scorer.counters["scored"] == 1


def test_a_control_signal_is_scored_but_keeps_its_size(store: PostgresStore, migrated_db: str, tmp_path: Path,
                                                       wide_model: tuple[ConfidenceModel, dict]) -> None:
    _activate(migrated_db, save_model(migrated_db, wide_model[0], tmp_path))
    _set_flags(migrated_db, ml_enabled="true", ml_control_share="1")
    _scan(store, migrated_db)
    [(confidence, amount)] = rows(migrated_db, "select ml_confidence, quote_amount from signals")
    assert confidence is not None and float(amount) == pytest.approx(BASE)
    assert rows(migrated_db, "select arm, size_multiplier from ml_predictions") == [("control", 1.0)]


def test_a_stale_model_and_unlike_inputs_have_no_effect_and_are_counted(
        store: PostgresStore, migrated_db: str, tmp_path: Path, narrow_model: ConfidenceModel,
        wide_model: tuple[ConfidenceModel, dict]) -> None:
    _activate(migrated_db, save_model(migrated_db, narrow_model, tmp_path))
    _set_flags(migrated_db, ml_enabled="true", ml_control_share="0", ml_veto="true", ml_min_confidence="1")
    report, scorer = _scan(store, migrated_db)
    assert report.emitted == 1  # the veto would have dropped it: OOD scores have no effect
    assert rows(migrated_db, "select arm, vetoed from ml_predictions") == [("ood", False)]
    assert [float(a) for (a,) in rows(migrated_db, "select quote_amount from signals")] == [pytest.approx(BASE)]
    assert scorer.counters["ood"] == 1

    with psycopg.connect(migrated_db) as conn:  # the queue keeps one signal per decision candle: start afresh
        conn.execute("delete from ml_predictions; delete from scans; delete from signals")
    version = save_model(migrated_db, wide_model[0], tmp_path, now=datetime(2024, 1, 5, tzinfo=UTC))
    _activate(migrated_db, version)
    with psycopg.connect(migrated_db) as conn:
        conn.execute("update ml_models set created_at = now() - interval '90 days' where version = %s", (version,))
    report, scorer = _scan(store, migrated_db)
    assert report.emitted == 1
    assert rows(migrated_db, "select arm, vetoed from ml_predictions order by id desc limit 1") == [("stale", False)]
    assert scorer.progress()["stale"] == 1


def test_the_veto_drops_a_low_confidence_boosted_entry_only_when_on(
        store: PostgresStore, migrated_db: str, tmp_path: Path, wide_model: tuple[ConfidenceModel, dict]) -> None:
    _activate(migrated_db, save_model(migrated_db, wide_model[0], tmp_path))
    _set_flags(migrated_db, ml_enabled="true", ml_control_share="0", ml_veto="true", ml_min_confidence="1")
    report = _scan(store, migrated_db)[0]
    assert report.emitted == 0
    [(decision, reason)] = rows(migrated_db, "select decision, reason from scans where strategy = 'dca'")
    assert decision == "skip" and reason.startswith("ml veto: confidence")
    assert rows(migrated_db, "select arm, vetoed, signal_id from ml_predictions") == [("boosted", True, None)]


def test_a_tampered_active_model_is_refused_and_signals_go_out_unscored(
        store: PostgresStore, migrated_db: str, tmp_path: Path, wide_model: tuple[ConfidenceModel, dict]) -> None:
    version = save_model(migrated_db, wide_model[0], tmp_path)
    _activate(migrated_db, version)
    _set_flags(migrated_db, ml_enabled="true")
    [(path,)] = rows(migrated_db, "select artefact_path from ml_models")
    Path(path).write_bytes(b"not a model")
    report, scorer = _scan(store, migrated_db)
    assert report.emitted == 1
    assert rows(migrated_db, "select ml_confidence from signals") == [(None,)]
    assert "SHA-256" in scorer.problems["dca"] and scorer.counters["model_refused"] == 1


def test_the_dashboard_compares_boosted_control_and_ml_off_trades(migrated_db: str, tmp_path: Path,
                                                                   wide_model: tuple[ConfidenceModel, dict]) -> None:
    version = save_model(migrated_db, wide_model[0], tmp_path)
    outcomes = {"boosted": [5, 5, -2, 3], "control": [1, -1, -1], None: [2, -3]}
    with psycopg.connect(migrated_db) as conn:
        for i, (arm, pnls) in enumerate(outcomes.items()):
            for j, pnl in enumerate(pnls):
                symbol = f"S{i}{j}-BTC"
                [(sid,)] = conn.execute(
                    "insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount,"
                    " take_profit_pct, confidence, status, finished_at) values (now(), 'dca', 'x', %s, 'buy', 1, 50,"
                    " 3, 0.5, 'closed', now()) returning id", (symbol,)).fetchall()
                if arm:
                    conn.execute("insert into ml_predictions (model_version, signal_id, strategy, exchange, symbol,"
                                 " candle_ts, confidence, arm) values (%s, %s, 'dca', 'x', %s, now(), 0.7, %s)",
                                 (version, sid, symbol, arm))
                conn.execute("insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price,"
                             " pnl_quote, pnl_pct, exit_reason, opened_at, closed_at) values (%s, 'x', %s, 'buy', 1,"
                             " 1, 1, %s, %s, 'take_profit', now(), now())", (sid, symbol, pnl, pnl))
    view = {r[0]: r[1:] for r in rows(migrated_db, "select arm, trades, wins, win_rate_pct, win_rate_ci_low_pct,"
                                                   " win_rate_ci_high_pct, pnl_quote from dashboard_ml_vs_rules")}
    assert set(view) == {"boosted", "control", "ml_off"}
    trades, wins, rate, low, high, pnl = view["boosted"]
    assert (trades, wins, float(rate), float(pnl)) == (4, 3, 75.0, 11)
    assert 0 < float(low) < 75 < float(high) <= 100
    assert view["control"][:2] == (3, 1) and float(view["ml_off"][-1]) == -1
