"""The connector as the executor sees it: the book, trading rules, sizes, live orders, place and cancel."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any, Literal

from hummingbot.core.data_type.common import OrderType, PriceType, TradeType

from bridge.schemas import Signal
from executor.config import SignalExecutorConfig
from executor.models import NOISE, ZERO, Position, TrackedOrder, dec


class Market:
    """One connector, reached through the strategy (whose `buy`/`sell` register each order with Hummingbot's
    own tracking, so order events reach the strategy's handlers)."""

    def __init__(self, strategy: Any, config: SignalExecutorConfig, health: Counter[str]) -> None:
        self.strategy = strategy
        self.config = config
        self.health = health

    def connector(self) -> Any:
        return self.strategy.connectors[self.config.connector]

    def has_book(self, pair: str) -> bool:
        try:
            self.connector().get_order_book(pair)
        except (KeyError, ValueError):
            return False
        return True

    def book(self, pair: str) -> tuple[Decimal, Decimal, Decimal]:
        connector = self.connector()
        bid = Decimal(str(connector.get_price_by_type(pair, PriceType.BestBid)))
        ask = Decimal(str(connector.get_price_by_type(pair, PriceType.BestAsk)))
        return bid, ask, (bid + ask) / 2

    def entry_type(self) -> OrderType:
        return OrderType.MARKET if self.config.entry_order_type == "market" else OrderType.LIMIT

    def quote_scale(self, signal: Signal) -> Decimal:
        return self.config.quote_amount / signal.quote_amount if self.config.quote_amount else Decimal(1)

    def entry_amount(self, signal: Signal, price: Decimal) -> Decimal:
        quote = self.config.quote_amount or signal.quote_amount
        return self.connector().quantize_order_amount(signal.symbol, quote / price)

    def quantize_price(self, pair: str, price: Decimal) -> Decimal:
        return dec(self.connector().quantize_order_price(pair, price))

    def quantize_amount(self, pair: str, amount: Decimal) -> Decimal:
        return dec(self.connector().quantize_order_amount(pair, amount))

    def live_order_ids(self) -> set[str]:
        """Client ids of the orders the connector still works on. After a restart the strategy's own tracker is
        empty, so ask the connector (`in_flight_orders` on real connectors, resting limits on paper ones)."""
        connector = self.connector()
        live = {o.client_order_id for o in self.strategy.get_active_orders(self.config.connector)}
        try:
            live |= set(connector.in_flight_orders)
        except NotImplementedError:  # paper connectors
            live |= {o.client_order_id for o in getattr(connector, "limit_orders", [])}
        return live

    def reconcile_on_exchange(self, position: Position, order: TrackedOrder, now: float) -> bool:
        """Ask the exchange about an order the connector does not track (a restart lost its state, or a market
        order got no final event): hand it to the connector's order tracker, whose status polling
        (`_request_order_status` and the order's trades, on every ExchangePyBase connector) sends the events
        a live order gets: its fills, completion or cancel, or a failure once the exchange says it does not
        know it. True while that is under way (for market_order_timeout_s); False where the connector cannot
        ask (paper connectors) or the exchange never answered: the caller then treats the order as lost."""
        connector = self.connector()
        if not (callable(getattr(connector, "start_tracking_order", None))
                and callable(getattr(connector, "_request_order_status", None))):
            return False
        if order.reconciling_since is None:
            order.reconciling_since = now
            self.health["reconciling_with_exchange"] += 1
            connector.start_tracking_order(order_id=order.order_id, exchange_order_id=None,
                                           trading_pair=position.signal.symbol, trade_type=order.side,
                                           price=order.price if order.price is not None else Decimal("NaN"),
                                           amount=order.amount,
                                           order_type=OrderType.MARKET if order.price is None else OrderType.LIMIT)
            return True
        return now - order.reconciling_since < self.config.market_order_timeout_s

    def place(self, position: Position, purpose: Literal["entry", "exit"], side: TradeType, amount: Decimal,
              price: Decimal | None, now: float) -> str | None:
        """A market order (`price` None) or a limit order, tracked on the position; None when there is no amount."""
        if amount <= 0:
            return None
        order_type = OrderType.MARKET if price is None else OrderType.LIMIT
        place = self.strategy.buy if side == TradeType.BUY else self.strategy.sell
        order_id = place(self.config.connector, position.signal.symbol, amount, order_type,
                         price if price is not None else Decimal("NaN"))
        position.orders[order_id] = TrackedOrder(order_id, purpose, side, amount, price, now)
        return order_id

    def cancel(self, position: Position, order: TrackedOrder, now: float, replace: str | None) -> None:
        order.cancel_sent_at = now
        order.replace = replace
        # straight to the connector: its cancel is what a late or lost confirmation comes from
        self.connector().cancel(position.signal.symbol, order.order_id)

    def exit_price(self, position: Position) -> Decimal:
        """The average price a market sell of the whole position would get now: the bid side walked for its size
        (a thin top of book does not trigger a take profit the sell could not realise). A book thinner than the
        position is valued at its deepest bid; with nothing held, the best bid."""
        pair = position.signal.symbol
        bid = self.book(pair)[0]
        amount = max(position.open_amount, ZERO)
        if amount <= 0:
            return bid
        price = dec(self.connector().get_vwap_for_volume(pair, False, amount).result_price)
        if price.is_finite() and price > 0:
            return min(price, bid)
        bids = [dec(row.price) for row in self.connector().get_order_book(pair).bid_entries()]
        return min(bids, default=bid)

    def sellable(self, position: Position) -> Decimal:
        """What an exit may sell: the position's holding less what exits already ask, capped at the wallet."""
        pair = position.signal.symbol
        pending_exit = sum((o.amount - o.filled for o in position.open_orders("exit")), ZERO)
        available = dec(self.connector().get_available_balance(pair.split("-")[0]))
        amount = min(position.open_amount - pending_exit, available)
        return self.connector().quantize_order_amount(pair, max(amount, ZERO))

    def rule(self, pair: str) -> tuple[Decimal, Decimal]:
        """(minimum size in base, minimum notional in quote): the connector's trading rule, else the config's."""
        rules = getattr(self.connector(), "trading_rules", None)
        rule = rules.get(pair) if isinstance(rules, dict) else None
        if rule is None:
            return ZERO, self.config.min_notional_quote
        return dec(rule.min_order_size), dec(rule.min_notional_size)

    def below_minimum(self, pair: str, amount: Decimal, price: Decimal) -> str | None:
        """Why the exchange would refuse an order of `amount` at `price` for its size, or None."""
        min_size, min_notional = self.rule(pair)
        if amount <= 0:
            return "an amount that rounds to zero"
        if amount < min_size:
            return f"below the minimum order size {min_size}"
        if amount * price < min_notional:
            return f"worth {amount * price:.8g}, below the minimum notional {min_notional}"
        return None

    def is_flat(self, position: Position, bid: Decimal | None = None) -> bool:
        """Nothing left to sell: what remains (dust) is below what the exchange trades."""
        pair = position.signal.symbol
        bid = bid if bid is not None else self.book(pair)[0]
        remaining = self.connector().quantize_order_amount(pair, max(position.open_amount, ZERO))
        if remaining <= position.entry_amount * NOISE:
            return True  # the float rounding of a paper exchange's wallet, not a remainder anyone could sell
        return self.below_minimum(pair, remaining, bid) is not None
