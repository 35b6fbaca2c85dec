"""The scan loop on recorded candles and a real Postgres: decisions, signals, scans, heartbeats, failures."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from bridge.resilience import ResilientCaller, RetryPolicy
from controller.config import ControllerConfig
from controller.data import flags
from controller.data.market_data import CcxtSource, FailoverSource, ReplaySource, SimClock, ohlcv_dir
from controller.data.storage.postgres import PostgresStore
from controller.ops.health import HealthConfig, Heartbeat, Kind, assess_heartbeat
from controller.scan.pipeline import Scanner, below_min_confidence, run_replay
from controller.scan.strategies import STRATEGIES
from controller.scan.strategy_params import load_strategies
from tests.support.scan import ACT_AS_CAUTION, BTC_SIZING, ENTRY_SCAN, SPECS, rows, scanner


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    with psycopg.connect(migrated_db) as conn:
        flags.sync(conn, SPECS, "test")
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


def test_a_scan_emits_a_signal_where_the_rule_holds_and_records_every_decision(store: PostgresStore,
                                                                                migrated_db: str) -> None:
    scan, _ = scanner(store, ENTRY_SCAN)

    report = scan.scan()

    assert report.emitted == 2  # DCA on ADA-BTC and ETH-BTC; channel enters neither
    [(signal_id, price, amount, status, expires)] = rows(
        migrated_db, "select id, price, quote_amount, status, expires_at from signals"
                     " where strategy = 'dca' and symbol = 'ADA-BTC'")
    candle = ReplaySource(ohlcv_dir(), "bittrex", clock=SimClock(ENTRY_SCAN)).fetch_ohlcv(
        "ADA-BTC", "15m", datetime(2018, 1, 11, tzinfo=UTC)).iloc[-1]
    assert price == Decimal(str(candle["close"]))
    assert amount == Decimal("0.001")  # 0.002 BTC halved: regime unknown on bittrex, acting as CAUTION
    assert status == "new" and expires > datetime.now(UTC)

    scans = rows(migrated_db, "select strategy, symbol, decision, reason, signal_id, thresholds ->> 'tier'"
                              " from scans order by strategy, symbol")
    enabled = [n for n, s in load_strategies().items() if s.enabled]
    assert [(s[0], s[1]) for s in scans] == [(n, sym) for n in sorted(enabled) for sym in ("ADA-BTC", "ETH-BTC")]
    dca_ada = next(s for s in scans if s[:2] == ("dca", "ADA-BTC"))
    assert dca_ada[2] == "enter" and dca_ada[4] == signal_id and "x0.5 for CAUTION" in dca_ada[3]
    assert all(s[3] for s in scans)  # every decision says why

    [(progress,)] = rows(migrated_db, "select progress from heartbeats where component = 'controller'")
    assert progress["last_candle"] == ENTRY_SCAN.isoformat()
    assert progress["signals_emitted"] == report.emitted
    stored = dict(rows(migrated_db, "select timeframe, count(*) from candles where symbol = 'ADA-BTC' group by 1"))
    assert set(stored) == {"5m", "15m"}


def test_a_second_scan_of_the_same_candle_records_the_duplicate_instead_of_losing_it(store: PostgresStore,
                                                                                     migrated_db: str) -> None:
    scan, _ = scanner(store, ENTRY_SCAN, symbols=("ADA-BTC",))
    scan.scan()
    again = scan.scan()
    blocked = [p for p in again.planned if p.decision.strategy == "dca"]
    assert [p.outcome for p in blocked] == ["blocked"] and "duplicate" in blocked[0].reason
    assert rows(migrated_db, "select count(*) from signals")[0][0] == 1


def explode(frame: pd.DataFrame, params: object) -> pd.DataFrame:
    raise ValueError("bug in strategy code")


def test_a_hanging_or_failing_strategy_is_skipped_and_the_loop_goes_on(store: PostgresStore,
                                                                      migrated_db: str) -> None:
    config = load_strategies()
    config = config.model_copy(update={"swing": config.swing.model_copy(update={"enabled": True})})
    release = threading.Event()  # set when the test ends: a scan that waited for the hung strategy never ends

    def hang(frame: pd.DataFrame, params: object) -> pd.DataFrame:
        release.wait(120)
        raise AssertionError("unreachable in the test: the scan has moved on")

    # generous: the working strategy must finish within it on a loaded 2-core box
    scan, clock = scanner(store, ENTRY_SCAN, strategy_config=config, timeout_s=3.0,
                          strategy_fns={"dca": hang, "swing": explode, "channel": STRATEGIES["channel"]})

    try:
        first = scan.scan()
        clock.advance(300)
        second = scan.scan()
    finally:
        release.set()

    assert first.failures["dca"].startswith("timeout") and first.failures["swing"].startswith("error")
    assert {p.decision.strategy for p in first.planned + second.planned} == {"channel"}
    assert scan.counters["strategy_timeouts"] == 2 and scan.counters["strategy_errors"] == 2
    channel_scans = rows(migrated_db, "select count(*) from scans where strategy = 'channel'")[0][0]
    assert channel_scans == 4  # two scans, two symbols: the working strategy kept going
    [(progress,)] = rows(migrated_db, "select progress from heartbeats")
    assert progress["cycles"] == 2 and progress["strategy_failures"] == 4


def test_flags_are_read_every_cycle(store: PostgresStore, migrated_db: str) -> None:
    scan, clock = scanner(store, ENTRY_SCAN)
    with psycopg.connect(migrated_db) as conn:
        flags.set_flag(conn, SPECS, "signals.enabled", "false", "test")
    paused = scan.scan()
    assert paused.skipped and rows(migrated_db, "select count(*) from scans")[0][0] == 0

    with psycopg.connect(migrated_db) as conn:
        flags.set_flag(conn, SPECS, "signals.enabled", "true", "test")
        flags.set_flag(conn, SPECS, "strategies.channel.enabled", "false", "test")
    clock.advance(300)
    resumed = scan.scan()
    assert not resumed.skipped
    assert {r[0] for r in rows(migrated_db, "select distinct strategy from scans")} == {"dca"}


def test_on_bittrex_btc_pairs_with_default_settings_nothing_is_sized_in_dollars(store: PostgresStore) -> None:
    scan, _ = scanner(store, ENTRY_SCAN, config=ControllerConfig())
    report = scan.scan()
    dca_ada = next(p for p in report.planned if p.decision.strategy == "dca" and p.decision.symbol == "ADA-BTC")
    assert (dca_ada.outcome, dca_ada.reason) == ("skip", "no sizing for quote BTC")
    assert report.emitted == 0


def test_without_a_btc_market_on_the_exchange_the_regime_is_unknown_and_blocks_entries(
        store: PostgresStore, migrated_db: str) -> None:
    scan, _ = scanner(store, ENTRY_SCAN, config=ControllerConfig(sizing=BTC_SIZING))
    report = scan.scan()
    assert report.regime.regime.value == "UNKNOWN" and "BTC-USDT" in report.regime.reason
    dca_ada = next(p for p in report.planned if p.decision.strategy == "dca" and p.decision.symbol == "ADA-BTC")
    assert dca_ada.outcome == "blocked" and dca_ada.reason.startswith("regime unknown")
    assert report.emitted == 0 and rows(migrated_db, "select count(*) from signals")[0][0] == 0
    [(progress,)] = rows(migrated_db, "select progress from heartbeats where component = 'controller'")
    assert progress["regime"] == "UNKNOWN" and progress["regime_reason"].startswith("regime unknown")


def always_enter(frame: pd.DataFrame, params: object) -> pd.DataFrame:
    return pd.DataFrame({"entry": True, "confidence": 0.7, "reason": "test entry", "take_profit_pct": 2.0,
                         "stop_loss_pct": 3.0, "time_limit_s": 3600.0, "trailing_activation_pct": float("nan"),
                         "trailing_delta_pct": float("nan")}, index=frame.index)


def test_on_usd_margined_perpetuals_the_regime_comes_from_the_btc_perpetual_and_sizes_are_in_usdt(
        store: PostgresStore, migrated_db: str) -> None:
    at = datetime(2023, 1, 20, 12, 0, tzinfo=UTC)
    config = load_strategies()
    only_channel = config.model_copy(update={"dca": config.dca.model_copy(update={"enabled": False})})
    scan, _ = scanner(store, at, symbols=("BTC-USDT",), exchange="binanceusdm", config=ControllerConfig(),
                      strategy_config=only_channel, strategy_fns={**STRATEGIES, "channel": always_enter})
    report = scan.scan()
    assert report.regime.market == "BTC-USDT" and report.regime.regime.value != "UNKNOWN"
    [item] = report.planned
    multiplier = report.regime.size_multiplier
    if multiplier > 0:
        assert item.outcome == "enter" and item.signal.quote_amount == 50 * multiplier
        assert f"{50 * multiplier:g} USDT" in item.reason
    else:
        assert item.outcome == "blocked" and "PANIC" in item.reason
    assert rows(migrated_db, "select distinct exchange from scans") == [("binanceusdm",)]


@pytest.mark.parametrize(("at", "reason"), [
    (datetime(2018, 1, 15, 14, 0, tzinfo=UTC), "stale data (last candle 11:45)"),
    (datetime(2018, 1, 15, 15, 0, tzinfo=UTC), "gappy data ("),
])
def test_stale_or_gappy_candles_never_decide(store: PostgresStore, at: datetime, reason: str) -> None:
    # ADA-BTC's recorded 5m candles stop at 11:55 on 2018-01-15 and resume at 14:45 (a real Bittrex gap).
    config = load_strategies()
    scan, _ = scanner(store, at, symbols=("ADA-BTC",), strategy_fns={**STRATEGIES, "dca": always_enter},
                      strategy_config=config)
    report = scan.scan()
    [dca_ada] = [p for p in report.planned if p.decision.strategy == "dca"]
    assert dca_ada.outcome == "skip" and dca_ada.reason.startswith(reason)
    assert report.emitted == 0


def test_a_symbol_without_candles_at_the_scan_time_is_listed_as_no_data(store: PostgresStore,
                                                                        migrated_db: str) -> None:
    scan, _ = scanner(store, ENTRY_SCAN, symbols=("ADA-BTC", "DOGE-BTC"))
    report = scan.scan()
    doge = [p for p in report.planned if p.decision.symbol == "DOGE-BTC"]
    assert doge and all((p.outcome, p.reason) == ("skip", "no data") for p in doge)
    assert rows(migrated_db, "select count(*) from scans where symbol = 'DOGE-BTC' and reason = 'no data'")[0][0] \
        == len(doge)


def test_a_replay_emits_on_the_simulated_clock_as_live_would(store: PostgresStore, migrated_db: str) -> None:
    config = load_strategies()
    only_channel = config.model_copy(update={"dca": config.dca.model_copy(update={"enabled": False})})
    clock = SimClock(ENTRY_SCAN)
    scan = Scanner(config=ControllerConfig(regime=ACT_AS_CAUTION, sizing=BTC_SIZING),
                   strategy_config=only_channel, store=store,
                   source=ReplaySource(ohlcv_dir(), "bittrex", clock=clock), exchange="bittrex",
                   symbols=("ETH-BTC",), clock=clock.now, flag_defaults={n: s.default for n, s in SPECS.flags.items()},
                   strategy_fns={**STRATEGIES, "channel": always_enter}, simulated=True)
    reports = run_replay(scan, clock.advance, clock.now, ENTRY_SCAN + timedelta(hours=1), 300, threading.Event())

    # An entry every scan; a signal lives two 5m candles: every other scan emits, the rest are duplicates.
    assert len(reports) == 12 and sum(r.emitted for r in reports) == 6
    created = [r[0] for r in rows(migrated_db, "select created_at from signals order by created_at")]
    assert created[0] == ENTRY_SCAN + timedelta(minutes=5) and created[-1] < ENTRY_SCAN + timedelta(hours=2)
    statuses = rows(migrated_db, "select status, count(*) from signals group by 1 order by 1")
    assert statuses == [("expired", 5), ("new", 1)]

    [(progress, first, last, moved)] = rows(migrated_db, "select progress, first_seen, last_seen, last_progress_at"
                                                          " from heartbeats where component = 'controller'")
    health = assess_heartbeat(Heartbeat("controller", progress, first, last, moved), datetime.now(UTC),
                              HealthConfig(), Kind.CONTROLLER)
    assert not any("no new candle" in r for r in health.reasons), health.reasons


def test_health_says_regime_unknown_when_entries_are_blocked_for_it(store: PostgresStore,
                                                                   migrated_db: str) -> None:
    scan, _ = scanner(store, ENTRY_SCAN, config=ControllerConfig(sizing=BTC_SIZING))
    scan.simulated = True
    scan.scan()
    [(progress, first, last, moved)] = rows(migrated_db, "select progress, first_seen, last_seen, last_progress_at"
                                                          " from heartbeats where component = 'controller'")
    health = assess_heartbeat(Heartbeat("controller", progress, first, last, moved), last, HealthConfig(),
                              Kind.CONTROLLER)
    assert health.state.value == "degraded" and any(r.startswith("regime unknown") for r in health.reasons)


def unreachable(exchange_id: str) -> CcxtSource:
    """A real ccxt client whose API lives at a closed local port: every call fails to connect."""
    import ccxt

    exchange = getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 2000})
    exchange.urls["api"] = {key: "http://127.0.0.1:9" for key in exchange.urls["api"]}
    caller = ResilientCaller(exchange_id, retry=RetryPolicy(tries=1), failure_threshold=2,
                             sleep=lambda _s: None)
    return CcxtSource(exchange_id, caller=caller, exchange=exchange)


def test_with_no_network_a_scan_says_once_which_exchanges_failed_and_what_the_breaker_does_next(
        store: PostgresStore, caplog: pytest.LogCaptureFixture) -> None:
    source = FailoverSource(unreachable("binance"), unreachable("kraken"))
    scan = Scanner(config=ControllerConfig(), strategy_config=load_strategies(), store=store, source=source,
                   exchange="binance", symbols=("BTC-USDT", "ETH-USDT", "SOL-USDT"),
                   clock=lambda: datetime.now(UTC), flag_defaults={n: s.default for n, s in SPECS.flags.items()})
    with caplog.at_level("WARNING"):
        report = scan.scan()
    assert report.emitted == 0 and report.outage is not None
    assert report.outage.startswith("no candles for any pair at ")
    assert "tried binance (" in report.outage and "kraken (" in report.outage
    assert "breaker open, next try in" in report.outage
    assert [r.message for r in caplog.records].count("no candles for any pair") == 1
    assert not any(r.message == "no candles for symbol" for r in caplog.records)


def test_the_validation_profile_flag_runs_one_strategy_on_top_pairs_with_small_sizes(store: PostgresStore,
                                                                                    migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        flags.set_flag(conn, SPECS, "profile", "validation", "test")
    scan, _ = scanner(store, ENTRY_SCAN, strategy_fns={**STRATEGIES, "dca": always_enter})
    report = scan.scan()
    assert {(p.decision.strategy, p.decision.symbol) for p in report.planned} == {("dca", "ETH-BTC")}
    [item] = report.planned
    assert item.outcome == "enter" and item.signal.quote_amount == pytest.approx(0.002 * 0.4 * 0.5)

    timid = below_min_confidence(replace(item.decision, confidence=0.35), 0.4)
    assert not timid.entry and timid.reason == "confidence 0.35 below 0.4 (validation profile)"


def test_a_gappy_1m_file_never_decides_on_an_old_15m_candle(store: PostgresStore, tmp_path: Path) -> None:
    # The recorded LTC-BTC 1m file with the minutes 09:15-12:00 of 2018-01-25 cut out (an exchange outage).
    recorded = pd.read_csv(ohlcv_dir() / "bittrex_LTC-BTC_1m.csv")
    ts = pd.to_datetime(recorded["timestamp"], unit="ms", utc=True)
    hole = (ts >= datetime(2018, 1, 25, 9, 15, tzinfo=UTC)) & (ts < datetime(2018, 1, 25, 12, 0, tzinfo=UTC))
    recorded[~hole].to_csv(tmp_path / "bittrex_LTC-BTC_1m.csv", index=False)

    at = datetime(2018, 1, 25, 12, 0, tzinfo=UTC)
    scan, _ = scanner(store, at, symbols=("LTC-BTC",), folder=tmp_path,
                      strategy_fns={**STRATEGIES, "dca": always_enter, "channel": always_enter})
    report = scan.scan()
    by_strategy = {p.decision.strategy: p for p in report.planned}
    assert (by_strategy["dca"].outcome, by_strategy["dca"].reason) == ("skip", "stale data (last candle 09:15)")
    assert by_strategy["channel"].reason == "stale data (last candle 09:15)"
    assert report.emitted == 0

    later = scanner(store, datetime(2018, 1, 25, 13, 0, tzinfo=UTC), symbols=("LTC-BTC",), folder=tmp_path,
                    strategy_fns={**STRATEGIES, "dca": always_enter})[0].scan()
    [dca] = [p for p in later.planned if p.decision.strategy == "dca"]
    assert dca.outcome == "skip" and dca.reason.startswith("gappy data (")  # fresh again, but the window has holes
