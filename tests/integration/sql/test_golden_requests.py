"""Golden requests: exactly what our HTTP clients send to PostgREST, pinned.

If supabase-py or our queue client changes what goes on the wire (a header, a query parameter, the body
shape), these fail before a real Supabase does. Recorded by the in-repo PostgREST stand-in; the requests
are the clients', the stand-in only records them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pandas as pd
import pytest

from bridge.queue_client import PostgrestQueue
from bridge.schemas import NewSignal, OrderEvent
from controller.data.storage.supabase import SupabaseStore
from tests.support.postgrest_standin import PostgrestStandin, RecordedRequest, make_jwt

SECRET = "golden-requests-secret-at-least-32-bytes"
EXPIRES = datetime(2099, 1, 1, tzinfo=UTC)


@pytest.fixture
def standin(migrated_db: str) -> Iterator[PostgrestStandin]:
    with PostgrestStandin(migrated_db, SECRET) as server:
        yield server


def last(standin: PostgrestStandin, path_suffix: str) -> RecordedRequest:
    return [r for r in standin.requests_seen if r.path.endswith(path_suffix)][-1]


def test_queue_client_requests(standin: PostgrestStandin) -> None:
    token = make_jwt(SECRET, "executor")
    store = SupabaseStore.connect(standin.base_url, make_jwt(SECRET, "service_role"))
    signal_id = store.emit_signal(NewSignal(strategy="dca", exchange="binance", symbol="BTC-USDT", side="buy",
                                            price=100, quote_amount=20, take_profit_pct=2, expires_at=EXPIRES,
                                            confidence=0.5))
    queue = PostgrestQueue(standin.base_url, "the-anon-key", token=token)

    queue.claim("bot-a", 5, 30, {"binance": ["BTC-USDT"], "kraken": None})
    queue.ack(signal_id, "bot-a", "executing")
    queue.report(OrderEvent(type="order_created", signal_id=signal_id, ts=datetime(2026, 11, 21, 12, tzinfo=UTC),
                            client_order_id="buy-1", exchange="binance", symbol="BTC-USDT", side="buy",
                            purpose="entry", order_type="market", amount=Decimal("0.2")))
    queue.heartbeat("hummingbot:bot-a", {"claimed": 1})
    queue.claim_wait("bot-a", 0, 30, {"binance": None}, 0.25)  # nothing left to claim: back after its wait

    headers = {"apikey": "the-anon-key", "authorization": f"Bearer {token}", "content-type": "application/json",
               "accept": "application/json"}
    assert last(standin, "/rpc/claim_signals") == RecordedRequest(
        "POST", "/rpc/claim_signals", [], headers,
        {"consumer": "bot-a", "max_count": 5, "lease_seconds": 30,
         "markets": [{"exchange": "binance", "symbols": ["BTC-USDT"]}, {"exchange": "kraken"}]})
    assert last(standin, "/rpc/ack_signal") == RecordedRequest(
        "POST", "/rpc/ack_signal", [], headers,
        {"signal_id": str(signal_id), "consumer": "bot-a", "status": "executing", "reason": None})
    assert last(standin, "/rpc/report_order_event") == RecordedRequest(
        "POST", "/rpc/report_order_event", [], headers,
        {"event": {"type": "order_created", "signal_id": str(signal_id), "ts": "2026-11-21T12:00:00+00:00",
                   "client_order_id": "buy-1", "exchange": "binance", "symbol": "BTC-USDT", "side": "buy",
                   "purpose": "entry", "order_type": "market", "amount": 0.2}})
    assert last(standin, "/rpc/heartbeat") == RecordedRequest(
        "POST", "/rpc/heartbeat", [], headers, {"component": "hummingbot:bot-a", "progress": {"claimed": 1}})
    assert last(standin, "/rpc/claim_signals_wait") == RecordedRequest(
        "POST", "/rpc/claim_signals_wait", [], headers,
        {"consumer": "bot-a", "max_count": 0, "lease_seconds": 30, "markets": [{"exchange": "binance"}],
         "wait_ms": 250})


def supabase_headers(key: str, **extra: str) -> dict[str, str]:
    return {"apikey": key, "authorization": f"Bearer {key}", "accept-profile": "public",
            "content-profile": "public", "accept": "*/*", **extra}


def test_supabase_store_requests(standin: PostgrestStandin) -> None:
    key = make_jwt(SECRET, "service_role")
    store = SupabaseStore.connect(standin.base_url, key)
    signal = NewSignal(strategy="dca", exchange="binance", symbol="ETH-USDT", side="buy", price=2500.5,
                       quote_amount=20, take_profit_pct=2, expires_at=EXPIRES, confidence=0.5)
    signal_id = store.emit_signal(signal)
    candles = pd.DataFrame({"exchange": ["binance"], "symbol": ["ETH-USDT"], "timeframe": ["1m"],
                            "ts": [pd.Timestamp("2026-11-21T12:00:00Z")], "open": [1.0], "high": [2.0],
                            "low": [0.5], "close": [1.5], "volume": [10.0]})
    store.write_candles(candles)
    store.read_candles("binance", "ETH-USDT", "1m", datetime(2026, 11, 21, tzinfo=UTC),
                       datetime(2026, 11, 22, tzinfo=UTC))
    store.open_signals()

    emit = last(standin, "/rpc/emit_signal")
    assert (emit.method, emit.path, emit.query) == ("POST", "/rest/v1/rpc/emit_signal", [])
    assert emit.headers == supabase_headers(key, **{"content-type": "application/json"})
    assert emit.body == {"signal": {"strategy": "dca", "exchange": "binance", "symbol": "ETH-USDT", "side": "buy",
                                    "price": 2500.5, "quote_amount": 20.0, "take_profit_pct": 2.0,
                                    "expires_at": "2099-01-01T00:00:00+00:00", "confidence": 0.5, "features": {}}}
    assert isinstance(signal_id, UUID)

    upsert = [r for r in standin.requests_seen if r.method == "POST" and r.path == "/rest/v1/candles"][-1]
    query = dict(upsert.query)
    assert query["on_conflict"] == "exchange,symbol,timeframe,ts"
    # supabase-py builds `columns` from a set: its order changes between runs, its content does not
    assert sorted(query["columns"].replace('"', "").split(",")) == sorted(
        ["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"])
    assert upsert.headers["prefer"] == "return=minimal,resolution=merge-duplicates"
    assert upsert.body == [{"exchange": "binance", "symbol": "ETH-USDT", "timeframe": "1m",
                            "ts": "2026-11-21T12:00:00+00:00", "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5,
                            "volume": 10.0}]

    read = [r for r in standin.requests_seen if r.method == "GET" and r.path == "/rest/v1/candles"][-1]
    assert read.query == [("select", "exchange,symbol,timeframe,ts,open,high,low,close,volume"),
                          ("exchange", "eq.binance"), ("symbol", "eq.ETH-USDT"), ("timeframe", "eq.1m"),
                          ("ts", "gte.2026-11-21T00:00:00+00:00"), ("ts", "lt.2026-11-22T00:00:00+00:00"),
                          ("order", "ts.asc"), ("offset", "0"), ("limit", "1000")]

    signals = last(standin, "/rest/v1/signals")
    assert signals.query == [("select", "*"), ("status", "in.(new,claimed,executing)"),
                             ("order", "created_at.asc,id.asc"), ("offset", "0"), ("limit", "1000")]
