"""The queue worker: every network call happens here, never on the clock's thread."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from typing import Any
from uuid import UUID

from bridge.queue_client import ClaimTaken, SignalQueue, wakes_for
from bridge.resilience import CallError, CircuitBreaker, ErrorKind
from bridge.schemas import Signal
from executor.config import SignalExecutorConfig
from executor.outbox import Outbox

logger = logging.getLogger(__name__)


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
        self._claiming = 0  # slots reserved by the claim in flight (a long poll holds them while it waits)
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
        # Long poll (PostgREST, which cannot LISTEN): claims run on a thread of their own, each waiting up to
        # claim_wait_s in the database, so acks, reports and heartbeats never wait behind a claim
        self.long_poll = (config.claim_wait_s > 0 and self._listener_thread is None
                          and callable(getattr(queue_client, "claim_wait", None)))
        self._claim_thread = (threading.Thread(target=self._claim_loop, name="signal-queue-claim", daemon=True)
                              if self.long_poll else None)
        # the threads that use the client; the last one to end closes it (a waiting claim may end last)
        self._users = 2 if self._claim_thread is not None else 1
        self._users_lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._thread.is_alive() or self._stop.is_set()

    def start(self) -> None:
        if not self.started:
            self._thread.start()
            for thread in (self._listener_thread, self._claim_thread):
                if thread is not None:
                    thread.start()

    def stop(self) -> None:
        """Ask the thread to end and return at once; the thread closes the queue client on its way out."""
        self._stop.set()
        self._wake.set()
        if not self._thread.is_alive() and not self._thread.ident:
            self.queue.close()  # never started: nothing else will close it

    def join(self, timeout_s: float = 5.0) -> None:
        self._thread.join(timeout_s)
        for thread in (self._listener_thread, self._claim_thread):
            if thread is not None and thread.ident:
                thread.join(timeout_s)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._done_with_client()

    def _done_with_client(self) -> None:
        with self._users_lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self.queue.close()

    def _may_claim(self) -> bool:
        return len(self.outbox) == 0 and self.restore_done.is_set() and self.ready.is_set()

    def _loop(self) -> None:
        next_claim = next_heartbeat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            self._deliver()
            if not self.restore_done.is_set() and len(self.outbox) == 0:
                self._restore()
            due = now >= next_claim or self.notified.is_set()
            if due and self._may_claim():
                self.notified.clear()  # before the claim: a notification during it claims once more
                if not self.long_poll:
                    self._claim()
                self._poll_close_requests()
                next_claim = now + self.config.claim_interval_s
            if now >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = now + self.config.heartbeat_interval_s
            self._wake.wait(min(self.config.claim_interval_s, 0.2))
            self._wake.clear()

    def _claim_loop(self) -> None:
        """The long-poll thread: one waiting claim after another while claims are allowed."""
        wait_s = self.config.claim_wait_s
        try:
            while not self._stop.is_set():
                if not self._may_claim():
                    self._stop.wait(0.05)  # the other thread is delivering the outbox or restoring
                    continue
                started = time.monotonic()
                claimed = self._claim(wait_s)
                if claimed is None:
                    self._stop.wait(self.config.claim_interval_s)  # failed or refused by the breaker: as the poll
                elif claimed == 0 and time.monotonic() - started < wait_s / 2:
                    # back early with nothing: what it saw was taken by another bot's claim in flight; never spin
                    self._stop.wait(min(self.config.claim_interval_s, 0.2))
        finally:
            self._done_with_client()

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

    def _claim(self, wait_s: float = 0.0) -> int | None:
        """Claim once (waiting up to `wait_s` in the database when > 0); how many signals came, None on error."""
        # With every slot held the claim still runs with max_count 0: the queue then hands out only the exits
        # of this bot's positions (0018), which come on top of max_count and free slots when they close.
        count = self.slots.reserve(self.config.claim_batch)
        self._claiming = count
        self.stats["claim_calls"] += 1
        consumer, lease_s = self.config.consumer, self.config.lease_s
        try:
            if wait_s > 0:
                signals = self._call(lambda: self.queue.claim_wait(  # type: ignore[attr-defined]
                    consumer, count, lease_s, self.markets, wait_s))
            else:
                signals = self._call(lambda: self.queue.claim(consumer, count, lease_s, self.markets))
        except CallError:
            self.slots.release(count)
            return None  # not retried: a lost reply only leaves signals leased until the lease runs out
        finally:
            self._claiming = 0
        exits = sum(1 for s in signals if s.kind == "exit")
        self.slots.release(count - (len(signals) - exits))
        self.slots.hold(exits)  # released when the exit is taken or rejected, like any claimed signal
        for signal in signals:
            self.stats["claimed"] += 1
            self.claimed.put(signal)
        return len(signals)

    def _poll_close_requests(self) -> None:
        """Manual closes (`python -m controller close`) of the signals this bot executes, once per claim cycle."""
        if self.slots.held - self._claiming <= 0:
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
                    self._call(lambda r=record: self.queue.report_payload(r["event"]))
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

