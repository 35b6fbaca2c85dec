"""One contract, two adapters: PostgresStore (psycopg) and SupabaseStore (supabase-py over HTTP).

SupabaseStore talks to the in-repo PostgREST stand-in (tests/support/postgrest_standin.py), which runs
its requests on the same real database with the service_role from the JWT and caps selects at 1000
rows like Supabase; see its docstring for what it is and is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
import psycopg
import pytest
from psycopg.types.json import Jsonb

from bridge.schemas import NewSignal
from controller.config import PROJECT_ROOT, load_model
from controller.data import flags
from controller.data.market_data import ohlcv_dir
from controller.data.storage import AlreadyEmitted, SignalRejected, Store
from controller.data.storage.postgres import PostgresStore
from controller.data.storage.supabase import SupabaseStore
from tests.support.postgrest_standin import PostgrestStandin, make_jwt

OHLCV = ohlcv_dir()  # $OHLCV_DIR, else the shared recordings beside the project
JWT_SECRET = "contract-test-secret-at-least-32-bytes-long"


def recorded(name: str = "bittrex_ETH-BTC_1m.csv", symbol: str = "ETH-BTC", rows: int = 2500) -> pd.DataFrame:
    raw = pd.read_csv(OHLCV / name).head(rows)
    return pd.DataFrame({
        "exchange": "bittrex", "symbol": symbol, "timeframe": "1m",
        "ts": pd.to_datetime(raw["timestamp"], unit="ms", utc=True),
        "open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["close"], "volume": raw["volume"],
    })


def signal(symbol: str = "ETH-BTC", strategy: str = "dca", **overrides: object) -> NewSignal:
    fields: dict[str, object] = {
        "strategy": strategy, "exchange": "bittrex", "symbol": symbol, "side": "buy", "price": 0.0891,
        "quote_amount": 0.01, "take_profit_pct": 2.0, "stop_loss_pct": 1.5, "time_limit_s": 3600,
        "expires_at": datetime.now(UTC) + timedelta(minutes=10), "confidence": 0.7,
        "features": {"rsi": 28.5}, "params_hash": "abc123",
    }
    return NewSignal(**{**fields, **overrides})


@pytest.fixture(params=["postgres", "supabase"])
def store(request: pytest.FixtureRequest, migrated_db: str) -> Iterator[Store]:
    if request.param == "postgres":
        adapter: Store = PostgresStore(migrated_db)
        yield adapter
        adapter.close()
        return
    with PostgrestStandin(migrated_db, JWT_SECRET) as standin:
        adapter = SupabaseStore.connect(standin.base_url, make_jwt(JWT_SECRET, "service_role"))
        yield adapter
        adapter.close()


def test_candles_round_trip_exactly(store: Store) -> None:
    candles = recorded()
    assert store.write_candles(candles) == len(candles)

    end = candles["ts"].max() + timedelta(minutes=1)
    back = store.read_candles("bittrex", "ETH-BTC", "1m", candles["ts"].min(), end)

    assert len(back) == len(candles)  # more than one page of 1000 for the Supabase adapter
    pd.testing.assert_frame_equal(back.reset_index(drop=True), candles.reset_index(drop=True),
                                  check_dtype=False, check_exact=True)


def test_writing_candles_again_upserts_instead_of_duplicating(store: Store, migrated_db: str) -> None:
    candles = recorded(rows=1200)
    store.write_candles(candles)
    corrected = candles.assign(close=candles["close"] * 2)
    store.write_candles(corrected)

    with psycopg.connect(migrated_db) as conn:
        count, total_close = conn.execute("select count(*), sum(close) from candles").fetchone()
    assert count == len(candles)
    assert total_close == pytest.approx(corrected["close"].sum())


def test_read_candles_is_half_open_and_last_candle_time(store: Store) -> None:
    candles = recorded(rows=100)
    store.write_candles(candles)
    start, end = candles["ts"].iloc[10], candles["ts"].iloc[20]

    window = store.read_candles("bittrex", "ETH-BTC", "1m", start, end)

    assert list(window["ts"]) == list(candles["ts"].iloc[10:20])
    assert store.last_candle_time("bittrex", "ETH-BTC", "1m") == candles["ts"].iloc[-1]
    assert store.last_candle_time("bittrex", "LTC-BTC", "1m") is None


def test_candles_spanning_months_get_their_partitions(store: Store, migrated_db: str) -> None:
    candles = recorded(rows=3).assign(ts=pd.to_datetime(["2019-01-31 23:59", "2019-02-01 00:00", "2019-03-15 12:00"],
                                                        utc=True))
    store.write_candles(candles)
    with psycopg.connect(migrated_db) as conn:
        partitions = [r[0] for r in conn.execute(
            "select relname from pg_class where relname like 'candles_2019_%' and relkind = 'r' order by 1")]
    assert partitions == ["candles_2019_01", "candles_2019_02", "candles_2019_03"]


def test_emit_signal_returns_its_id_and_stores_every_field(store: Store, migrated_db: str) -> None:
    signal_id = store.emit_signal(signal(trailing_activation_pct=1.0, trailing_delta_pct=0.3, ml_confidence=0.81,
                                         model_version="m1"))
    with psycopg.connect(migrated_db) as conn:
        row = conn.execute("select status, price, take_profit_pct, trailing_delta_pct, ml_confidence, model_version,"
                           " features from signals where id = %s", (signal_id,)).fetchone()
    assert row == ("new", Decimal("0.0891"), 2, Decimal("0.3"), 0.81, "m1", {"rsi": 28.5})


def test_a_duplicate_or_expired_signal_is_rejected_with_the_reason(store: Store) -> None:
    store.emit_signal(signal())
    with pytest.raises(SignalRejected, match="duplicate"):
        store.emit_signal(signal())
    with pytest.raises(SignalRejected, match="expires_at"):
        store.emit_signal(signal(symbol="LTC-BTC", expires_at=datetime.now(UTC) - timedelta(seconds=1)))


def test_a_decision_candle_is_queued_once_even_after_its_signal_closed(store: Store, migrated_db: str) -> None:
    candle = datetime(2026, 1, 5, 12, 5, tzinfo=UTC)
    first = store.emit_signal(signal(timeframe_s=300, candle_ts=candle))
    with psycopg.connect(migrated_db) as conn:  # the position ran and closed: the one-open rule no longer holds it
        conn.execute("update signals set status = 'closed', finished_at = now() where id = %s", (first,))
    with pytest.raises(AlreadyEmitted, match="candle closing 2026-01-05 12:05"):
        store.emit_signal(signal(timeframe_s=300, candle_ts=candle, quote_amount=0.02))
    store.emit_signal(signal(timeframe_s=300, candle_ts=candle + timedelta(minutes=5)))  # the next candle is new
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("select candle_ts, quote_amount from signals order by candle_ts").fetchall()
    assert rows == [(candle, Decimal("0.01")), (candle + timedelta(minutes=5), Decimal("0.01"))]


def test_open_signals_lists_every_open_signal_past_one_page(store: Store, migrated_db: str) -> None:
    # Seeded in one transaction through the queue's own `emit_signal` (emitting through each adapter is tested
    # above; 1050 requests one by one took over a minute here): the listing, paged at 1000 rows by PostgREST,
    # is what is under test.
    payloads = [(Jsonb(signal(symbol=f"S{i:04d}-BTC").to_payload()),) for i in range(1050)]
    with psycopg.connect(migrated_db) as conn:
        conn.cursor().executemany("select emit_signal(%s)", payloads)
        ids = {str(row[0]) for row in conn.execute("select id from signals where status = 'new'")}
    assert len(ids) == 1050
    assert {str(row["id"]) for row in store.open_signals()} == ids


def test_scans_are_written_in_one_batch(store: Store, migrated_db: str) -> None:
    now = datetime.now(UTC)
    scans = [{"candle_ts": now, "strategy": "dca", "exchange": "bittrex", "symbol": f"S{i}-BTC", "timeframe": "1m",
              "decision": "skip", "reason": "rsi above band", "features": {"rsi": 55 + i},
              "thresholds": {"rsi_max": 35}} for i in range(1500)]
    assert store.write_scans(scans) == 1500
    with psycopg.connect(migrated_db) as conn:
        count, reasons = conn.execute("select count(*), count(distinct reason) from scans").fetchone()
        sample = conn.execute("select features, thresholds from scans where symbol = 'S7-BTC'").fetchone()
    assert (count, reasons) == (1500, 1)
    assert sample == ({"rsi": 62}, {"rsi_max": 35})


def test_parameter_sets_are_versioned_once_each(store: Store) -> None:
    first = store.register_params("dca", {"drop_pct": 3.5, "rsi_max": 35})
    again = store.register_params("dca", {"rsi_max": 35, "drop_pct": 3.5})  # same set, other key order
    second = store.register_params("dca", {"drop_pct": 4.0, "rsi_max": 35})
    other = store.register_params("swing", {"drop_pct": 3.5, "rsi_max": 35})
    assert first == again
    assert first[0] == 1 and second[0] == 2 and other[0] == 1
    assert first[1] != second[1]


def test_heartbeat_records_progress(store: Store, migrated_db: str) -> None:
    store.heartbeat("controller", {"last_candle": "2018-01-30T04:50:00+00:00", "signals": 3})
    with psycopg.connect(migrated_db) as conn:
        progress = conn.execute("select progress from heartbeats where component = 'controller'").fetchone()[0]
    assert progress == {"last_candle": "2018-01-30T04:50:00+00:00", "signals": 3}


def test_flag_values_are_the_live_values(store: Store, migrated_db: str) -> None:
    specs = load_model(flags.FlagsFile, PROJECT_ROOT / "conf" / "flags.yml")
    with psycopg.connect(migrated_db) as conn:
        flags.sync(conn, specs, "test")
        flags.set_flag(conn, specs, "ml.enabled", "true", "test")
    values = store.flag_values()
    assert values["ml.enabled"] is True
    assert values["phase"] == 1


def test_closed_trades_since_a_time(store: Store, migrated_db: str) -> None:
    signal_ids = [store.emit_signal(signal(symbol=s)) for s in ("ETH-BTC", "LTC-BTC")]
    closed = [datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 21, 10, tzinfo=UTC)]
    with psycopg.connect(migrated_db) as conn:
        for signal_id, symbol, at, reason in zip(signal_ids, ("ETH-BTC", "LTC-BTC"), closed,
                                                 ("stop_loss", "take_profit"), strict=True):
            conn.execute(
                "insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, pnl_quote,"
                " pnl_pct, exit_reason, opened_at, closed_at) values (%s, 'bittrex', %s, 'buy', 1, 1, 1, 0, 0, %s,"
                " %s, %s)", (signal_id, symbol, reason, at - timedelta(hours=1), at))

    trades = store.closed_trades(datetime(2026, 11, 21, tzinfo=UTC))

    assert [(t["symbol"], t["strategy"], t["exit_reason"], t["closed_at"]) for t in trades] == [
        ("LTC-BTC", "dca", "take_profit", closed[1])]
