"""Signal executor: a Hummingbot V2 script that executes the controller's signals on a (paper) connector.

It claims signals from the queue in a background thread (so a slow or failing queue never delays the
clock), checks each against the live book (expiry, pair, price deviation, price stability, spread,
balance, position caps, duplicates), places the entry, then manages take profit, stop loss, time limit
and trailing stop itself on top of buy/sell, because Hummingbot's PositionExecutor cannot run on paper
connectors. Every order event and every closed position is reported back; while the queue is
unreachable, events wait in an append-only outbox file and are replayed in order (the SQL side is
idempotent, so a replay never doubles anything).

Imports: Hummingbot, the standard library, pydantic and requests (all in the official image), and the
`bridge` package that the compose file mounts beside Hummingbot.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from hummingbot.core.data_type.common import OrderType, PriceType, TradeType
from hummingbot.core.data_type.order_candidate import OrderCandidate
from hummingbot.core.event.events import (
    BuyOrderCompletedEvent,
    BuyOrderCreatedEvent,
    MarketOrderFailureEvent,
    OrderCancelledEvent,
    OrderFilledEvent,
    SellOrderCompletedEvent,
    SellOrderCreatedEvent,
)
from hummingbot.strategy.strategy_v2_base import StrategyV2Base, StrategyV2ConfigBase
from pydantic import Field

from bridge import exits
from bridge.queue_client import PostgresQueue, PostgrestQueue, SignalQueue
from bridge.resilience import CallError, CircuitBreaker, ErrorKind
from bridge.schemas import OrderEvent, Signal

ZERO = Decimal(0)
HUNDRED = Decimal(100)
logger = logging.getLogger(__name__)


def _prompt(text: str) -> dict[str, Any]:
    return {"prompt": text, "prompt_on_new": True}


class SignalExecutorConfig(StrategyV2ConfigBase):
    script_file_name: str = "signal_executor.py"
    connector: str = Field("binance_paper_trade", json_schema_extra=_prompt("Connector to trade on"))
    exchange: str = Field("binance", json_schema_extra=_prompt("Exchange name the controller's signals carry"))
    trading_pairs: list[str] = Field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"],
                                     json_schema_extra=_prompt("Pairs this bot may trade (BASE-QUOTE)"))
    consumer: str = Field("hummingbot-1", json_schema_extra=_prompt("Unique name of this bot on the queue"))
    quote_amount: Decimal | None = Field(None, description="quote per entry; empty: the signal's amount")
    max_open_positions: int = Field(5, ge=1)
    max_open_per_pair: int = Field(1, ge=1)
    # queue: transport and where its credentials come from (environment variables, never this file)
    queue_transport: Literal["postgrest", "postgres"] = "postgrest"
    queue_url_env: str = Field("QUEUE_URL", description="env var: PostgREST root or Supabase URL, or a Postgres DSN")
    queue_key_env: str = Field("SUPABASE_ANON_KEY", description="env var: the apikey (PostgREST/Supabase)")
    queue_token_env: str = Field("EXECUTOR_JWT", description="env var: a JWT whose role claim is executor")
    claim_interval_s: float = Field(1.0, gt=0)
    claim_batch: int = Field(5, ge=1, le=100)
    lease_s: int = Field(120, ge=10)
    heartbeat_interval_s: float = Field(30.0, gt=0)
    outbox_path: str = Field("data/signal_executor_outbox.jsonl", description="append-only event log")
    # pre-trade gates
    max_price_deviation_pct: Decimal = Field(Decimal("1.0"), gt=0)
    stability_window_s: float = Field(5.0, ge=0)
    stability_sample_s: float = Field(1.0, gt=0)
    max_instability_pct: Decimal = Field(Decimal("0.5"), gt=0)
    max_spread_pct: Decimal = Field(Decimal("0.5"), gt=0)
    # orders
    entry_order_type: Literal["market", "limit"] = "market"
    limit_timeout_s: float = Field(60.0, gt=0)
    # order health (seed 000)
    health_check_interval_s: float = Field(30.0, gt=0)
    stale_order_s: float = Field(600.0, gt=0)
    stale_entry_action: Literal["reprice", "abandon"] = "reprice"
    partial_fill_max_age_s: float = Field(3600.0, gt=0)
    partial_fill_action: Literal["complete", "cancel"] = "complete"
    lost_order_grace_s: float = Field(30.0, gt=0)

    def update_markets(self, markets: Any) -> Any:
        markets[self.connector] = markets.get(self.connector, set()) | set(self.trading_pairs)
        return markets


# --- the outbox: write ahead, send, mark sent ---------------------------------------------------------

class Outbox:
    """An append-only JSON-lines file of acks and reports, each written before it is sent.

    A line is `{"seq": n, "kind": "ack" | "report", ...}`; a `{"sent": n}` line marks n delivered. After a
    crash or an outage, everything past the last delivered mark is sent again, in order; the SQL
    functions are idempotent, so a resend cannot double a row.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pending: deque[dict[str, Any]] = deque()
        self._seq = 0
        if path.exists():
            sent: set[int] = set()
            entries = []
            for line in path.read_text().splitlines():
                if not line.strip():
                    continue
                record = json.loads(line)
                if "sent" in record:
                    sent.add(record["sent"])
                else:
                    entries.append(record)
                    self._seq = max(self._seq, record["seq"])
            self._pending.extend(e for e in entries if e["seq"] not in sent)

    def append(self, kind: str, payload: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, "kind": kind, **payload}
            self._write(record)
            self._pending.append(record)

    def peek(self) -> dict[str, Any] | None:
        with self._lock:
            return self._pending[0] if self._pending else None

    def mark_sent(self, seq: int) -> None:
        with self._lock:
            if self._pending and self._pending[0]["seq"] == seq:
                self._pending.popleft()
            self._write({"sent": seq})

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def _write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())


# --- the queue worker: every network call happens here, never on the clock's thread --------------------

class Slots:
    """How many signals the bot may hold (pending, open, or claimed and not yet taken), shared by both threads.

    The worker reserves slots before it claims and gives back what the queue did not hand out; the strategy
    frees a slot when a claimed signal is rejected or its position closes. Capacity is therefore decided at
    claim time, never from a count the clock thread wrote a tick ago (two bots on one queue once over-claimed
    that way).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    def reserve(self, wanted: int) -> int:
        """Take up to `wanted` free slots; returns how many were taken."""
        with self._lock:
            taken = max(0, min(wanted, self.limit - self._held))
            self._held += taken
            return taken

    def hold(self, count: int = 1) -> None:
        """Take slots whatever the limit (positions restored after a restart are held already)."""
        with self._lock:
            self._held += count

    def release(self, count: int = 1) -> None:
        with self._lock:
            self._held = max(0, self._held - count)

    @property
    def held(self) -> int:
        with self._lock:
            return self._held


class QueueWorker:
    """A background thread that claims signals, delivers the outbox in order and sends heartbeats.

    It starts with the strategy's first clock tick (never in `__init__`, so a strategy that fails to start
    leaves no thread behind) and claims only once `ready` is set: Hummingbot calls `on_tick` only when every
    connector is ready, and a signal claimed before that could only be rejected.
    """

    def __init__(self, queue_client: SignalQueue, outbox: Outbox, config: SignalExecutorConfig,
                 markets: dict[str, list[str] | None]) -> None:
        self.queue = queue_client
        self.outbox = outbox
        self.config = config
        self.markets = markets
        self.breaker = CircuitBreaker("queue", failure_threshold=3, probe_after_s=5.0, max_probe_after_s=60.0)
        self.claimed: queue.Queue[Signal] = queue.Queue()
        self.restored: queue.Queue[dict[str, Any]] = queue.Queue()
        self.restore_done = threading.Event()
        self.ready = threading.Event()  # set by the strategy's first on_tick: its connectors are ready
        self.slots = Slots(config.max_open_positions)
        self.progress: dict[str, Any] = {}
        self.stats: Counter[str] = Counter()
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="signal-queue", daemon=True)

    @property
    def started(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def start(self) -> None:
        if not self.started:
            self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and return at once; the thread closes the queue client on its way out."""
        self._stop.set()
        self._wake.set()
        if not self._thread.is_alive() and not self._thread.ident:
            self.queue.close()  # never started: nothing else will close it

    def join(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self.queue.close()

    def _loop(self) -> None:
        next_claim = next_heartbeat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self._deliver()
            if not self.restore_done.is_set() and len(self.outbox) == 0:
                self._restore()
            if now >= next_claim and len(self.outbox) == 0 and self.restore_done.is_set() and self.ready.is_set():
                self._claim()
                next_claim = now + self.config.claim_interval_s
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self.config.heartbeat_interval_s
            self._wake.wait(min(self.config.claim_interval_s, 0.2))
            self._wake.clear()

    def _call(self, fn: Any) -> Any:
        """One queue call through the breaker (which refuses at once while open); errors are counted."""
        try:
            return self.breaker.call(fn)
        except CallError as exc:
            self.last_error = str(exc)
            self.stats[f"errors_{exc.kind.value}"] += 1
            raise

    def _claim(self) -> None:
        count = self.slots.reserve(self.config.claim_batch)
        if count <= 0:
            return
        try:
            signals = self._call(lambda: self.queue.claim(self.config.consumer, count, self.config.lease_s,
                                                          self.markets))
        except CallError:
            self.slots.release(count)
            return  # not retried: a lost reply only leaves signals leased until the lease runs out
        self.slots.release(count - len(signals))
        for signal in signals:
            self.stats["claimed"] += 1
            self.claimed.put(signal)

    def _restore(self) -> None:
        """After a restart: the positions this consumer was executing, read once the outbox is delivered (so
        nothing the outbox closes is brought back)."""
        try:
            rows = self._call(lambda: self.queue.positions(self.config.consumer))
        except CallError:
            return  # tried again on the next turn
        self.slots.hold(len(rows))
        for row in rows:
            self.restored.put(row)
        self.restore_done.set()

    def _heartbeat(self) -> None:
        try:
            self._call(lambda: self.queue.heartbeat(f"hummingbot:{self.config.consumer}", self.progress))
        except CallError:
            pass  # a missed heartbeat shows as no progress; nothing else to do

    def _deliver(self) -> None:
        """Send the outbox in order; stop at the first record that could not be delivered now."""
        while (record := self.outbox.peek()) is not None:
            try:
                if record["kind"] == "ack":
                    self._call(lambda r=record: self.queue.ack(UUID(r["signal_id"]), self.config.consumer,
                                                               r["status"], r.get("reason")))
                else:
                    self._call(lambda r=record: self.queue.report(OrderEvent.model_validate(r["event"])))
            except CallError as exc:
                if exc.kind not in (ErrorKind.CLIENT, ErrorKind.AUTH):
                    return  # unreachable or refused by the breaker: keep it, in order, for later
                # Refused for good (e.g. the claim was taken over): resending cannot help.
                logger.error(f"queue refused {record['kind']} seq {record['seq']}: {exc}")
                self.stats["refused"] += 1
            else:
                self.stats["delivered"] += 1
            self.outbox.mark_sent(record["seq"])


# --- positions: entry, barriers, exit -----------------------------------------------------------------

@dataclass
class TrackedOrder:
    order_id: str
    purpose: Literal["entry", "exit"]
    side: TradeType
    amount: Decimal
    price: Decimal | None
    created_at: float
    filled: Decimal = ZERO
    fills: int = 0
    done: bool = False
    repriced: bool = False
    missing_since: float | None = None


@dataclass
class Position:
    signal: Signal
    opened_at: float | None = None
    entry_amount: Decimal = ZERO     # base bought
    entry_quote: Decimal = ZERO      # quote paid
    exit_amount: Decimal = ZERO      # base sold
    exit_quote: Decimal = ZERO       # quote received
    fees_quote: Decimal = ZERO
    peak: Decimal = ZERO             # highest mid since entry, for the trailing stop
    exit_reason: str | None = None
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    closed: bool = False

    @property
    def entry_price(self) -> Decimal:
        return self.entry_quote / self.entry_amount if self.entry_amount else ZERO

    @property
    def open_amount(self) -> Decimal:
        return self.entry_amount - self.exit_amount

    def open_orders(self, purpose: str | None = None) -> list[TrackedOrder]:
        return [o for o in self.orders.values() if not o.done and (purpose is None or o.purpose == purpose)]


def barrier_hit(position: Position, mid: Decimal, now: float) -> str | None:
    """Which exit the price and clock call for: the shared exit rule on one tick (`bridge.exits`)."""
    held = now - position.opened_at if position.opened_at is not None else None
    hit, _ = exits.check(position.signal, position.entry_price, position.peak, mid, mid, mid, held)
    return hit.reason if hit is not None else None


def instability_pct(samples: list[Decimal]) -> Decimal:
    """(max - min) / min over a window of prices, in percent (seed 000's price stability)."""
    low = min(samples)
    return (max(samples) - low) / low * HUNDRED if low > 0 else HUNDRED


@dataclass
class PendingSignal:
    signal: Signal
    started_at: float
    bids: list[Decimal] = field(default_factory=list)
    asks: list[Decimal] = field(default_factory=list)
    last_sample_at: float = 0.0


class SignalExecutor(StrategyV2Base):
    """Executes claimed signals; see the module docstring."""

    @classmethod
    def init_markets(cls, config: SignalExecutorConfig) -> None:
        cls.markets = {config.connector: set(config.trading_pairs)}

    def __init__(self, connectors: dict[str, Any], config: SignalExecutorConfig,
                 queue_client: SignalQueue | None = None) -> None:
        super().__init__(connectors, config)
        self.config: SignalExecutorConfig = config
        self.outbox = Outbox(Path(config.outbox_path))
        self.worker = QueueWorker(queue_client or self._queue_from_environment(), self.outbox, config,
                                  {config.exchange: list(config.trading_pairs)})
        self.pending: dict[UUID, PendingSignal] = {}
        self.positions: dict[UUID, Position] = {}
        self.order_index: dict[str, UUID] = {}  # client order id -> signal id
        self.seen: set[UUID] = set()
        self.fates: deque[tuple[str, str, str]] = deque(maxlen=10)  # (signal, pair, fate)
        self.rejections: Counter[str] = Counter()
        self.health: Counter[str] = Counter()
        self.closed_trades: Counter[str] = Counter()
        self._next_health_check = 0.0

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

    # --- the clock ----------------------------------------------------------------------------------

    def on_tick(self) -> None:
        now = self.current_timestamp
        self.worker.ready.set()
        self._take_restored(now)
        self._take_claimed(now)
        self._check_pending(now)
        self._manage_positions(now)
        if now >= self._next_health_check:
            self._order_health(now)
            self._next_health_check = now + self.config.health_check_interval_s
        self.worker.progress = self._progress()

    def _connector(self) -> Any:
        return self.connectors[self.config.connector]

    def _has_book(self, pair: str) -> bool:
        try:
            self._connector().get_order_book(pair)
        except (KeyError, ValueError):
            return False
        return True

    def _book(self, pair: str) -> tuple[Decimal, Decimal, Decimal]:
        connector = self._connector()
        bid = Decimal(str(connector.get_price_by_type(pair, PriceType.BestBid)))
        ask = Decimal(str(connector.get_price_by_type(pair, PriceType.BestAsk)))
        return bid, ask, (bid + ask) / 2

    def _reject(self, signal: Signal, gate: str, reason: str) -> None:
        self.rejections[gate] += 1
        self.fates.append((str(signal.id)[:8], signal.symbol, f"rejected: {reason}"))
        self.outbox.append("ack", {"signal_id": str(signal.id), "status": "rejected", "reason": reason})
        self.worker.slots.release()
        self.worker.wake()

    def _take_restored(self, now: float) -> None:
        """Manage on the positions a previous run of this bot left open (restart safety)."""
        while True:
            try:
                row = self.worker.restored.get_nowait()
            except queue.Empty:
                return
            signal = Signal.model_validate(row["signal"])
            self.seen.add(signal.id)
            position = Position(signal, opened_at=_timestamp(row["opened_at"]),
                                entry_amount=_dec(row["entry_amount"]), entry_quote=_dec(row["entry_quote"]),
                                exit_amount=_dec(row["exit_amount"]), exit_quote=_dec(row["exit_quote"]),
                                fees_quote=_dec(row["fees_quote"]))
            position.peak = position.entry_price
            self.positions[signal.id] = position
            active = {o.client_order_id for o in self.get_active_orders(self.config.connector)}
            for stored in row["open_orders"] or []:
                order = TrackedOrder(stored["client_order_id"], stored["purpose"],
                                     TradeType.BUY if stored["side"] == "buy" else TradeType.SELL,
                                     _dec(stored["amount"] or 0), _dec(stored["price"]) if stored["price"] else None,
                                     _timestamp(stored["created_at"]) or now, filled=_dec(stored["filled_amount"]))
                position.orders[order.order_id] = order
                self.order_index[order.order_id] = signal.id
                if order.order_id not in active:  # the connector forgot it while we were down
                    self.health["lost_reconciled"] += 1
                    self._report_order(position, order, "order_failed", now, reason="lost across a restart")
                    self._finish_order(position, order, now)
            self.fates.append((str(signal.id)[:8], signal.symbol, "restored after a restart"))
            if signal.id in self.positions and position.entry_amount <= 0 and not position.open_orders("entry"):
                self._close(position, now, traded=False)

    def _take_claimed(self, now: float) -> None:
        while True:
            try:
                signal = self.worker.claimed.get_nowait()
            except queue.Empty:
                return
            if signal.id in self.seen:
                self._reject(signal, "duplicate", f"signal {signal.id} was already executed by this bot")
                continue
            self.seen.add(signal.id)
            if reason := self._gates(signal, now):
                self._reject(signal, *reason)
                continue
            self.pending[signal.id] = PendingSignal(signal, now)

    def _gates(self, signal: Signal, now: float) -> tuple[str, str] | None:
        """The first gate a claimed signal fails, as (gate, reason); None when it may go on to sampling."""
        if signal.expires_at.timestamp() <= now:
            return "expired", f"expired at {signal.expires_at.isoformat()}"
        if signal.symbol not in self.config.trading_pairs or not self._has_book(signal.symbol):
            return "pair", f"{signal.symbol} is not traded by {self.config.connector}"
        same_pair = sum(1 for p in self.positions.values() if p.signal.symbol == signal.symbol)
        same_pair += sum(1 for p in self.pending.values() if p.signal.symbol == signal.symbol)
        if len(self.positions) + len(self.pending) >= self.config.max_open_positions:
            return "max_positions", f"max open positions reached ({self.config.max_open_positions})"
        if same_pair >= self.config.max_open_per_pair:
            return "max_positions", f"max open positions for {signal.symbol} reached ({self.config.max_open_per_pair})"
        bid, ask, mid = self._book(signal.symbol)
        if bid <= 0 or ask <= 0:
            return "book", f"no book for {signal.symbol}"
        deviation = abs(mid - signal.price) / signal.price * HUNDRED
        if deviation > self.config.max_price_deviation_pct:
            return "price_moved", (f"price moved {deviation:.2f}% from the signal's {signal.price} "
                                   f"(max {self.config.max_price_deviation_pct}%)")
        spread = (ask - bid) / mid * HUNDRED
        if spread > self.config.max_spread_pct:
            return "spread", f"spread {spread:.2f}% wider than {self.config.max_spread_pct}%"
        amount = self._entry_amount(signal, ask)
        candidate = OrderCandidate(trading_pair=signal.symbol, is_maker=self.config.entry_order_type == "limit",
                                   order_type=self._entry_type(), order_side=TradeType.BUY, amount=amount, price=ask)
        adjusted = self._connector().budget_checker.adjust_candidate(candidate, all_or_none=True)
        if adjusted.amount <= 0:
            return "balance", f"balance too small for {amount} {signal.symbol.split('-')[0]} at {ask}"
        return None

    def _entry_type(self) -> OrderType:
        return OrderType.MARKET if self.config.entry_order_type == "market" else OrderType.LIMIT

    def _entry_amount(self, signal: Signal, price: Decimal) -> Decimal:
        quote = self.config.quote_amount or signal.quote_amount
        return self._connector().quantize_order_amount(signal.symbol, quote / price)

    def _check_pending(self, now: float) -> None:
        """Sample the book every stability_sample_s for stability_window_s, then decide (seed 000)."""
        for signal_id, pending in list(self.pending.items()):
            signal = pending.signal
            if now - pending.last_sample_at >= self.config.stability_sample_s:
                bid, ask, _ = self._book(signal.symbol)
                pending.bids.append(bid)
                pending.asks.append(ask)
                pending.last_sample_at = now
            if now - pending.started_at < self.config.stability_window_s:
                continue
            del self.pending[signal_id]
            worst = max(instability_pct(pending.bids), instability_pct(pending.asks))
            if worst > self.config.max_instability_pct:
                self._reject(signal, "unstable", f"price moved {worst:.2f}% within {self.config.stability_window_s:g}"
                             f" s (max {self.config.max_instability_pct}%)")
                continue
            if reason := self._gates(signal, now):
                self._reject(signal, *reason)
                continue
            self._enter(signal, now)

    def _enter(self, signal: Signal, now: float) -> None:
        position = Position(signal)
        self.positions[signal.id] = position
        self.outbox.append("ack", {"signal_id": str(signal.id), "status": "executing", "reason": None})
        self.fates.append((str(signal.id)[:8], signal.symbol, "executing"))
        bid, ask, _ = self._book(signal.symbol)
        self._place(position, "entry", TradeType.BUY, self._entry_amount(signal, ask), None if
                    self.config.entry_order_type == "market" else bid, now)
        self.worker.wake()

    def _place(self, position: Position, purpose: Literal["entry", "exit"], side: TradeType, amount: Decimal,
               price: Decimal | None, now: float) -> str | None:
        if amount <= 0:
            return None
        pair = position.signal.symbol
        order_type = OrderType.MARKET if price is None else OrderType.LIMIT
        place = self.buy if side == TradeType.BUY else self.sell
        order_id = place(self.config.connector, pair, amount, order_type, price if price is not None else
                         Decimal("NaN"))
        position.orders[order_id] = TrackedOrder(order_id, purpose, side, amount, price, now)
        self.order_index[order_id] = position.signal.id
        return order_id

    def _manage_positions(self, now: float) -> None:
        for position in list(self.positions.values()):
            if position.closed or position.entry_amount <= 0:
                continue
            _, _, mid = self._book(position.signal.symbol)
            position.peak = max(position.peak, mid)
            if position.exit_reason is None and not position.open_orders("entry"):
                if reason := barrier_hit(position, mid, now):
                    position.exit_reason = reason
                    self._place(position, "exit", TradeType.SELL, self._sellable(position), None, now)

    def _sellable(self, position: Position) -> Decimal:
        pending_exit = sum((o.amount - o.filled for o in position.open_orders("exit")), ZERO)
        amount = position.open_amount - pending_exit
        return self._connector().quantize_order_amount(position.signal.symbol, amount)

    # --- order health (seed 000) --------------------------------------------------------------------

    def _order_health(self, now: float) -> None:
        active = {o.client_order_id for o in self.get_active_orders(self.config.connector)}
        for position in list(self.positions.values()):
            for order in position.open_orders():
                age = now - order.created_at
                if order.price is not None and order.order_id not in active:
                    # a resting order the connector no longer knows and no event told us about
                    order.missing_since = order.missing_since or now
                    if now - order.missing_since >= self.config.lost_order_grace_s:
                        self.health["lost_reconciled"] += 1
                        self._report_order(position, order, "order_failed", now, reason="lost by the connector")
                        self._finish_order(position, order, now)
                    continue
                if order.filled > 0 and age >= self.config.partial_fill_max_age_s:
                    self.health["partial_fills_handled"] += 1
                    self.cancel(self.config.connector, position.signal.symbol, order.order_id)
                    if self.config.partial_fill_action == "complete":
                        self._place(position, order.purpose, order.side, order.amount - order.filled, None, now)
                elif order.price is not None and age >= self._stale_after(order):
                    self.health["stale_cancelled"] += 1
                    self.cancel(self.config.connector, position.signal.symbol, order.order_id)
                    if order.purpose == "exit" or (self.config.stale_entry_action == "reprice" and not order.repriced):
                        bid, _, _ = self._book(position.signal.symbol)
                        new_id = self._place(position, order.purpose, order.side, order.amount - order.filled,
                                             bid if order.side == TradeType.BUY else None, now)
                        if new_id:
                            position.orders[new_id].repriced = True
                            self.health["repriced"] += 1

    def _stale_after(self, order: TrackedOrder) -> float:
        """A resting entry waits limit_timeout_s (if shorter than the stale threshold), anything else stale_order_s."""
        if order.purpose == "entry":
            return min(self.config.limit_timeout_s, self.config.stale_order_s)
        return self.config.stale_order_s

    # --- events from the connector --------------------------------------------------------------------

    def _position_of(self, order_id: str) -> tuple[Position, TrackedOrder] | None:
        signal_id = self.order_index.get(order_id)
        position = self.positions.get(signal_id) if signal_id else None
        if position is None or order_id not in position.orders:
            return None
        return position, position.orders[order_id]

    def _report(self, event: OrderEvent) -> None:
        self.outbox.append("report", {"event": event.to_payload()})
        self.worker.wake()

    def _report_order(self, position: Position, order: TrackedOrder, kind: str, ts: float, **extra: Any) -> None:
        signal = position.signal
        self._report(OrderEvent(
            type=kind, signal_id=signal.id, ts=_iso(ts), consumer=self.config.consumer,
            client_order_id=order.order_id, exchange=signal.exchange, symbol=signal.symbol,
            side="buy" if order.side == TradeType.BUY else "sell", purpose=order.purpose, **extra))

    def did_create_buy_order(self, event: BuyOrderCreatedEvent) -> None:
        self._created(event.order_id, event.timestamp, event.type, event.amount, event.price)

    def did_create_sell_order(self, event: SellOrderCreatedEvent) -> None:
        self._created(event.order_id, event.timestamp, event.type, event.amount, event.price)

    def _created(self, order_id: str, ts: float, order_type: OrderType, amount: Decimal, price: Decimal) -> None:
        if found := self._position_of(order_id):
            position, order = found
            self._report_order(position, order, "order_created", ts,
                               order_type="market" if order_type == OrderType.MARKET else "limit",
                               amount=amount, price=price if price.is_finite() and price > 0 else None)

    def did_fill_order(self, event: OrderFilledEvent) -> None:
        found = self._position_of(event.order_id)
        if not found:
            return
        position, order = found
        quote_asset = position.signal.symbol.split("-")[1]
        fee = event.trade_fee.fee_amount_in_token(event.trading_pair, event.price, event.amount, quote_asset)
        order.filled += event.amount
        order.fills += 1
        position.fees_quote += fee
        if order.purpose == "entry":
            position.entry_amount += event.amount
            position.entry_quote += event.price * event.amount
            position.opened_at = position.opened_at or event.timestamp
            position.peak = max(position.peak, event.price)
        else:
            position.exit_amount += event.amount
            position.exit_quote += event.price * event.amount
        self._report_order(position, order, "order_filled", event.timestamp,
                           # paper connectors leave the trade id empty: one that stays unique across restarts
                           exchange_trade_id=event.exchange_trade_id
                           or f"{order.order_id}-{event.timestamp:.6f}-{event.amount}",
                           price=event.price, amount=event.amount, fee_quote=fee, fee_asset=quote_asset,
                           fee_amount=fee)

    def did_complete_buy_order(self, event: BuyOrderCompletedEvent) -> None:
        self._completed(event.order_id, event.timestamp, event.exchange_order_id)

    def did_complete_sell_order(self, event: SellOrderCompletedEvent) -> None:
        self._completed(event.order_id, event.timestamp, event.exchange_order_id)

    def _completed(self, order_id: str, ts: float, exchange_order_id: str | None) -> None:
        if found := self._position_of(order_id):
            position, order = found
            self._report_order(position, order, "order_completed", ts, exchange_order_id=exchange_order_id)
            self._finish_order(position, order, ts)

    def did_cancel_order(self, event: OrderCancelledEvent) -> None:
        if found := self._position_of(event.order_id):
            position, order = found
            self._report_order(position, order, "order_cancelled", event.timestamp)
            self._finish_order(position, order, event.timestamp)

    def did_fail_order(self, event: MarketOrderFailureEvent) -> None:
        if found := self._position_of(event.order_id):
            position, order = found
            self._report_order(position, order, "order_failed", event.timestamp,
                               reason=event.error_message or "order failed")
            self._finish_order(position, order, event.timestamp)

    def _finish_order(self, position: Position, order: TrackedOrder, ts: float) -> None:
        order.done = True
        if order.purpose == "entry" and not position.open_orders("entry") and position.entry_amount <= 0:
            self._close(position, ts, traded=False)  # the entry never filled: nothing to manage
        elif order.purpose == "exit" and position.exit_reason and self._is_flat(position):
            self._close(position, ts, traded=True)
        elif order.purpose == "exit" and not position.open_orders("exit") and position.open_amount > 0:
            position.exit_reason = None  # an exit that did not complete: the barriers decide again

    def _is_flat(self, position: Position) -> bool:
        """Nothing left to sell: what remains is below the smallest amount the connector trades."""
        return self._connector().quantize_order_amount(position.signal.symbol, position.open_amount) <= 0

    def _close(self, position: Position, ts: float, traded: bool) -> None:
        signal = position.signal
        position.closed = True
        del self.positions[signal.id]
        if traded:
            pnl = position.exit_quote - position.entry_quote - position.fees_quote
            pnl_pct = pnl / position.entry_quote * HUNDRED if position.entry_quote else ZERO
            self._report(OrderEvent(
                type="position_closed", signal_id=signal.id, ts=_iso(ts), consumer=self.config.consumer,
                exchange=signal.exchange, symbol=signal.symbol, side="buy", amount=position.entry_amount,
                entry_price=position.entry_price, exit_price=position.exit_quote / position.exit_amount,
                fees_quote=position.fees_quote, pnl_quote=pnl, pnl_pct=pnl_pct, exit_reason=position.exit_reason,
                opened_at=_iso(position.opened_at or ts), closed_at=_iso(ts)))
            self.closed_trades[position.exit_reason or "unknown"] += 1
            self.fates.append((str(signal.id)[:8], signal.symbol, f"closed: {position.exit_reason} {pnl:+.4f}"))
        else:
            self.fates.append((str(signal.id)[:8], signal.symbol, "closed: entry not filled"))
        self.outbox.append("ack", {"signal_id": str(signal.id), "status": "closed", "reason": None})
        self.worker.slots.release()
        self.worker.wake()

    # --- reporting ------------------------------------------------------------------------------------

    def _progress(self) -> dict[str, Any]:
        # Progress, not liveness: only what changes when the bot does something (claims, trades, closes).
        return {"claimed": self.worker.stats["claimed"], "open_positions": len(self.positions),
                "pending": len(self.pending), "outbox": len(self.outbox),
                "queue_breaker": self.worker.breaker.state.value, "rejections": dict(self.rejections),
                "order_health": dict(self.health), "closed": dict(self.closed_trades)}

    def format_status(self) -> str:
        lines = [f"queue: breaker {self.worker.breaker.state.value}, outbox {len(self.outbox)} pending, "
                 f"claimed {self.worker.stats['claimed']}, delivered {self.worker.stats['delivered']}"
                 + (f", last error: {self.worker.last_error}" if self.worker.last_error else "")]
        lines.append(f"open positions ({len(self.positions)}):")
        for position in self.positions.values():
            _, _, mid = self._book(position.signal.symbol)
            unrealised = (mid - position.entry_price) * position.open_amount
            lines.append(f"  {position.signal.symbol} {position.signal.strategy} amount {position.open_amount} "
                         f"entry {position.entry_price:.8g} mid {mid:.8g} unrealised {unrealised:+.4f}")
        lines.append("last signals: " + ("; ".join(f"{s} {p} {f}" for s, p, f in self.fates) or "none"))
        lines.append("rejections by gate: " + (", ".join(f"{g} {n}" for g, n in self.rejections.items()) or "none"))
        lines.append("order health: " + (", ".join(f"{k} {n}" for k, n in self.health.items()) or "nothing to do"))
        return "\n".join(lines)


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a datetime (direct transport) or an ISO string (PostgREST)."""
    if value is None:
        return None
    if isinstance(value, str):
        from datetime import datetime

        value = datetime.fromisoformat(value)
    return value.timestamp()


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00:00"
