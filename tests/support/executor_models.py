"""Signals and positions for the executor's unit tests, built without a clock or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from bridge.schemas import Signal
from executor.models import Position

D = Decimal


def signal(**overrides: Any) -> Signal:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "id": uuid4(), "created_at": now, "expires_at": now + timedelta(minutes=5), "strategy": "dca",
        "exchange": "binance", "symbol": "BTC-USDT", "side": "buy", "price": D(100), "quote_amount": D(50),
        "take_profit_pct": D(3), "stop_loss_pct": D(2), "time_limit_s": 60, "confidence": 0.7,
        "status": "executing"}
    return Signal(**{**fields, **overrides})


def position(opened_at: float | None = 1000.0, **overrides: Any) -> Position:
    return Position(signal(**overrides), opened_at=opened_at, entry_amount=D(2), entry_quote=D(200), peak=D(100))
