"""Signal executor: a Hummingbot V2 script that executes the controller's signals on a (paper) connector.

It claims signals from the queue in a background thread (so a slow or failing queue never delays the
clock), checks each against the live book (expiry, pair, price deviation, price stability, spread,
balance, position caps, duplicates), places the entry, then manages take profit, stop loss, time limit
and trailing stop itself on top of buy/sell (docs/executor.md says why not Hummingbot's PositionExecutor).
Every order event and every closed position is reported back; while the queue is unreachable, events wait
in an append-only outbox file and are replayed in order (the SQL side is idempotent, so a replay never
doubles anything).

This file is the strategy: the clock's steps, the connector's events routed to their position, the status.
The parts live in the `executor` package, which the compose file mounts beside Hummingbot with `bridge`.
Imports: Hummingbot, the standard library, pydantic and requests (all in the official image), `bridge`
and `executor`.
"""

from __future__ import annotations

import logging
import os
import queue
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import UUID

from hummingbot.core.event.events import (
    BuyOrderCompletedEvent,
    BuyOrderCreatedEvent,
    MarketOrderFailureEvent,
    OrderCancelledEvent,
    OrderFilledEvent,
    SellOrderCompletedEvent,
    SellOrderCreatedEvent,
)
from hummingbot.strategy.strategy_v2_base import StrategyV2Base

from bridge.queue_client import PostgresQueue, PostgrestQueue, SignalQueue
from bridge.redaction import redact
from bridge.schemas import Signal
from executor import gates, health, market, outbox, positions, reporting, worker
from executor.config import SignalExecutorConfig
from executor.models import PendingSignal, Position
from executor.pricing import PriceWindow

__all__ = ["SignalExecutor", "SignalExecutorConfig"]


class SignalExecutor(StrategyV2Base):  # pragma: no mutate block (the Clock: tests/integration/executor)
    """Executes claimed signals; see the module docstring."""

    @classmethod
    def init_markets(cls, config: SignalExecutorConfig) -> None:
        cls.markets = {config.connector: set(config.trading_pairs)}

    def __init__(self, connectors: dict[str, Any], config: SignalExecutorConfig,
                 queue_client: SignalQueue | None = None) -> None:
        super().__init__(connectors, config)
        self.config: SignalExecutorConfig = config
        own_loggers = [logging.getLogger(m.__name__) for m in (gates, health, market, outbox, positions, reporting,
                                                               worker)]
        self._secrets = reporting.guard_logs(config, [logging.getLogger(__name__), *own_loggers,
                                                      SignalExecutor.logger()])
        self.outbox = outbox.Outbox(Path(config.outbox_path.format(consumer=config.consumer)))
        self.worker = worker.QueueWorker(queue_client or self._queue_from_environment(), self.outbox, config,
                                         {config.exchange: list(config.trading_pairs)})
        self.reporter = reporting.Reporter(self.outbox, self.worker, config)
        self.health: Counter[str] = Counter()
        self.market = market.Market(self, config, self.health)
        self.book = positions.Positions(config, self.market, self.reporter, self.health)
        self.pending: dict[UUID, PendingSignal] = {}
        self.seen: set[UUID] = set()
        self.prices = PriceWindow(config.stability_window_s, config.stability_sample_s)
        self._next_health_check = 0.0

    @property
    def positions(self) -> dict[UUID, Position]:
        return self.book.open

    @property
    def order_index(self) -> dict[str, UUID]:
        return self.book.order_index

    @property
    def rejections(self) -> Counter[str]:
        return self.reporter.rejections

    def _queue_from_environment(self) -> SignalQueue:
        url = os.environ.get(self.config.queue_url_env, "")
        if not url:
            raise ValueError(f"environment variable {self.config.queue_url_env} is not set (the queue's address)")
        if self.config.queue_transport == "postgres":
            return PostgresQueue(url)
        key = os.environ.get(self.config.queue_key_env, "")
        token = os.environ.get(self.config.queue_token_env) or None
        if url.rstrip("/").endswith(".supabase.co"):
            return PostgrestQueue.for_supabase(url, key, token=token)
        return PostgrestQueue(url, key or (token or ""), token=token)

    async def on_stop(self) -> None:
        self.worker.stop()  # returns at once: Hummingbot's event loop must not wait on the network
        await super().on_stop()

    def tick(self, timestamp: float) -> None:
        self.worker.start()  # on the clock's first tick, not in __init__ (see QueueWorker)
        super().tick(timestamp)
        if self.ready_to_trade:
            self.worker.ready.set()  # the tick that finds every connector ready (on_tick comes from the next)
        else:
            self.worker.progress = self._progress()

    # --- the clock ----------------------------------------------------------------------------------

    def on_tick(self) -> None:
        now = self.current_timestamp
        self.worker.ready.set()
        gates.sample_prices(self.prices, self.config.trading_pairs, self.market, now)
        self._take_restored(now)
        self._take_close_requests(now)
        self._check_pending(now)  # before new claims: the signals that waited take the caps first
        self._take_claimed(now)
        self.book.manage(now)
        if now >= self._next_health_check:
            health.check_orders(self.book, now)
            self._next_health_check = now + self.config.health_check_interval_s
        self.worker.progress = self._progress()

    def _take_restored(self, now: float) -> None:
        """Manage on the positions a previous run of this bot left open (restart safety)."""
        while True:
            try:
                row = self.worker.restored.get_nowait()
            except queue.Empty:
                return
            self.seen.add(self.book.restore(row, now).id)

    def _take_close_requests(self, now: float) -> None:
        while True:
            try:
                signal_id, who = self.worker.close_requests.get_nowait()
            except queue.Empty:
                return
            position = self.positions.get(signal_id)
            if position is None or position.manual_close:
                continue  # not ours any more, or asked already
            self.reporter.fate(position.signal, f"close requested by {who}")
            self.book.request_close(position, who, "manual", now)

    def _take_claimed(self, now: float) -> None:
        while True:
            try:
                signal = self.worker.claimed.get_nowait()
            except queue.Empty:
                return
            if signal.id in self.seen:
                self.reporter.reject(signal, "duplicate", f"signal {signal.id} was already executed by this bot")
                continue
            self.seen.add(signal.id)
            if signal.kind == "exit":
                self._take_exit_signal(signal, now)
                continue
            if self.prices.full(signal.symbol, now):
                self._decide(signal, now)
            elif reason := self._gates(signal, now):
                self.reporter.reject(signal, *reason)  # no point sampling for a signal that cannot be traded
            else:
                self.pending[signal.id] = PendingSignal(signal, now)

    def _take_exit_signal(self, signal: Signal, now: float) -> None:
        """The controller's strategy exit (CHANNEL at the band's top, RSI exits): close the entry's position at
        market, once, reason strategy_exit. The exit signal itself is done once the close is under way."""
        if signal.expires_at.timestamp() <= now:
            self.reporter.reject(signal, "expired", f"expired at {signal.expires_at.isoformat()}")
            return
        if signal.entry_signal_id in self.pending:  # the entry is still being sampled: it is not made at all
            entry = self.pending.pop(signal.entry_signal_id).signal
            self.reporter.reject(entry, "strategy_exit", f"exit signal {signal.id} came before the entry was placed")
            self.reporter.finished(signal, wake=False)
            return
        position = self.positions.get(signal.entry_signal_id) if signal.entry_signal_id else None
        if position is None or position.closed:
            self.reporter.reject(signal, "no_position", f"no open position of entry {signal.entry_signal_id} on "
                                 "this bot")
            return
        if not position.manual_close and position.exit_reason is None:
            self.reporter.fate(position.signal, "strategy exit signal")
            self.book.request_close(position, f"exit signal {signal.id}", "strategy_exit", now)
        self.reporter.finished(signal)  # an exit signal holds no position of its own: its slot is free again

    def _gates(self, signal: Signal, now: float) -> tuple[str, str] | None:
        return gates.first_failure(signal, now, self.config, self.market, self.positions, self.pending)

    def _check_pending(self, now: float) -> None:
        """Decide the signals that were claimed before their pair's stability window was full, once it is."""
        for signal_id, pending in list(self.pending.items()):
            if self.prices.full(pending.signal.symbol, now):
                del self.pending[signal_id]
                self._decide(pending.signal, now)

    def _decide(self, signal: Signal, now: float) -> None:
        """Enter or reject a signal on the pair's last stability_window_s of samples: the gates run here once,
        after this tick's earlier entries, so the caps and the balance count them."""
        if reason := self._gates(signal, now) or gates.unstable(signal, self.prices, self.config):
            self.reporter.reject(signal, *reason)
            return
        self.book.enter(signal, now)

    # --- events from the connector, routed by client order id to their position ----------------------

    def did_create_buy_order(self, event: BuyOrderCreatedEvent) -> None:
        self.book.created(event.order_id, event.timestamp, event.type, event.amount, event.price)

    def did_create_sell_order(self, event: SellOrderCreatedEvent) -> None:
        self.book.created(event.order_id, event.timestamp, event.type, event.amount, event.price)

    def did_fill_order(self, event: OrderFilledEvent) -> None:
        self.book.filled(event)

    def did_complete_buy_order(self, event: BuyOrderCompletedEvent) -> None:
        self.book.completed(event.order_id, event.timestamp, event.exchange_order_id)

    def did_complete_sell_order(self, event: SellOrderCompletedEvent) -> None:
        self.book.completed(event.order_id, event.timestamp, event.exchange_order_id, sell=True)

    def did_cancel_order(self, event: OrderCancelledEvent) -> None:
        self.book.cancelled(event.order_id, event.timestamp)

    def did_fail_order(self, event: MarketOrderFailureEvent) -> None:
        self.book.failed(event.order_id, event.timestamp, event.error_message)

    # --- reporting ------------------------------------------------------------------------------------

    def _progress(self) -> dict[str, Any]:
        return self.reporter.progress(self.positions, len(self.pending), self.health, self.ready_to_trade)

    def format_status(self) -> str:
        # the queue's errors and the connector's exit errors may carry a key or a URL with its password
        return redact(self._status_text(), self._secrets)

    def _status_text(self) -> str:
        if not self.ready_to_trade:
            waiting = ", ".join(name for name, c in self.connectors.items() if not c.ready)
            return (f"waiting for {waiting} to be ready: no signal is claimed until then\n"
                    + self.reporter.queue_line(full=False))
        lines = [self.reporter.queue_line(full=True), f"open positions ({len(self.positions)}):"]
        for position in self.positions.values():
            _, _, mid = self.market.book(position.signal.symbol)
            unrealised = (mid - position.entry_price) * position.open_amount
            lines.append(f"  {position.signal.symbol} {position.signal.strategy} amount {position.open_amount} "
                         f"entry {position.entry_price:.8g} mid {mid:.8g} unrealised {unrealised:+.4f}"
                         + (f" STUCK: {position.stuck}" if position.stuck else ""))
        return "\n".join(lines + self.reporter.status_lines(self.health))
