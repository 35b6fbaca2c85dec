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


def test_fills_add_to_the_entry_or_the_exit_and_the_position_opens_at_its_first_fill() -> None:
    held = Position(signal())
    entry = TrackedOrder("e", "entry", TradeType.BUY, D(2), None, 0.0)
    held.add_fill(entry, D(100), D("1.5"), D("0.0015"), 5.0)
    held.add_fill(entry, D(102), D("0.5"), D("0.0005"), 7.0)
    assert (entry.filled, entry.fills) == (D(2), 2)
    assert (held.entry_amount, held.entry_quote, held.entry_fee_base) == (D(2), D(201), D("0.002"))
    assert held.opened_at == 5.0  # the first fill's time, not the last
    exit_order = TrackedOrder("x", "exit", TradeType.SELL, D("1.998"), None, 8.0)
    held.add_fill(exit_order, D(103), D("0.5"), D(0), 9.0)
    held.add_fill(exit_order, D(104), D("0.5"), D(0), 9.5)
    assert (exit_order.filled, exit_order.fills) == (D(1), 2)
    assert (held.exit_amount, held.exit_quote) == (D(1), D("103.5"))
    assert (held.entry_amount, held.entry_quote, held.entry_fee_base, held.opened_at) == (
        D(2), D(201), D("0.002"), 5.0)  # an exit fill leaves the entry as it was


def test_fees_are_summed_in_quote_the_base_coins_part_apart_and_unpriced_ones_in_their_own_asset() -> None:
    held = Position(signal())
    held.add_fee("BTC", D("0.002"), D("0.2"), base="BTC")
    held.add_fee("BTC", D("0.001"), D("0.1"), base="BTC")
    held.add_fee("USDT", D("0.4"), D("0.4"), base="BTC")
    held.add_fee("XYZ", D(1), None, base="BTC")
    held.add_fee("XYZ", D(2), None, base="BTC")
    assert held.fees_quote == D("0.7") and held.base_fee_quote == D("0.3")
    assert held.unpriced_fees == {"XYZ": D(3)}


def test_a_close_request_overrides_the_barriers_and_gives_a_stuck_position_a_fresh_start() -> None:
    held = Position(signal(), stuck="exit failed 5 times", failures=5, retry_at=99.0)
    held.request_close("alice", "strategy_exit")
    assert (held.manual_close, held.close_reason) == ("alice", "strategy_exit")
    assert (held.stuck, held.failures, held.retry_at) == (None, 0, 0.0)


def test_a_position_is_busy_while_an_order_works_or_a_cancel_is_unconfirmed_but_not_for_a_resting_grid() -> None:
    held = Position(signal())
    assert not held.busy()
    grid = TrackedOrder("g1", "entry", TradeType.BUY, D(1), D(98), 0.0, level=1)
    held.orders = {"g1": grid}
    assert not held.busy()  # a grid level alone leaves the position to its barriers
    grid.cancel_sent_at = 5.0
    assert held.busy()
    grid.done = True
    assert not held.busy()  # settled orders do not count
    held.orders["x"] = TrackedOrder("x", "exit", TradeType.SELL, D(1), None, 6.0)
    assert held.busy()


def test_the_result_is_the_wallets_change_net_of_quote_fees_with_dust_valued_at_the_exit_price() -> None:
    held = Position(signal(), entry_amount=D(2), entry_quote=D(200), entry_fee_base=D("0.002"),
                    exit_amount=D("1.99"), exit_quote=D("200.99"), fees_quote=D("0.401"), base_fee_quote=D("0.2"))
    dust, exit_price, pnl, pnl_pct = held.result(last_bid=D(50))
    assert dust == D("0.008") and exit_price == D(101)  # the exit's own price, not the last bid
    # 200.99 - 200 - (0.401 - 0.2 already out of the coin) + 0.008 x 101
    assert pnl == D("1.597") and pnl_pct == D("0.7985")


def test_the_result_of_an_exit_that_sold_nothing_or_an_entry_that_cost_nothing() -> None:
    unsold = Position(signal(), entry_amount=D(1), entry_quote=D(100))
    assert unsold.result(last_bid=D(99)) == (D(1), D(99), D(-1), D(-1))  # the dust valued at the last bid
    oversold = Position(signal(), entry_amount=D("0.4"), exit_amount=D("0.5"), exit_quote=D(50))
    dust, exit_price, pnl, pnl_pct = oversold.result(last_bid=D(99))
    assert dust == 0 and exit_price == D(100) and pnl == D(50) and pnl_pct == 0  # no dust below zero, no 0-division
