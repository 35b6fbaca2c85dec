"""A position's prices and amounts from its fills, its open orders, and the queue values' conversions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hummingbot.core.data_type.common import TradeType

from executor.models import Position, TrackedOrder, dec, iso, timestamp
from tests.support.executor_models import signal

D = Decimal


def test_position_prices_and_amounts() -> None:
    empty = Position(signal())
    assert empty.entry_price == 0 and empty.open_amount == 0
    held = Position(signal(), entry_amount=D(2), entry_quote=D(201), entry_fee_base=D("0.002"), exit_amount=D("0.5"))
    assert held.entry_price == D("100.5")
    assert held.open_amount == D("1.498")
    entry = TrackedOrder("e", "entry", TradeType.BUY, D(2), None, 0.0, done=True)
    exit_open = TrackedOrder("x1", "exit", TradeType.SELL, D(1), D(101), 1.0)
    exit_done = TrackedOrder("x2", "exit", TradeType.SELL, D(1), D(101), 2.0, done=True)
    held.orders = {o.order_id: o for o in (entry, exit_open, exit_done)}
    assert held.open_orders() == [exit_open]
    assert held.open_orders("exit") == [exit_open] and held.open_orders("entry") == []



def test_conversions_of_the_queue_values() -> None:
    assert dec(D("1.10")) == D("1.10") and str(dec(D("1.10"))) == "1.10"
    assert dec(0.1) == D("0.1") and dec("2") == D(2)  # floats through their text, not their binary value
    moment = datetime(2026, 3, 4, 5, 6, 7, 250000, tzinfo=UTC)
    assert timestamp(None) is None
    assert timestamp(moment) == moment.timestamp()
    assert timestamp("2026-03-04T05:06:07.25+00:00") == moment.timestamp()
    assert iso(moment.timestamp()) == "2026-03-04T05:06:07.250000+00:00"
    assert iso(0.0) == "1970-01-01T00:00:00.000000+00:00"
    assert iso(0.1234569) == "1970-01-01T00:00:00.123456+00:00"  # cut to the microsecond, not rounded up
