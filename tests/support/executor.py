"""Helpers of the executor tests: a signal emitted into the queue, a position opened in the harness, what a run
left (database rows, the paper wallet), and a paper exchange that answers order-status polls."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from hummingbot.connector.client_order_tracker import ClientOrderTracker
from hummingbot.core.data_type.common import OrderType, TradeType
from hummingbot.core.data_type.in_flight_order import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from hummingbot.core.data_type.trade_fee import TradeFeeBase
from hummingbot.core.utils.async_utils import safe_ensure_future

from bridge.resilience import RetryPolicy
from bridge.schemas import NewSignal
from controller.data.storage.postgres import PostgresStore
from offline.harness import Harness, PaperExchange

FEE = Decimal("0.001")  # Binance's 0.1 %, the fee schema the fee-charging tests run with


def rows(url: str, query: str, *params: Any) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def wallet(harness: Harness) -> tuple[Decimal, Decimal]:
    return (Decimal(str(harness.exchange.get_balance("USDT"))), Decimal(str(harness.exchange.get_balance("BTC"))))


NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=2)


def emit(store: PostgresStore, symbol: str = "BTC-USDT", price: float = 100.0, **overrides: Any) -> UUID:
    fields: dict[str, Any] = {
        "strategy": "dca", "exchange": "binance", "symbol": symbol, "side": "buy", "price": price,
        "quote_amount": 50.0, "take_profit_pct": 3.0, "stop_loss_pct": 2.0, "time_limit_s": 3600,
        "expires_at": datetime.now(UTC) + timedelta(minutes=10), "confidence": 0.7}
    return store.emit_signal(NewSignal(**{**fields, **overrides}))


def signal_row(url: str, signal_id: UUID) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("select * from signals where id = %s", (signal_id,)).fetchone()


def trade_row(url: str, signal_id: UUID) -> dict[str, Any] | None:
    with psycopg.connect(url) as conn:
        cur = conn.cursor(row_factory=psycopg.rows.dict_row)
        return cur.execute("select * from trades where signal_id = %s", (signal_id,)).fetchone()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def open_position(harness: Harness, url: str, signal_id: UUID) -> None:
    """Tick until the signal is executing and its entry filled."""
    await harness.until(lambda: signal_id in harness.strategy.positions
                        and harness.strategy.positions[signal_id].entry_amount > 0)
    await harness.drained()
    assert signal_row(url, signal_id)["status"] == "executing"


class StatusExchange(PaperExchange):
    """A paper exchange that can be asked for an order's status, as every ExchangePyBase connector can: orders
    handed to `start_tracking_order` are followed by Hummingbot's real ClientOrderTracker, and `answer` is the
    exchange's reply to the status poll (a fill and its final state, or "no such order")."""

    def __init__(self) -> None:
        super().__init__()
        self._order_tracker = ClientOrderTracker(self, lost_order_count_limit=1)
        self.asked: list[str] = []

    @property
    def in_flight_orders(self) -> dict[str, InFlightOrder]:
        return self._order_tracker.active_orders

    def start_tracking_order(self, order_id: str, exchange_order_id: str | None, trading_pair: str,
                             trade_type: TradeType, price: Decimal, amount: Decimal, order_type: OrderType,
                             **kwargs: Any) -> None:
        self.asked.append(order_id)
        self._order_tracker.start_tracking_order(InFlightOrder(
            client_order_id=order_id, exchange_order_id=exchange_order_id, trading_pair=trading_pair,
            order_type=order_type, trade_type=trade_type, price=price, amount=amount,
            creation_timestamp=self.current_timestamp, initial_state=OrderState.OPEN))

    async def _request_order_status(self, tracked_order: InFlightOrder) -> OrderUpdate:
        raise NotImplementedError("the test answers through `answer`")

    def answer(self, order_id: str, fill: tuple[Decimal, Decimal] | None) -> None:
        order = self._order_tracker.fetch_order(order_id)
        if fill is None:
            safe_ensure_future(self._order_tracker.process_order_not_found(order_id))
            return
        price, amount = fill
        base, quote = order.trading_pair.split("-")
        fee = TradeFeeBase.new_spot_fee(self.trade_fee_schema(), order.trade_type, percent=Decimal("0.001"),
                                        percent_token=base if order.trade_type == TradeType.BUY else quote)
        self._order_tracker.process_trade_update(TradeUpdate(
            trade_id="t-1", client_order_id=order_id, exchange_order_id="x-1", trading_pair=order.trading_pair,
            fill_timestamp=self.current_timestamp, fill_price=price, fill_base_amount=amount,
            fill_quote_amount=price * amount, fee=fee))
        self._order_tracker.process_order_update(OrderUpdate(
            trading_pair=order.trading_pair, update_timestamp=self.current_timestamp, new_state=OrderState.FILLED,
            client_order_id=order_id, exchange_order_id="x-1"))
