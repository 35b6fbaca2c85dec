"""Opt-in tier: the store and the queue client against a real Supabase project or PostgREST server.

Skipped unless configured (the migrations must have been applied there):
- Supabase: SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY, and SUPABASE_JWT_SECRET (to mint an executor token)
  or EXECUTOR_JWT.
- PostgREST: PGRST_URL, PGRST_JWT_SECRET (service_role and executor tokens are minted with it).
Each run uses its own exchange name, so it never touches other rows.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import jwt
import pytest
import requests

from bridge.queue_client import PostgrestQueue
from bridge.schemas import NewSignal, OrderEvent
from controller.data.storage.supabase import SupabaseStore

pytestmark = pytest.mark.supabase


def _token(secret: str | None, role: str) -> str | None:
    return jwt.encode({"role": role}, secret, algorithm="HS256") if secret else None


@dataclass
class Server:
    emit: Callable[[NewSignal], UUID]
    open_signal_ids: Callable[[], set[str]]
    queue: PostgrestQueue


def server() -> Server:
    if url := os.environ.get("SUPABASE_URL"):
        key = os.environ.get("SUPABASE_SERVICE_ROLE_KEY")
        executor = os.environ.get("EXECUTOR_JWT") or _token(os.environ.get("SUPABASE_JWT_SECRET"), "executor")
        if not key or not executor:
            pytest.skip("SUPABASE_URL is set but SUPABASE_SERVICE_ROLE_KEY or an executor token is missing")
        store = SupabaseStore.connect(url, key)
        return Server(store.emit_signal, lambda: {str(s["id"]) for s in store.open_signals()},
                      PostgrestQueue.for_supabase(url, key, token=executor))
    if url := os.environ.get("PGRST_URL"):
        secret = os.environ.get("PGRST_JWT_SECRET")
        if not secret:
            pytest.skip("PGRST_URL is set but PGRST_JWT_SECRET is missing")
        service = _token(secret, "service_role")
        headers = {"Authorization": f"Bearer {service}", "Content-Type": "application/json"}

        def emit(signal: NewSignal) -> UUID:
            response = requests.post(f"{url}/rpc/emit_signal", json={"signal": signal.to_payload()}, headers=headers,
                                     timeout=10)
            response.raise_for_status()
            return UUID(response.json())

        def open_ids() -> set[str]:
            response = requests.get(f"{url}/signals?select=id&status=in.(new,claimed,executing)", headers=headers,
                                    timeout=10)
            response.raise_for_status()
            return {row["id"] for row in response.json()}

        return Server(emit, open_ids, PostgrestQueue(url, service, token=_token(secret, "executor")))
    pytest.skip("set SUPABASE_URL or PGRST_URL to run the real-server tier")


def test_signal_round_trip_on_the_real_server() -> None:
    real = server()
    exchange = f"optin-{uuid.uuid4().hex[:8]}"
    signal_id = real.emit(NewSignal(
        strategy="optin", exchange=exchange, symbol="BTC-USDT", side="buy", price=100, quote_amount=10,
        take_profit_pct=1, expires_at=datetime.now(UTC) + timedelta(minutes=5), confidence=0.5))

    queue = real.queue
    claimed = queue.claim("optin-bot", 5, 30, {exchange: None})
    assert [s.id for s in claimed] == [signal_id]
    assert queue.ack(signal_id, "optin-bot", "executing") == "executing"
    event = OrderEvent(type="order_created", signal_id=signal_id, ts=datetime.now(UTC), client_order_id=exchange,
                       exchange=exchange, symbol="BTC-USDT", side="buy", purpose="entry", order_type="market",
                       amount=Decimal("0.1"))
    assert queue.report(event) == queue.report(event)
    queue.heartbeat(f"hummingbot:{exchange}", {"claimed": 1})
    assert queue.ack(signal_id, "optin-bot", "closed") == "closed"
    assert str(signal_id) not in real.open_signal_ids()


def test_the_long_poll_claim_on_the_real_server() -> None:
    """claim_signals_wait through the real PostgREST (its transaction, pool and the role's statement_timeout):
    a signal emitted while the claim waits comes back from that claim; with nothing to claim it is empty."""
    real = server()
    exchange = f"optin-{uuid.uuid4().hex[:8]}"
    markets = {exchange: None}
    assert real.queue.claim_wait("optin-bot", 5, 30, markets, 0.5) == []

    out: list = []
    waiting = threading.Thread(target=lambda: out.append(real.queue.claim_wait("optin-bot", 5, 30, markets, 20.0)))
    waiting.start()
    signal_id = real.emit(NewSignal(
        strategy="optin", exchange=exchange, symbol="BTC-USDT", side="buy", price=100, quote_amount=10,
        take_profit_pct=1, expires_at=datetime.now(UTC) + timedelta(minutes=5), confidence=0.5))
    waiting.join(40)

    assert not waiting.is_alive() and [s.id for s in out[0]] == [signal_id]
    assert real.queue.ack(signal_id, "optin-bot", "rejected", "opt-in test") == "rejected"
