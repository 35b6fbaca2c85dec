"""A position's life: entry, DCA grid, barriers, maker take profit, exit, close, and restore after a restart.

One `Position` per executed signal; every order event is routed here by its client order id."""

from __future__ import annotations

import logging
from collections import Counter
from decimal import Decimal
from typing import Any
from uuid import UUID

from hummingbot.core.data_type.common import OrderType, TradeType
from hummingbot.core.data_type.trade_fee import TradeFeeBase

from bridge.schemas import OrderEvent, Signal
from executor.config import SignalExecutorConfig
from executor.market import Market
from executor.models import HUNDRED, ZERO, Position, TrackedOrder, dec, iso, timestamp
from executor.pricing import barrier_hit, fee_parts, grid_orders
from executor.reporting import Reporter

logger = logging.getLogger(__name__)


class Positions:
    def __init__(self, config: SignalExecutorConfig, market: Market, reporter: Reporter,
                 health: Counter[str]) -> None:
        self.config = config
        self.market = market
        self.reporter = reporter
        self.health = health
        self.open: dict[UUID, Position] = {}
        self.order_index: dict[str, UUID] = {}  # client order id -> signal id
        self.recently_closed: dict[UUID, Position] = {}  # for events that arrive after the close

    # --- entry and exit ---------------------------------------------------------------------------------

    def enter(self, signal: Signal, now: float) -> None:
        position = Position(signal)
        self.open[signal.id] = position
        self.reporter.ack(signal, "executing")
        self.reporter.fate(signal, "executing")
        bid, ask, _ = self.market.book(signal.symbol)
        self.place(position, "entry", TradeType.BUY, self.market.entry_amount(signal, ask),
                   None if self.config.entry_order_type == "market" else bid, now)
        self.reporter.worker.wake()

    def place(self, position: Position, purpose: Any, side: TradeType, amount: Decimal, price: Decimal | None,
              now: float) -> str | None:
        order_id = self.market.place(position, purpose, side, amount, price, now)
        if order_id:
            self.order_index[order_id] = position.signal.id
        return order_id

    def cancel(self, position: Position, order: TrackedOrder, now: float, replace: str | None) -> None:
        self.market.cancel(position, order, now, replace)

    def request_close(self, position: Position, who: str, reason: str, now: float) -> None:
        """Close at market: cancel what rests, then `manage` sells what the position holds."""
        position.request_close(who, reason)
        for order in position.open_orders():
            if order.cancel_sent_at is None:
                self.cancel(position, order, now, None)

    def manage(self, now: float) -> None:
        for position in list(self.open.values()):
            if position.closed or position.entry_amount <= 0 or position.stuck:
                continue
            bid = self.market.exit_price(position)  # what selling the position would get: the barriers' price
            position.peak = max(position.peak, bid)
            self._persist_peak(position, now)
            if not position.busy():
                # before the maker take profit: while grid levels rest, the take profit is taken at market
                self._place_grid(position, now)
            if self._maker_take_profit(position, bid, now) or position.busy():
                continue
            if self.market.is_flat(position, bid):
                # nothing left that the exchange would take (e.g. restored after its exit filled): done
                if self._cancel_grid(position, now):
                    continue
                position.exit_reason = position.exit_reason or "flat"
                self.close(position, now, traded=True)
            elif position.exit_reason is None and now >= position.retry_at:
                if reason := position.close_reason if position.manual_close else barrier_hit(position, bid, now):
                    position.exit_reason = reason
                    if not self._cancel_grid(position, now):
                        self._exit(position, bid, now)
            elif position.exit_reason is not None and not position.open_orders():
                self._exit(position, bid, now)  # the grid's cancels are confirmed: sell what the position holds

    def _place_grid(self, position: Position, now: float) -> None:
        """Once the entry has filled, rest the DCA grid's limit buys below it (once; none after an exit began).
        Their fills add to the entry, so the barriers follow the average entry price."""
        if position.grid_placed or position.exit_reason is not None or position.manual_close:
            return
        position.grid_placed = True
        pair = position.signal.symbol
        for level, price, quote in grid_orders(position.signal, position.entry_price,
                                               self.market.quote_scale(position.signal)):
            price = self.market.quantize_price(pair, price)
            amount = self.market.quantize_amount(pair, quote / price) if price > 0 else ZERO
            if problem := self.market.below_minimum(pair, amount, price):
                logger.warning(f"grid level {level} of {position.signal.id} not placed: {amount} at {price} is "
                               f"{problem}")
                continue
            if order_id := self.place(position, "entry", TradeType.BUY, amount, price, now):
                position.orders[order_id].level = level

    def _cancel_grid(self, position: Position, now: float) -> bool:
        """Cancel the grid levels still resting; True while any is open (the exit waits for the confirmations:
        a level that fills meanwhile is sold with the rest)."""
        levels = [o for o in position.open_orders() if o.level is not None]
        for order in levels:
            if order.cancel_sent_at is None:
                self.cancel(position, order, now, None)
        return bool(levels)

    def _exit(self, position: Position, bid: Decimal, now: float) -> None:
        """Sell what the position holds, capped at what the wallet has (fees, other bots, a lagging balance)."""
        amount = self.market.sellable(position)
        if problem := self.market.below_minimum(position.signal.symbol, amount, bid):
            base = position.signal.symbol.split("-")[0]
            self.exit_failed(position, f"cannot sell {position.open_amount} {base}: the wallet's {amount} is "
                                       f"{problem}", now)
            return
        self.place(position, "exit", TradeType.SELL, amount, None, now)

    def is_take_profit_order(self, order: TrackedOrder) -> bool:
        """A resting maker take profit: every other exit is a market order."""
        return self.config.take_profit_order_type == "limit" and order.purpose == "exit" and order.price is not None

    def _maker_take_profit(self, position: Position, bid: Decimal, now: float) -> bool:
        """take_profit_order_type limit: rest a limit sell at the take-profit price once the entry has filled,
        and while it rests watch the other exits; one that is due cancels it and, once the cancel is confirmed
        (`after_cancel`), sells the rest at market, so there is never a second sell while it may fill.
        True when this tick's exit handling is done here."""
        if self.config.take_profit_order_type != "limit" or position.manual_close:
            return False
        resting = [o for o in position.open_orders("exit") if self.is_take_profit_order(o)]
        if resting:
            order = resting[0]
            reason = barrier_hit(position, bid, now)
            if order.cancel_sent_at is None and reason not in (None, "take_profit"):
                position.exit_reason = reason
                self.health["take_profit_order_cancelled"] += 1
                self._cancel_grid(position, now)  # no grid buy after the exit: a level that fills meanwhile is sold
                self.cancel(position, order, now, "market")
            elif order.cancel_sent_at is None and not order.filled and order.price != self._take_profit_price(position):
                # a grid level filled: the average entry moved, so the take profit rests again at its new level
                # for the whole position (placed on a later tick, once this cancel is confirmed)
                self.health["take_profit_order_moved"] += 1
                self.cancel(position, order, now, None)
            return True
        # resting grid levels alone do not keep the take profit at market: it rests beside them, as a live bot's
        if position.busy() or position.exit_reason is not None or now < position.retry_at:
            return False
        if barrier_hit(position, bid, now) not in (None, "take_profit"):
            return False  # another exit is due now: at market, as without a maker take profit
        pair = position.signal.symbol
        price = self._take_profit_price(position)
        amount = self.market.sellable(position)
        if self.market.below_minimum(pair, amount, price) is not None:
            return False  # nothing the exchange would rest: the market path handles it (dust, or a failed exit)
        self.place(position, "exit", TradeType.SELL, amount, price, now)
        self.health["take_profit_orders"] += 1
        return True

    def _take_profit_price(self, position: Position) -> Decimal:
        return self.market.quantize_price(position.signal.symbol,
                                          position.entry_price * (1 + position.signal.take_profit_pct / HUNDRED))

    def exit_failed(self, position: Position, error: str, now: float) -> None:
        """Count a failed exit; back off, and after max_order_retries in a row give up and say so."""
        position.failures += 1
        position.exit_reason = None  # the barriers decide again on the next try
        position.retry_at = now + min(2 ** position.failures, 60)
        if position.failures < self.config.max_order_retries:
            return
        signal = position.signal
        position.stuck = f"exit failed {position.failures} times, last: {error}"
        self.health["stuck"] += 1
        logger.error(f"position {signal.id} ({signal.symbol}) is stuck and needs a person: {position.stuck}")
        self.reporter.fate(signal, f"stuck: {error}")
        self.reporter.report(OrderEvent(type="position_stuck", signal_id=signal.id, ts=iso(now),
                                        consumer=self.config.consumer, reason=position.stuck))

    def _persist_peak(self, position: Position, now: float) -> None:
        """Report a risen trailing peak (at most every peak_report_interval_s) so a restart keeps it armed."""
        signal = position.signal
        if signal.trailing_activation_pct is None or position.peak <= position.peak_reported:
            return
        if now - position.peak_reported_at < self.config.peak_report_interval_s:
            return
        position.peak_reported, position.peak_reported_at = position.peak, now
        self.reporter.report(OrderEvent(type="position_peak", signal_id=signal.id, ts=iso(now),
                                        consumer=self.config.consumer, peak=position.peak))

    # --- settling orders and closing ----------------------------------------------------------------------

    def finish_order(self, position: Position, order: TrackedOrder, ts: float) -> None:
        order.done = True
        if order.purpose == "exit" and order.filled > 0:
            position.failures = 0
        if order.purpose == "entry" and not position.open_orders("entry") and position.entry_amount <= 0:
            self.close(position, ts, traded=False)  # the entry never filled: nothing to manage
        elif order.purpose == "exit" and not position.open_orders("exit"):
            if position.exit_reason and self.market.is_flat(position):
                # a maker take profit can fill while grid levels rest: they are cancelled first, and `manage`
                # closes the position once the cancels are confirmed (a level that fills meanwhile is sold)
                if not self._cancel_grid(position, ts):
                    self.close(position, ts, traded=True)
            elif position.open_amount > 0:
                position.exit_reason = None  # an exit that did not complete: the barriers decide again

    def after_cancel(self, position: Position, order: TrackedOrder, ts: float) -> None:
        """The cancel is confirmed: place the replacement it was waiting for, then settle the order."""
        order.done = True
        if order.replace is not None and not position.closed:
            remaining = order.amount - order.filled
            if order.side == TradeType.SELL:
                remaining = self.market.sellable(position)
            price = None
            if order.replace == "reprice" and order.side == TradeType.BUY:
                price = self.market.book(position.signal.symbol)[0]
            new_id = self.place(position, order.purpose, order.side, remaining, price, ts)
            if new_id:
                position.orders[new_id].repriced = True
                self.health["replaced"] += 1
        self.finish_order(position, order, ts)

    def close(self, position: Position, ts: float, traded: bool) -> None:
        signal = position.signal
        position.closed = True
        del self.open[signal.id]
        self.recently_closed[signal.id] = position
        while len(self.recently_closed) > 100:
            self.recently_closed.pop(next(iter(self.recently_closed)))
        if traded:
            dust, exit_price, pnl, pnl_pct = position.result(
                self.market.book(signal.symbol)[0] if position.exit_amount <= 0 else ZERO)
            self.reporter.report(OrderEvent(
                type="position_closed", signal_id=signal.id, ts=iso(ts), consumer=self.config.consumer,
                exchange=signal.exchange, symbol=signal.symbol, side="buy", amount=position.entry_amount,
                entry_price=position.entry_price, exit_price=exit_price, fees_quote=position.fees_quote,
                pnl_quote=pnl, pnl_pct=pnl_pct, exit_reason=position.exit_reason, dust_amount=dust,
                opened_at=iso(position.opened_at or ts), closed_at=iso(ts)))
            self.reporter.closed_trades[position.exit_reason or "unknown"] += 1
            self.reporter.fate(signal, f"closed: {position.exit_reason} {pnl:+.4f}")
        else:
            self.reporter.fate(signal, "closed: entry not filled")
        self.reporter.finished(signal)

    # --- order events, routed by client order id --------------------------------------------------------

    def of_order(self, order_id: str, closed_too: bool = False) -> tuple[Position, TrackedOrder] | None:
        signal_id = self.order_index.get(order_id)
        if signal_id is None:
            return None
        position = self.open.get(signal_id)
        if (position is None or order_id not in position.orders) and closed_too:
            position = self.recently_closed.get(signal_id)
        if position is None or order_id not in position.orders:
            return None
        return position, position.orders[order_id]

    def created(self, order_id: str, ts: float, order_type: OrderType, amount: Decimal, price: Decimal) -> None:
        # a connector may confirm a market order's creation after its fill closed the position: still report it
        if found := self.of_order(order_id, closed_too=True):
            position, order = found
            self.reporter.report_order(position, order, "order_created", ts,
                                       order_type="market" if order_type == OrderType.MARKET else "limit",
                                       amount=amount, price=price if price.is_finite() and price > 0 else None)

    def filled(self, event: Any) -> None:
        found = self.of_order(event.order_id)
        if not found:
            return
        position, order = found
        base, quote = position.signal.symbol.split("-")
        price, amount = dec(event.price), dec(event.amount)
        fee_asset, fee_amount, base_taken = fee_parts(event.trade_fee, order.side, base, quote, price, amount)
        # The position first: nothing below (fee valuation) may lose the fill.
        position.add_fill(order, price, amount, base_taken, event.timestamp)
        fee_quote = _fee_in_quote(event, fee_asset, fee_amount, base, quote, price, amount)
        position.add_fee(fee_asset, fee_amount, fee_quote, base)
        self.reporter.report_order(position, order, "order_filled", event.timestamp,
                                   # paper connectors leave the trade id empty: one that stays unique across restarts
                                   exchange_trade_id=event.exchange_trade_id
                                   or f"{order.order_id}-{event.timestamp:.6f}-{event.amount}",
                                   price=price, amount=amount, fee_quote=fee_quote or ZERO, fee_asset=fee_asset,
                                   fee_amount=fee_amount)

    def completed(self, order_id: str, ts: float, exchange_order_id: str | None, sell: bool = False) -> None:
        if found := self.of_order(order_id):
            position, order = found
            if sell and self.is_take_profit_order(order):
                position.exit_reason = "take_profit"  # the maker take profit filled (even if a cancel came too late)
            self.reporter.report_order(position, order, "order_completed", ts, exchange_order_id=exchange_order_id)
            self.finish_order(position, order, ts)

    def cancelled(self, order_id: str, ts: float) -> None:
        if found := self.of_order(order_id):
            position, order = found
            if order.done:
                return  # settled already (a cancel confirmed after we saw the order gone)
            self.reporter.report_order(position, order, "order_cancelled", ts)
            self.after_cancel(position, order, ts)

    def failed(self, order_id: str, ts: float, error_message: str | None) -> None:
        if found := self.of_order(order_id):
            position, order = found
            error = error_message or "order failed"
            self.reporter.report_order(position, order, "order_failed", ts, reason=error)
            self.finish_order(position, order, ts)
            if order.purpose == "exit" and order.filled == 0 and not position.closed:
                self.exit_failed(position, error, ts)

    # --- after a restart ----------------------------------------------------------------------------------

    def restore(self, row: dict[str, Any], now: float) -> Signal:
        """A position a previous run of this bot left open, as the queue stored it, with its resting orders."""
        signal = Signal.model_validate(row["signal"])
        position = Position(signal, opened_at=timestamp(row["opened_at"]),
                            entry_amount=dec(row["entry_amount"]), entry_quote=dec(row["entry_quote"]),
                            entry_fee_base=dec(row.get("entry_fee_base") or 0),
                            exit_amount=dec(row["exit_amount"]), exit_quote=dec(row["exit_quote"]),
                            fees_quote=dec(row["fees_quote"]), base_fee_quote=dec(row.get("base_fee_quote") or 0),
                            stuck=row.get("stuck_reason"))
        # the persisted trailing peak keeps a trailing stop armed across the restart
        position.peak = max(dec(row.get("trailing_peak") or 0), position.entry_price)
        position.peak_reported = position.peak
        self.open[signal.id] = position
        active = self.market.live_order_ids()
        for stored in row["open_orders"] or []:
            order = TrackedOrder(stored["client_order_id"], stored["purpose"],
                                 TradeType.BUY if stored["side"] == "buy" else TradeType.SELL,
                                 dec(stored["amount"] or 0), dec(stored["price"]) if stored["price"] else None,
                                 timestamp(stored["created_at"]) or now, filled=dec(stored["filled_amount"]))
            position.orders[order.order_id] = order
            self.order_index[order.order_id] = signal.id
            if order.order_id not in active and not self.market.reconcile_on_exchange(position, order, now):
                # the connector forgot it while we were down, and cannot ask the exchange
                self.health["lost_reconciled"] += 1
                self.reporter.report_order(position, order, "order_failed", now, reason="lost across a restart")
                self.finish_order(position, order, now)
        _restore_grid(position)
        self.reporter.fate(signal, "restored after a restart")
        if signal.id in self.open and position.entry_amount <= 0 and not position.open_orders("entry"):
            self.close(position, now, traded=False)
        return signal


def _restore_grid(position: Position) -> None:
    """A restored entry that filled had its grid placed already (on the tick of its fill): the resting limit
    buys it still has are the grid's levels, nearest the entry first; none is placed again."""
    if position.signal.grid_levels is None or position.entry_amount <= 0:
        return
    position.grid_placed = True
    resting = sorted((o for o in position.open_orders("entry") if o.price is not None),
                     key=lambda o: o.price or ZERO, reverse=True)
    for level, order in enumerate(resting, start=1):
        order.level = level


def _fee_in_quote(event: Any, asset: str, amount: Decimal, base: str, quote: str, price: Decimal,
                  filled: Decimal) -> Decimal | None:
    """The fee valued in quote; None when it is in a third asset with no rate (it is kept in its own asset)."""
    if amount == 0 or asset == quote:
        return amount
    if asset == base:
        return amount * price
    fee: TradeFeeBase = event.trade_fee
    try:
        return dec(fee.fee_amount_in_token(event.trading_pair, price, filled, quote))
    except Exception as exc:  # any failure of the rate lookup: the fill is already on the position
        logger.warning(f"fee of {amount} {asset} on order {event.order_id} not converted to {quote}: {exc}")
        return None
