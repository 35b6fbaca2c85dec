"""The scan loop on recorded candles and a real Postgres: decisions, signals, scans, heartbeats, failures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg
import pytest

from controller.config import PROJECT_ROOT, ControllerConfig, LoopConfig, load_model
from controller.data import flags
from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir
from controller.data.storage.postgres import PostgresStore
from controller.scan.pipeline import Scanner
from controller.scan.strategies import STRATEGIES
from controller.scan.strategy_params import StrategiesConfig, load_strategies

# On the recorded bittrex data, DCA (15m) enters ADA-BTC on the candle 00:00-00:15 of 2018-01-11.
ENTRY_SCAN = datetime(2018, 1, 11, 0, 15, tzinfo=UTC)
SPECS = load_model(flags.FlagsFile, PROJECT_ROOT / "conf" / "flags.yml")


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    with psycopg.connect(migrated_db) as conn:
        flags.sync(conn, SPECS, "test")
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


def scanner(store: PostgresStore, at: datetime, *, strategy_config: StrategiesConfig | None = None,
            strategy_fns: dict[str, Callable[..., pd.DataFrame]] | None = None, timeout_s: float = 5.0,
            symbols: tuple[str, ...] = ("ADA-BTC", "ETH-BTC")) -> tuple[Scanner, SimClock]:
    clock = SimClock(at)
    config = ControllerConfig(loop=LoopConfig(strategy_timeout_s=timeout_s))
    return Scanner(config=config, strategy_config=strategy_config or load_strategies(), store=store,
                   source=ReplaySource(ohlcv_dir(), "bittrex", clock=clock), exchange="bittrex", symbols=symbols,
                   clock=clock.now, flag_defaults={n: s.default for n, s in SPECS.flags.items()},
                   strategy_fns=strategy_fns), clock


def rows(url: str, query: str, *params: Any) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


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
    assert amount == 25  # $50 halved: no BTC-USDT candles in 2018 bittrex data, so the regime is CAUTION
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
