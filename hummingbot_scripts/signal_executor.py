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
from hummingbot.core.data_type.trade_fee import DeductedFromReturnsTradeFee, TradeFeeBase
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
from pydantic import Field, model_validator

from bridge import exits
from bridge.queue_client import ClaimTaken, PostgresQueue, PostgrestQueue, SignalQueue, wakes_for
from bridge.redaction import RedactingFilter, redact, secret_parts
from bridge.resilience import CallError, CircuitBreaker, ErrorKind
from bridge.schemas import OrderEvent, Signal

ZERO = Decimal(0)
HUNDRED = Decimal(100)
NOISE = Decimal("1e-9")  # relative: below this share of the position, a remainder is rounding, never sold
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
    claim_interval_s: float = Field(1.0, gt=0, description="claim poll; with queue_listen, only the fallback")
    queue_listen: bool = Field(True, description=(
        "postgres transport: LISTEN for new signals and claim at once (off behind a transaction-pooling proxy, "
        "which cannot LISTEN); PostgREST always polls"))
    claim_batch: int = Field(5, ge=1, le=100)
    lease_s: int = Field(120, ge=10)
    heartbeat_interval_s: float = Field(30.0, gt=0)
    outbox_path: str = Field("data/signal_executor_outbox.{consumer}.jsonl",
                             description="append-only event log; {consumer} is replaced by the consumer name")
    # pre-trade gates
    max_price_deviation_pct: Decimal = Field(Decimal("1.0"), gt=0)
    stability_window_s: float = Field(5.0, ge=0)
    stability_sample_s: float = Field(1.0, gt=0)
    max_instability_pct: Decimal = Field(Decimal("0.5"), gt=0)
    max_spread_pct: Decimal = Field(Decimal("0.5"), gt=0)
    # orders
    entry_order_type: Literal["market", "limit"] = "market"
    take_profit_order_type: Literal["market", "limit"] = Field("market", description=(
        "limit: once the entry fills, a resting limit sell at the take-profit price (maker fees on a real "
        "exchange); stop loss, time limit and trailing stop are still watched and cancel it first"))
    limit_timeout_s: float = Field(60.0, gt=0)
    # order health (seed 000)
    health_check_interval_s: float = Field(30.0, gt=0)
    stale_order_s: float = Field(600.0, gt=0)
    stale_entry_action: Literal["reprice", "abandon"] = "reprice"
    partial_fill_max_age_s: float = Field(300.0, gt=0)
    partial_fill_action: Literal["complete", "cancel"] = "complete"
    lost_order_grace_s: float = Field(30.0, gt=0)
    # a real exchange
    market_order_timeout_s: float = Field(30.0, gt=0, description=(
        "a market order with no final event this long after it was placed, and unknown to the connector, is lost"))
    max_order_retries: int = Field(3, ge=1, description="failed exits in a row before the position is marked stuck")
    min_notional_quote: Decimal = Field(Decimal("0"), ge=0, description=(
        "smallest order value, in the pair's quote asset, where the connector publishes no trading rule (paper "
        "connectors); 0: no check there"))
    peak_report_interval_s: float = Field(5.0, gt=0, description="how often a risen trailing peak is persisted")

    @model_validator(mode="after")
    def _partial_fill_reachable(self) -> SignalExecutorConfig:
        # A partially filled order is handled by partial_fill_max_age_s alone; an unfilled resting order goes
        # stale at stale_order_s. A partial age past the stale age would describe a rule that never runs.
        if self.partial_fill_max_age_s >= self.stale_order_s:
            raise ValueError(f"partial_fill_max_age_s ({self.partial_fill_max_age_s:g}) must be shorter than "
                             f"stale_order_s ({self.stale_order_s:g}), or a partial fill is never handled")
        return self

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
            lines = path.read_text().splitlines()
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    if number == len(lines):  # a crash mid-write: that record was never sent, nothing is lost
                        logger.warning(f"outbox {path}: skipped a torn last line (a crash while writing it)")
                        continue
                    raise ValueError(f"outbox {path}, line {number}: not JSON; move the file aside to start "
                                     "(its undelivered events would then be lost)") from None
                if "sent" in record:
                    sent.add(record["sent"])
                else:
                    entries.append(record)
                    self._seq = max(self._seq, record["seq"])
            self._pending.extend(e for e in entries if e["seq"] not in sent)
            self._compact()  # also ends a torn line, so the next append starts on a line of its own

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
            if self._pending:
                self._write({"sent": seq})
            else:
                self._compact()  # all delivered: the file need not grow forever

    def _compact(self) -> None:
        """Rewrite the file with only the undelivered records (atomically: a crash leaves the old or the new)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as f:
            for record in self._pending:
                f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

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


class QueueWorker:  # pragma: no mutate block (threads and the network: tests/integration/executor)
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
        self.close_requests: queue.Queue[tuple[UUID, str]] = queue.Queue()  # (signal, who asked)
        self.restore_done = threading.Event()
        self.ready = threading.Event()  # set by the strategy's first on_tick: its connectors are ready
        self.slots = Slots(config.max_open_positions)
        self.progress: dict[str, Any] = {}
        self.stats: Counter[str] = Counter()
        self.last_error: str | None = None
        self._auth_failures = 0
        self._auth_retry_at = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="signal-queue", daemon=True)
        # LISTEN/NOTIFY (direct transport): a second thread blocks on the notification connection and wakes
        # this one to claim at once; the claim poll stays as the fallback
        self.notified = threading.Event()  # a new signal for our markets: claim now
        self.listening = threading.Event()  # the LISTEN connection is up
        listens = config.queue_listen and callable(getattr(queue_client, "listener", None))
        self._listener_thread = (threading.Thread(target=self._listen, name="signal-queue-listen", daemon=True)
                                 if listens else None)

    @property
    def started(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def start(self) -> None:
        if not self.started:
            self._thread.start()
            if self._listener_thread is not None:
                self._listener_thread.start()

    def stop(self) -> None:
        """Ask the thread to end and return at once; the thread closes the queue client on its way out."""
        self._stop.set()
        self._wake.set()
        if not self._thread.is_alive() and not self._thread.ident:
            self.queue.close()  # never started: nothing else will close it

    def join(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)
        if self._listener_thread is not None and self._listener_thread.ident:
            self._listener_thread.join(timeout_s)

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
            due = now >= next_claim or self.notified.is_set()
            if due and len(self.outbox) == 0 and self.restore_done.is_set() and self.ready.is_set():
                self.notified.clear()  # before the claim: a notification during it claims once more
                self._claim()
                self._poll_close_requests()
                next_claim = now + self.config.claim_interval_s
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self.config.heartbeat_interval_s
            self._wake.wait(min(self.config.claim_interval_s, 0.2))
            self._wake.clear()

    def _listen(self) -> None:
        """The LISTEN thread: wake the claimer when a signal for one of our markets is emitted."""
        listener = self.queue.listener()
        try:
            while not self._stop.is_set():
                try:
                    listener.connect()
                    self.listening.set()
                    payloads = listener.wait(0.5)  # short, so a stop is seen soon
                except CallError as exc:
                    self.listening.clear()
                    self.stats["listen_errors"] += 1
                    logger.warning(f"queue LISTEN failed ({exc}); claiming by polling until it is back")
                    self._stop.wait(5.0)
                    continue
                if any(wakes_for(payload, self.markets) for payload in payloads):
                    self.stats["notified"] += 1
                    self.notified.set()
                    self._wake.set()
        finally:
            self.listening.clear()
            listener.close()

    def _call(self, fn: Any) -> Any:
        """One queue call through the breaker (which refuses at once while open); errors are counted."""
        try:
            return self.breaker.call(fn)
        except CallError as exc:
            self.last_error = str(exc)
            self.stats[f"errors_{exc.kind.value}"] += 1
            raise

    def _claim(self) -> None:
        # With every slot held the claim still runs with max_count 0: the queue then hands out only the exits
        # of this bot's positions (0018), which come on top of max_count and free slots when they close.
        count = self.slots.reserve(self.config.claim_batch)
        self.stats["claim_calls"] += 1
        try:
            signals = self._call(lambda: self.queue.claim(self.config.consumer, count, self.config.lease_s,
                                                          self.markets))
        except CallError:
            self.slots.release(count)
            return  # not retried: a lost reply only leaves signals leased until the lease runs out
        exits = sum(1 for s in signals if s.kind == "exit")
        self.slots.release(count - (len(signals) - exits))
        self.slots.hold(exits)  # released when the exit is taken or rejected, like any claimed signal
        for signal in signals:
            self.stats["claimed"] += 1
            self.claimed.put(signal)

    def _poll_close_requests(self) -> None:
        """Manual closes (`python -m controller close`) of the signals this bot executes, once per claim cycle."""
        if self.slots.held <= 0:
            return
        try:
            rows = self._call(lambda: self.queue.positions(self.config.consumer))
        except CallError:
            return
        for row in rows:
            if row.get("close_requested_by"):
                self.close_requests.put((UUID(str(row["signal"]["id"])), row["close_requested_by"]))

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
        if time.monotonic() < self._auth_retry_at:
            return
        while (record := self.outbox.peek()) is not None:
            try:
                if record["kind"] == "ack":
                    # the consumer that held the claim when the ack was written (a renamed bot replays its own)
                    consumer = record.get("consumer") or self.config.consumer
                    self._call(lambda r=record, c=consumer: self.queue.ack(UUID(r["signal_id"]), c, r["status"],
                                                                           r.get("reason")))
                else:
                    self._call(lambda r=record: self.queue.report(OrderEvent.model_validate(r["event"])))
            except ClaimTaken as exc:
                # the signal is another consumer's now: resending can never succeed
                logger.error(f"queue refused {record['kind']} seq {record['seq']}: {exc}")
                self.stats["refused"] += 1
            except CallError as exc:
                if exc.kind == ErrorKind.AUTH:
                    # an expired or wrong key: keep everything, say so, and try again later (a fixed key delivers)
                    self._auth_failures += 1
                    self._auth_retry_at = time.monotonic() + min(2.0 ** self._auth_failures, 60.0)
                    if self._auth_failures == 1 or self._auth_failures % 10 == 0:
                        logger.error(f"queue refused the executor's key ({exc}); {len(self.outbox)} events kept in "
                                     f"{self.outbox.path}, retrying with backoff")
                    return
                if exc.kind != ErrorKind.CLIENT:
                    return  # unreachable or refused by the breaker: keep it, in order, for later
                # a record the queue refuses as invalid: resending the same bytes cannot help
                logger.error(f"queue refused {record['kind']} seq {record['seq']}: {exc}")
                self.stats["refused"] += 1
            else:
                self.stats["delivered"] += 1
                self._auth_failures = 0
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
    cancel_sent_at: float | None = None  # cancel_pending: asked, not yet confirmed
    replace: str | None = None           # what to place once the cancel is confirmed: "market", "reprice"
    reconciling_since: float | None = None  # handed to the connector's tracker to ask the exchange its status
    level: int | None = None             # a DCA grid level (1 = nearest the entry): rests until filled or exit


@dataclass
class Position:
    signal: Signal
    opened_at: float | None = None
    entry_amount: Decimal = ZERO     # base bought (gross, as filled)
    entry_quote: Decimal = ZERO      # quote paid (before fees)
    entry_fee_base: Decimal = ZERO   # of which the exchange kept as its fee (Binance: buy fee in the base coin)
    exit_amount: Decimal = ZERO      # base sold
    exit_quote: Decimal = ZERO       # quote received (before fees)
    fees_quote: Decimal = ZERO       # every fee, valued in quote where a rate exists
    base_fee_quote: Decimal = ZERO   # the part of fees_quote taken in the base coin (already out of open_amount)
    unpriced_fees: dict[str, Decimal] = field(default_factory=dict)  # fees in a third asset with no rate
    peak: Decimal = ZERO             # highest bid since entry, for the trailing stop
    peak_reported: Decimal = ZERO
    peak_reported_at: float = 0.0
    exit_reason: str | None = None
    failures: int = 0                # failed exit orders in a row
    retry_at: float = 0.0            # no new exit before this time (backoff after a failure)
    stuck: str | None = None         # why the bot gave up on this position (it needs a person)
    manual_close: str | None = None  # who asked for a close at market (a person, or the controller's exit signal)
    close_reason: str = "manual"     # the exit reason that close records: manual, or strategy_exit
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    closed: bool = False
    grid_placed: bool = False        # the DCA grid's levels were placed (once, after the entry filled)

    @property
    def entry_price(self) -> Decimal:
        return self.entry_quote / self.entry_amount if self.entry_amount else ZERO

    @property
    def open_amount(self) -> Decimal:
        """What the position holds in the wallet: bought, less the fee kept in the coin, less sold."""
        return self.entry_amount - self.entry_fee_base - self.exit_amount

    def open_orders(self, purpose: str | None = None) -> list[TrackedOrder]:
        return [o for o in self.orders.values() if not o.done and (purpose is None or o.purpose == purpose)]

    def busy(self) -> bool:
        """An order is working or a cancel awaits confirmation: no exit may be placed. A resting grid level
        alone leaves the position to its barriers."""
        return any(o.level is None or o.cancel_sent_at is not None for o in self.open_orders())


def barrier_hit(position: Position, bid: Decimal, now: float) -> str | None:
    """Which exit the price and clock call for: the shared exit rule on one tick (`bridge.exits`).

    A long position exits by selling, so the rule sees the best bid (what a sell gets), not the mid."""
    held = now - position.opened_at if position.opened_at is not None else None
    hit, _ = exits.check(position.signal, position.entry_price, position.peak, bid, bid, bid, held)
    return hit.reason if hit is not None else None


def grid_orders(signal: Signal, entry_price: Decimal,
                scale: Decimal = Decimal(1)) -> list[tuple[int, Decimal, Decimal]]:
    """The DCA grid of an entry filled at `entry_price`: (level, limit price, quote) for each resting limit buy,
    level i at entry x (1 - i x spacing / 100), as the seed's evaluator replays it. `scale` follows a config
    quote_amount that overrides the signal's amount, so the grid keeps its share of the entry."""
    if not signal.grid_levels or signal.grid_spacing_pct is None or signal.grid_level_quote is None:
        return []
    return [(i, entry_price * (HUNDRED - i * signal.grid_spacing_pct) / HUNDRED, signal.grid_level_quote * scale)
            for i in range(1, signal.grid_levels + 1)
            if i * signal.grid_spacing_pct < HUNDRED]


def fee_parts(fee: TradeFeeBase, side: TradeType, base: str, quote: str, price: Decimal,
              amount: Decimal) -> tuple[str, Decimal, Decimal]:
    """(asset, amount in that asset, of which taken from the base coin the position holds) of one fill's fee.

    A percent fee deducted from a buy's returns is taken in the base coin (Binance); otherwise it is in the
    quote asset. A flat fee is in its own token (e.g. BNB). Fees in several tokens at once are reported in
    the first; the quote value (`fee_amount_in_token`) still counts them all."""
    deducted_buy = isinstance(fee, DeductedFromReturnsTradeFee) and side == TradeType.BUY
    base_taken = ZERO
    asset, total = quote, ZERO
    if fee.percent > 0:
        if deducted_buy and fee.percent_token in (None, base):
            asset, total = base, fee.percent * amount
            base_taken = total
        else:
            asset, total = quote, fee.percent * amount * price
    for flat in fee.flat_fees:
        if total == 0 or flat.token == asset:
            asset, total = flat.token, total + flat.amount
        if flat.token == base and deducted_buy:
            base_taken += flat.amount
    return asset, total, base_taken


def instability_pct(samples: list[Decimal]) -> Decimal:
    """(max - min) / min over a window of prices, in percent (seed 000's price stability)."""
    low = min(samples)
    return (max(samples) - low) / low * HUNDRED if low > 0 else HUNDRED


class PriceWindow:
    """The best bid and ask of each traded pair, sampled every `sample_s` from the first ready tick, kept for the
    last `window_s` (and the one sample at or before its start, so the window is known to be covered).

    The stability gate (seed 000) reads it when a signal is claimed: once the bot has run `window_s`, a
    signal is decided on its first tick instead of waiting `window_s` of fresh samples.
    """

    def __init__(self, window_s: float, sample_s: float) -> None:
        self.window_s = window_s
        self.sample_s = sample_s
        self._samples: dict[str, deque[tuple[float, Decimal, Decimal]]] = {}

    def sample(self, pair: str, now: float, bid: Decimal, ask: Decimal) -> None:
        samples = self._samples.setdefault(pair, deque())
        if samples and now - samples[-1][0] < self.sample_s:
            return
        samples.append((now, bid, ask))
        while len(samples) > 1 and samples[1][0] <= now - self.window_s:
            samples.popleft()

    def full(self, pair: str, now: float) -> bool:
        """Whether the samples cover the whole window up to now."""
        samples = self._samples.get(pair)
        return bool(samples) and samples[0][0] <= now - self.window_s

    def instability(self, pair: str) -> Decimal:
        """The larger of the bid's and the ask's (max - min) / min over the window, in percent."""
        samples = self._samples[pair]
        return max(instability_pct([bid for _, bid, _ in samples]), instability_pct([ask for _, _, ask in samples]))


@dataclass
class PendingSignal:
    signal: Signal
    started_at: float


class SignalExecutor(StrategyV2Base):  # pragma: no mutate block (the Clock: tests/integration/executor)
    """Executes claimed signals; see the module docstring."""

    @classmethod
    def init_markets(cls, config: SignalExecutorConfig) -> None:
        cls.markets = {config.connector: set(config.trading_pairs)}

    def __init__(self, connectors: dict[str, Any], config: SignalExecutorConfig,
                 queue_client: SignalQueue | None = None) -> None:
        super().__init__(connectors, config)
        self.config: SignalExecutorConfig = config
        self._secrets = _guard_logs(config)
        self.outbox = Outbox(Path(config.outbox_path.format(consumer=config.consumer)))
        self.worker = QueueWorker(queue_client or self._queue_from_environment(), self.outbox, config,
                                  {config.exchange: list(config.trading_pairs)})
        self.pending: dict[UUID, PendingSignal] = {}
        self.positions: dict[UUID, Position] = {}
        self.order_index: dict[str, UUID] = {}  # client order id -> signal id
        self.recently_closed: dict[UUID, Position] = {}  # for events that arrive after the close
        self.seen: set[UUID] = set()
        self.fates: deque[tuple[str, str, str]] = deque(maxlen=10)  # (signal, pair, fate)
        self.rejections: Counter[str] = Counter()
        self.health: Counter[str] = Counter()
        self.closed_trades: Counter[str] = Counter()
        self.prices = PriceWindow(config.stability_window_s, config.stability_sample_s)
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
        if self.ready_to_trade:
            self.worker.ready.set()  # the tick that finds every connector ready (on_tick comes from the next)
        else:
            self.worker.progress = self._progress()

    # --- the clock ----------------------------------------------------------------------------------

    def on_tick(self) -> None:
        now = self.current_timestamp
        self.worker.ready.set()
        self._sample_prices(now)
        self._take_restored(now)
        self._take_close_requests(now)
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

    def _ack(self, signal: Signal, status: str, reason: str | None) -> None:
        self.outbox.append("ack", {"signal_id": str(signal.id), "consumer": self.config.consumer, "status": status,
                                   "reason": reason})

    def _reject(self, signal: Signal, gate: str, reason: str) -> None:
        self.rejections[gate] += 1
        self.fates.append((str(signal.id)[:8], signal.symbol, f"rejected: {reason}"))
        self._ack(signal, "rejected", reason)
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
                                entry_fee_base=_dec(row.get("entry_fee_base") or 0),
                                exit_amount=_dec(row["exit_amount"]), exit_quote=_dec(row["exit_quote"]),
                                fees_quote=_dec(row["fees_quote"]), base_fee_quote=_dec(row.get("base_fee_quote") or 0),
                                stuck=row.get("stuck_reason"))
            # the persisted trailing peak keeps a trailing stop armed across the restart
            position.peak = max(_dec(row.get("trailing_peak") or 0), position.entry_price)
            position.peak_reported = position.peak
            self.positions[signal.id] = position
            active = self._live_order_ids()
            for stored in row["open_orders"] or []:
                order = TrackedOrder(stored["client_order_id"], stored["purpose"],
                                     TradeType.BUY if stored["side"] == "buy" else TradeType.SELL,
                                     _dec(stored["amount"] or 0), _dec(stored["price"]) if stored["price"] else None,
                                     _timestamp(stored["created_at"]) or now, filled=_dec(stored["filled_amount"]))
                position.orders[order.order_id] = order
                self.order_index[order.order_id] = signal.id
                if order.order_id not in active and not self._reconcile_on_exchange(position, order, now):
                    # the connector forgot it while we were down, and cannot ask the exchange
                    self.health["lost_reconciled"] += 1
                    self._report_order(position, order, "order_failed", now, reason="lost across a restart")
                    self._finish_order(position, order, now)
            self._restore_grid(position)
            self.fates.append((str(signal.id)[:8], signal.symbol, "restored after a restart"))
            if signal.id in self.positions and position.entry_amount <= 0 and not position.open_orders("entry"):
                self._close(position, now, traded=False)

    def _restore_grid(self, position: Position) -> None:
        """A restored entry that filled had its grid placed already (on the tick of its fill): the resting limit
        buys it still has are the grid's levels, nearest the entry first; none is placed again."""
        if position.signal.grid_levels is None or position.entry_amount <= 0:
            return
        position.grid_placed = True
        resting = sorted((o for o in position.open_orders("entry") if o.price is not None),
                         key=lambda o: o.price or ZERO, reverse=True)
        for level, order in enumerate(resting, start=1):
            order.level = level

    def _live_order_ids(self) -> set[str]:
        """Client ids of the orders the connector still works on. After a restart the strategy's own tracker is
        empty, so ask the connector (`in_flight_orders` on real connectors, resting limits on paper ones)."""
        connector = self._connector()
        live = {o.client_order_id for o in self.get_active_orders(self.config.connector)}
        try:
            live |= set(connector.in_flight_orders)
        except NotImplementedError:  # paper connectors
            live |= {o.client_order_id for o in getattr(connector, "limit_orders", [])}
        return live

    def _reconcile_on_exchange(self, position: Position, order: TrackedOrder, now: float) -> bool:
        """Ask the exchange about an order the connector does not track (a restart lost its state, or a market
        order got no final event): hand it to the connector's order tracker, whose status polling
        (`_request_order_status` and the order's trades, on every ExchangePyBase connector) sends the events
        a live order gets: its fills, completion or cancel, or a failure once the exchange says it does not
        know it. True while that is under way (for market_order_timeout_s); False where the connector cannot
        ask (paper connectors) or the exchange never answered: the caller then treats the order as lost."""
        connector = self._connector()
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

    def _take_close_requests(self, now: float) -> None:
        while True:
            try:
                signal_id, who = self.worker.close_requests.get_nowait()
            except queue.Empty:
                return
            position = self.positions.get(signal_id)
            if position is None or position.manual_close:
                continue  # not ours any more, or asked already
            position.manual_close = who
            position.stuck, position.failures, position.retry_at = None, 0, 0.0  # a person asked: try again
            self.fates.append((str(signal_id)[:8], position.signal.symbol, f"close requested by {who}"))
            for order in position.open_orders():  # then exit at market once nothing rests (_manage_positions)
                if order.cancel_sent_at is None:
                    self._cancel(position, order, now, None)

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
            if signal.kind == "exit":
                self._take_exit_signal(signal, now)
                continue
            if reason := self._gates(signal, now):
                self._reject(signal, *reason)
                continue
            self.pending[signal.id] = PendingSignal(signal, now)

    def _take_exit_signal(self, signal: Signal, now: float) -> None:
        """The controller's strategy exit (CHANNEL at the band's top, RSI exits): close the entry's position at
        market, once, reason strategy_exit. The exit signal itself is done once the close is under way."""
        if signal.expires_at.timestamp() <= now:
            self._reject(signal, "expired", f"expired at {signal.expires_at.isoformat()}")
            return
        if signal.entry_signal_id in self.pending:  # the entry is still being sampled: it is not made at all
            entry = self.pending.pop(signal.entry_signal_id).signal
            self._reject(entry, "strategy_exit", f"exit signal {signal.id} came before the entry was placed")
            self._ack(signal, "closed", None)
            self.worker.slots.release()
            return
        position = self.positions.get(signal.entry_signal_id) if signal.entry_signal_id else None
        if position is None or position.closed:
            self._reject(signal, "no_position", f"no open position of entry {signal.entry_signal_id} on this bot")
            return
        if not position.manual_close and position.exit_reason is None:
            position.manual_close, position.close_reason = f"exit signal {signal.id}", "strategy_exit"
            position.stuck, position.failures, position.retry_at = None, 0, 0.0
            self.fates.append((str(position.signal.id)[:8], position.signal.symbol, "strategy exit signal"))
            for order in position.open_orders():  # then exit at market once nothing rests (_manage_positions)
                if order.cancel_sent_at is None:
                    self._cancel(position, order, now, None)
        self._ack(signal, "closed", None)  # an exit signal holds no position of its own: its slot is free again
        self.worker.slots.release()
        self.worker.wake()

    def _gates(self, signal: Signal, now: float) -> tuple[str, str] | None:
        """The first gate a claimed signal fails, as (gate, reason); None when it may go on to sampling."""
        if signal.expires_at.timestamp() <= now:
            return "expired", f"expired at {signal.expires_at.isoformat()}"
        if signal.side != "buy":
            return "unsupported_side", (f"{signal.side} signals are not traded: {self.config.connector} is spot and "
                                        "this bot only opens long positions")
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
        if problem := self._below_minimum(signal.symbol, amount, ask):
            quote = self.config.quote_amount or signal.quote_amount
            return "below_min_notional", f"an entry of {quote} {signal.symbol.split('-')[1]} is {problem}"
        # the grid's levels rest on the same balance: the entry and every level must fit
        grid_quote = sum((q for _, _, q in grid_orders(signal, ask, self._quote_scale(signal))), ZERO)
        candidate = OrderCandidate(trading_pair=signal.symbol, is_maker=self.config.entry_order_type == "limit",
                                   order_type=self._entry_type(), order_side=TradeType.BUY,
                                   amount=amount + grid_quote / ask, price=ask)
        adjusted = self._connector().budget_checker.adjust_candidate(candidate, all_or_none=True)
        if adjusted.amount <= 0:
            grid = f" and its grid of {grid_quote:.8g} {signal.symbol.split('-')[1]}" if grid_quote else ""
            return "balance", f"balance too small for {amount} {signal.symbol.split('-')[0]} at {ask}{grid}"
        return None

    def _entry_type(self) -> OrderType:
        return OrderType.MARKET if self.config.entry_order_type == "market" else OrderType.LIMIT

    def _quote_scale(self, signal: Signal) -> Decimal:
        return self.config.quote_amount / signal.quote_amount if self.config.quote_amount else Decimal(1)

    def _entry_amount(self, signal: Signal, price: Decimal) -> Decimal:
        quote = self.config.quote_amount or signal.quote_amount
        return self._connector().quantize_order_amount(signal.symbol, quote / price)

    def _sample_prices(self, now: float) -> None:
        """Every traded pair's book into the rolling stability window, on every tick from the first ready one."""
        for pair in self.config.trading_pairs:
            if not self._has_book(pair):
                continue
            bid, ask, _ = self._book(pair)
            if bid > 0 and ask > 0:
                self.prices.sample(pair, now, bid, ask)

    def _check_pending(self, now: float) -> None:
        """Decide each claimed signal on the pair's last stability_window_s of samples (seed 000): on the tick
        it is claimed once the bot has run that long, else when the window fills."""
        for signal_id, pending in list(self.pending.items()):
            signal = pending.signal
            if not self.prices.full(signal.symbol, now):
                continue
            del self.pending[signal_id]
            worst = self.prices.instability(signal.symbol)
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
        self._ack(signal, "executing", None)
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
            if position.closed or position.entry_amount <= 0 or position.stuck:
                continue
            bid = self._exit_price(position)  # what selling the position would get: the barriers' price
            position.peak = max(position.peak, bid)
            self._persist_peak(position, now)
            if not position.busy():
                # before the maker take profit: while grid levels rest, the take profit is taken at market
                self._place_grid(position, now)
            if self._maker_take_profit(position, bid, now) or position.busy():
                continue
            if self._is_flat(position, bid):
                # nothing left that the exchange would take (e.g. restored after its exit filled): done
                if self._cancel_grid(position, now):
                    continue
                position.exit_reason = position.exit_reason or "flat"
                self._close(position, now, traded=True)
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
        connector = self._connector()
        for level, price, quote in grid_orders(position.signal, position.entry_price,
                                               self._quote_scale(position.signal)):
            price = _dec(connector.quantize_order_price(pair, price))
            amount = _dec(connector.quantize_order_amount(pair, quote / price)) if price > 0 else ZERO
            if problem := self._below_minimum(pair, amount, price):
                logger.warning(f"grid level {level} of {position.signal.id} not placed: {amount} at {price} is "
                               f"{problem}")
                continue
            if order_id := self._place(position, "entry", TradeType.BUY, amount, price, now):
                position.orders[order_id].level = level

    def _cancel_grid(self, position: Position, now: float) -> bool:
        """Cancel the grid levels still resting; True while any is open (the exit waits for the confirmations:
        a level that fills meanwhile is sold with the rest)."""
        levels = [o for o in position.open_orders() if o.level is not None]
        for order in levels:
            if order.cancel_sent_at is None:
                self._cancel(position, order, now, None)
        return bool(levels)

    def _exit(self, position: Position, bid: Decimal, now: float) -> None:
        """Sell what the position holds, capped at what the wallet has (fees, other bots, a lagging balance)."""
        amount = self._sellable(position)
        if problem := self._below_minimum(position.signal.symbol, amount, bid):
            base = position.signal.symbol.split("-")[0]
            self._exit_failed(position, f"cannot sell {position.open_amount} {base}: the wallet's {amount} is "
                                        f"{problem}", now)
            return
        self._place(position, "exit", TradeType.SELL, amount, None, now)

    def _is_take_profit_order(self, order: TrackedOrder) -> bool:
        """A resting maker take profit: every other exit is a market order."""
        return self.config.take_profit_order_type == "limit" and order.purpose == "exit" and order.price is not None

    def _maker_take_profit(self, position: Position, bid: Decimal, now: float) -> bool:
        """take_profit_order_type limit: rest a limit sell at the take-profit price once the entry has filled,
        and while it rests watch the other exits; one that is due cancels it and, once the cancel is confirmed
        (`_after_cancel`), sells the rest at market, so there is never a second sell while it may fill.
        True when this tick's exit handling is done here."""
        if self.config.take_profit_order_type != "limit" or position.manual_close:
            return False
        resting = [o for o in position.open_orders("exit") if self._is_take_profit_order(o)]
        if resting:
            order = resting[0]
            reason = barrier_hit(position, bid, now)
            if order.cancel_sent_at is None and reason not in (None, "take_profit"):
                position.exit_reason = reason
                self.health["take_profit_order_cancelled"] += 1
                self._cancel(position, order, now, "market")
            return True
        if position.open_orders() or position.exit_reason is not None or now < position.retry_at:
            return False
        if barrier_hit(position, bid, now) not in (None, "take_profit"):
            return False  # another exit is due now: at market, as without a maker take profit
        pair = position.signal.symbol
        price = self._connector().quantize_order_price(
            pair, position.entry_price * (1 + position.signal.take_profit_pct / HUNDRED))
        amount = self._sellable(position)
        if self._below_minimum(pair, amount, price) is not None:
            return False  # nothing the exchange would rest: the market path handles it (dust, or a failed exit)
        self._place(position, "exit", TradeType.SELL, amount, price, now)
        self.health["take_profit_orders"] += 1
        return True

    def _exit_price(self, position: Position) -> Decimal:
        """The average price a market sell of the whole position would get now: the bid side walked for its size
        (a thin top of book does not trigger a take profit the sell could not realise). A book thinner than the
        position is valued at its deepest bid; with nothing held, the best bid."""
        pair = position.signal.symbol
        bid = self._book(pair)[0]
        amount = max(position.open_amount, ZERO)
        if amount <= 0:
            return bid
        price = _dec(self._connector().get_vwap_for_volume(pair, False, amount).result_price)
        if price.is_finite() and price > 0:
            return min(price, bid)
        bids = [_dec(row.price) for row in self._connector().get_order_book(pair).bid_entries()]
        return min(bids, default=bid)

    def _sellable(self, position: Position) -> Decimal:
        pair = position.signal.symbol
        pending_exit = sum((o.amount - o.filled for o in position.open_orders("exit")), ZERO)
        available = _dec(self._connector().get_available_balance(pair.split("-")[0]))
        amount = min(position.open_amount - pending_exit, available)
        return self._connector().quantize_order_amount(pair, max(amount, ZERO))

    def _rule(self, pair: str) -> tuple[Decimal, Decimal]:
        """(minimum size in base, minimum notional in quote): the connector's trading rule, else the config's."""
        rules = getattr(self._connector(), "trading_rules", None)
        rule = rules.get(pair) if isinstance(rules, dict) else None
        if rule is None:
            return ZERO, self.config.min_notional_quote
        return _dec(rule.min_order_size), _dec(rule.min_notional_size)

    def _below_minimum(self, pair: str, amount: Decimal, price: Decimal) -> str | None:
        """Why the exchange would refuse an order of `amount` at `price` for its size, or None."""
        min_size, min_notional = self._rule(pair)
        if amount <= 0:
            return "an amount that rounds to zero"
        if amount < min_size:
            return f"below the minimum order size {min_size}"
        if amount * price < min_notional:
            return f"worth {amount * price:.8g}, below the minimum notional {min_notional}"
        return None

    def _is_flat(self, position: Position, bid: Decimal | None = None) -> bool:
        """Nothing left to sell: what remains (dust) is below what the exchange trades."""
        pair = position.signal.symbol
        bid = bid if bid is not None else self._book(pair)[0]
        remaining = self._connector().quantize_order_amount(pair, max(position.open_amount, ZERO))
        if remaining <= position.entry_amount * NOISE:
            return True  # the float rounding of a paper exchange's wallet, not a remainder anyone could sell
        return self._below_minimum(pair, remaining, bid) is not None

    def _exit_failed(self, position: Position, error: str, now: float) -> None:
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
        self.fates.append((str(signal.id)[:8], signal.symbol, f"stuck: {error}"))
        self._report(OrderEvent(type="position_stuck", signal_id=signal.id, ts=_iso(now),
                                consumer=self.config.consumer, reason=position.stuck))

    def _persist_peak(self, position: Position, now: float) -> None:
        """Report a risen trailing peak (at most every peak_report_interval_s) so a restart keeps it armed."""
        signal = position.signal
        if signal.trailing_activation_pct is None or position.peak <= position.peak_reported:
            return
        if now - position.peak_reported_at < self.config.peak_report_interval_s:
            return
        position.peak_reported, position.peak_reported_at = position.peak, now
        self._report(OrderEvent(type="position_peak", signal_id=signal.id, ts=_iso(now),
                                consumer=self.config.consumer, peak=position.peak))

    # --- order health (seed 000) --------------------------------------------------------------------

    def _order_health(self, now: float) -> None:
        """Stale, partially filled and lost orders (seed 000). A replacement is placed only once the cancel of
        the order it replaces is confirmed (`did_cancel_order`), so no purpose ever has two live orders."""
        live = self._live_order_ids()
        for position in list(self.positions.values()):
            for order in position.open_orders():
                if order.cancel_sent_at is not None:
                    self._chase_cancel(position, order, live, now)
                    continue
                if self._is_take_profit_order(order) and order.order_id in live:
                    continue  # a maker take profit rests until its price, or until another exit cancels it
                age = now - order.created_at
                if (order.price is None and order.order_id not in live and age >= self.config.market_order_timeout_s
                        and not self._reconcile_on_exchange(position, order, now)):
                    # a market order that never reached a final state: lost (the wallet cap keeps a repeat
                    # exit from selling coins that a lost-but-filled exit already sold)
                    self.health["lost_market_orders"] += 1
                    self._report_order(position, order, "order_failed", now,
                                       reason=f"lost: no final event within {self.config.market_order_timeout_s:g} s")
                    self._finish_order(position, order, now)
                    continue
                if order.price is not None and order.order_id not in live:
                    # a resting order the connector no longer knows and no event told us about
                    order.missing_since = order.missing_since or now
                    if now - order.missing_since >= self.config.lost_order_grace_s:
                        self.health["lost_reconciled"] += 1
                        self._report_order(position, order, "order_failed", now, reason="lost by the connector")
                        self._finish_order(position, order, now)
                    continue
                if order.level is not None:
                    continue  # a grid level rests until it fills or the exit cancels it: never stale, never chased
                if order.filled > 0:
                    # a partial fill is governed by its own age alone (shorter than the stale age by config)
                    if age >= self.config.partial_fill_max_age_s:
                        self.health["partial_fills_handled"] += 1
                        self._cancel(position, order, now,
                                     "market" if self.config.partial_fill_action == "complete" else None)
                elif order.price is not None and age >= self._stale_after(order):
                    self.health["stale_cancelled"] += 1
                    reprice = order.purpose == "exit" or (self.config.stale_entry_action == "reprice"
                                                          and not order.repriced)
                    self._cancel(position, order, now, "reprice" if reprice else None)

    def _cancel(self, position: Position, order: TrackedOrder, now: float, replace: str | None) -> None:
        order.cancel_sent_at = now
        order.replace = replace
        # straight to the connector: its cancel is what a late or lost confirmation comes from
        self._connector().cancel(position.signal.symbol, order.order_id)

    def _chase_cancel(self, position: Position, order: TrackedOrder, live: set[str], now: float) -> None:
        """A cancel not confirmed within lost_order_grace_s: the order is gone (finish it, then replace) or the
        cancel is sent again. Never a replacement while the old order may still fill."""
        if now - order.cancel_sent_at < self.config.lost_order_grace_s:
            return
        if order.order_id not in live and order.price is not None:
            self.health["cancel_unconfirmed_gone"] += 1
            self._report_order(position, order, "order_cancelled", now, reason="cancel not confirmed; order gone")
            self._after_cancel(position, order, now)
        else:
            self.health["cancel_resent"] += 1
            self._cancel(position, order, now, order.replace)

    def _after_cancel(self, position: Position, order: TrackedOrder, ts: float) -> None:
        """The cancel is confirmed: place the replacement it was waiting for, then settle the order."""
        order.done = True
        if order.replace is not None and not position.closed:
            remaining = order.amount - order.filled
            if order.side == TradeType.SELL:
                remaining = self._sellable(position)
            price = None
            if order.replace == "reprice" and order.side == TradeType.BUY:
                price = self._book(position.signal.symbol)[0]
            new_id = self._place(position, order.purpose, order.side, remaining, price, ts)
            if new_id:
                position.orders[new_id].repriced = True
                self.health["replaced"] += 1
        self._finish_order(position, order, ts)

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

    def _closed_position_of(self, order_id: str) -> tuple[Position, TrackedOrder] | None:
        signal_id = self.order_index.get(order_id)
        position = self.recently_closed.get(signal_id) if signal_id else None
        return (position, position.orders[order_id]) if position and order_id in position.orders else None

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
        # a connector may confirm a market order's creation after its fill closed the position: still report it
        if found := self._position_of(order_id) or self._closed_position_of(order_id):
            position, order = found
            self._report_order(position, order, "order_created", ts,
                               order_type="market" if order_type == OrderType.MARKET else "limit",
                               amount=amount, price=price if price.is_finite() and price > 0 else None)

    def did_fill_order(self, event: OrderFilledEvent) -> None:
        found = self._position_of(event.order_id)
        if not found:
            return
        position, order = found
        base, quote = position.signal.symbol.split("-")
        price, amount = _dec(event.price), _dec(event.amount)
        fee_asset, fee_amount, base_taken = fee_parts(event.trade_fee, order.side, base, quote, price, amount)
        # The position first: nothing below (fee valuation) may lose the fill.
        order.filled += amount
        order.fills += 1
        if order.purpose == "entry":
            position.entry_amount += amount
            position.entry_quote += price * amount
            position.entry_fee_base += base_taken
            position.opened_at = position.opened_at or event.timestamp
        else:
            position.exit_amount += amount
            position.exit_quote += price * amount
        fee_quote = self._fee_in_quote(event, fee_asset, fee_amount, base, quote, price, amount)
        if fee_quote is None:
            position.unpriced_fees[fee_asset] = position.unpriced_fees.get(fee_asset, ZERO) + fee_amount
        else:
            position.fees_quote += fee_quote
            if fee_asset == base:
                position.base_fee_quote += fee_quote
        self._report_order(position, order, "order_filled", event.timestamp,
                           # paper connectors leave the trade id empty: one that stays unique across restarts
                           exchange_trade_id=event.exchange_trade_id
                           or f"{order.order_id}-{event.timestamp:.6f}-{event.amount}",
                           price=price, amount=amount, fee_quote=fee_quote or ZERO, fee_asset=fee_asset,
                           fee_amount=fee_amount)

    def _fee_in_quote(self, event: OrderFilledEvent, asset: str, amount: Decimal, base: str, quote: str,
                      price: Decimal, filled: Decimal) -> Decimal | None:
        """The fee valued in quote; None when it is in a third asset with no rate (it is kept in its own asset)."""
        if amount == 0 or asset == quote:
            return amount
        if asset == base:
            return amount * price
        try:
            return _dec(event.trade_fee.fee_amount_in_token(event.trading_pair, price, filled, quote))
        except Exception as exc:  # any failure of the rate lookup: the fill is already on the position
            logger.warning(f"fee of {amount} {asset} on order {event.order_id} not converted to {quote}: {exc}")
            return None

    def did_complete_buy_order(self, event: BuyOrderCompletedEvent) -> None:
        self._completed(event.order_id, event.timestamp, event.exchange_order_id)

    def did_complete_sell_order(self, event: SellOrderCompletedEvent) -> None:
        if (found := self._position_of(event.order_id)) and self._is_take_profit_order(found[1]):
            found[0].exit_reason = "take_profit"  # the maker take profit filled (even if a cancel came too late)
        self._completed(event.order_id, event.timestamp, event.exchange_order_id)

    def _completed(self, order_id: str, ts: float, exchange_order_id: str | None) -> None:
        if found := self._position_of(order_id):
            position, order = found
            self._report_order(position, order, "order_completed", ts, exchange_order_id=exchange_order_id)
            self._finish_order(position, order, ts)

    def did_cancel_order(self, event: OrderCancelledEvent) -> None:
        if found := self._position_of(event.order_id):
            position, order = found
            if order.done:
                return  # settled already (a cancel confirmed after we saw the order gone)
            self._report_order(position, order, "order_cancelled", event.timestamp)
            self._after_cancel(position, order, event.timestamp)

    def did_fail_order(self, event: MarketOrderFailureEvent) -> None:
        if found := self._position_of(event.order_id):
            position, order = found
            error = event.error_message or "order failed"
            self._report_order(position, order, "order_failed", event.timestamp, reason=error)
            self._finish_order(position, order, event.timestamp)
            if order.purpose == "exit" and order.filled == 0 and not position.closed:
                self._exit_failed(position, error, event.timestamp)

    def _finish_order(self, position: Position, order: TrackedOrder, ts: float) -> None:
        order.done = True
        if order.purpose == "exit" and order.filled > 0:
            position.failures = 0
        if order.purpose == "entry" and not position.open_orders("entry") and position.entry_amount <= 0:
            self._close(position, ts, traded=False)  # the entry never filled: nothing to manage
        elif order.purpose == "exit" and not position.open_orders("exit"):
            if position.exit_reason and self._is_flat(position):
                self._close(position, ts, traded=True)
            elif position.open_amount > 0:
                position.exit_reason = None  # an exit that did not complete: the barriers decide again

    def _close(self, position: Position, ts: float, traded: bool) -> None:
        signal = position.signal
        position.closed = True
        del self.positions[signal.id]
        self.recently_closed[signal.id] = position
        while len(self.recently_closed) > 100:
            self.recently_closed.pop(next(iter(self.recently_closed)))
        if traded:
            # Net of every fee. A fee taken in the base coin is already out of what was sold, so only fees
            # paid in quote (or valued from a third asset) are subtracted; dust stays in the wallet and is
            # valued at the exit price, so the P&L is the wallet's change.
            dust = max(position.open_amount, ZERO)
            exit_price = (position.exit_quote / position.exit_amount if position.exit_amount > 0
                          else self._book(signal.symbol)[0])
            pnl = (position.exit_quote - position.entry_quote - (position.fees_quote - position.base_fee_quote)
                   + dust * exit_price)
            pnl_pct = pnl / position.entry_quote * HUNDRED if position.entry_quote else ZERO
            self._report(OrderEvent(
                type="position_closed", signal_id=signal.id, ts=_iso(ts), consumer=self.config.consumer,
                exchange=signal.exchange, symbol=signal.symbol, side="buy", amount=position.entry_amount,
                entry_price=position.entry_price, exit_price=exit_price, fees_quote=position.fees_quote,
                pnl_quote=pnl, pnl_pct=pnl_pct, exit_reason=position.exit_reason, dust_amount=dust,
                opened_at=_iso(position.opened_at or ts), closed_at=_iso(ts)))
            self.closed_trades[position.exit_reason or "unknown"] += 1
            self.fates.append((str(signal.id)[:8], signal.symbol, f"closed: {position.exit_reason} {pnl:+.4f}"))
        else:
            self.fates.append((str(signal.id)[:8], signal.symbol, "closed: entry not filled"))
        self._ack(signal, "closed", None)
        self.worker.slots.release()
        self.worker.wake()

    # --- reporting ------------------------------------------------------------------------------------

    def _progress(self) -> dict[str, Any]:
        # Progress, not liveness: only what changes when the bot does something (claims, trades, closes).
        return {"claimed": self.worker.stats["claimed"], "open_positions": len(self.positions),
                "pending": len(self.pending), "outbox": len(self.outbox),
                "queue_breaker": self.worker.breaker.state.value, "rejections": dict(self.rejections),
                "order_health": dict(self.health), "closed": dict(self.closed_trades),
                "ready": self.ready_to_trade, "stuck": sum(1 for p in self.positions.values() if p.stuck)}

    def format_status(self) -> str:
        # the queue's errors and the connector's exit errors may carry a key or a URL with its password
        return redact(self._status_text(), self._secrets)

    def _status_text(self) -> str:
        if not self.ready_to_trade:
            waiting = ", ".join(name for name, c in self.connectors.items() if not c.ready)
            return (f"waiting for {waiting} to be ready: no signal is claimed until then\n"
                    f"queue: breaker {self.worker.breaker.state.value}, outbox {len(self.outbox)} pending, "
                    f"claimed {self.worker.stats['claimed']}")
        lines = [f"queue: breaker {self.worker.breaker.state.value}, outbox {len(self.outbox)} pending, "
                 f"claimed {self.worker.stats['claimed']}, delivered {self.worker.stats['delivered']}"
                 + (f", last error: {self.worker.last_error}" if self.worker.last_error else "")]
        lines.append(f"open positions ({len(self.positions)}):")
        for position in self.positions.values():
            _, _, mid = self._book(position.signal.symbol)
            unrealised = (mid - position.entry_price) * position.open_amount
            lines.append(f"  {position.signal.symbol} {position.signal.strategy} amount {position.open_amount} "
                         f"entry {position.entry_price:.8g} mid {mid:.8g} unrealised {unrealised:+.4f}"
                         + (f" STUCK: {position.stuck}" if position.stuck else ""))
        lines.append("last signals: " + ("; ".join(f"{s} {p} {f}" for s, p, f in self.fates) or "none"))
        lines.append("rejections by gate: " + (", ".join(f"{g} {n}" for g, n in self.rejections.items()) or "none"))
        lines.append("order health: " + (", ".join(f"{k} {n}" for k, n in self.health.items()) or "nothing to do"))
        return "\n".join(lines)


class ScriptRedactor(RedactingFilter):
    """The script's redacting filter: a restarted script replaces it instead of stacking another (found by
    class name, since Hummingbot reloads the script module and with it this class)."""


def _guard_logs(config: SignalExecutorConfig) -> tuple[str, ...]:
    """Mask the queue's credentials, and anything that looks like a secret, in every log line from now on.

    Attached to every handler Hummingbot has set up (its log file and log pane, on the root logger and any
    other) and to this script's loggers, so a secret inside an exception text (a queue reply, a connector
    error, a traceback the clock logs) never reaches a log. Returns the secrets, for the status text."""
    secrets = tuple(os.environ.get(name, "") for name in (config.queue_url_env, config.queue_key_env,
                                                          config.queue_token_env))
    redactor = ScriptRedactor(s for s in secrets if s)
    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    for target in [logger, SignalExecutor.logger(), *handlers.values()]:
        for old in [f for f in target.filters if type(f).__name__ == ScriptRedactor.__name__]:
            target.removeFilter(old)
        target.addFilter(redactor)
    return tuple(part for s in secrets if s for part in secret_parts(s))


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
