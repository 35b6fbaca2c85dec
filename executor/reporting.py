"""What the executor tells the queue and the person watching: acks and reports through the outbox, the slot a
finished signal frees, the heartbeat's progress and the status text, and the log redaction."""

from __future__ import annotations

import logging
import os
from collections import Counter, deque
from typing import Any

from hummingbot.core.data_type.common import TradeType

from bridge.redaction import RedactingFilter, secret_parts
from bridge.schemas import OrderEvent, Signal
from executor.config import SignalExecutorConfig
from executor.models import Position, TrackedOrder, iso
from executor.outbox import Outbox
from executor.worker import QueueWorker


class Reporter:
    def __init__(self, outbox: Outbox, worker: QueueWorker, config: SignalExecutorConfig) -> None:
        self.outbox = outbox
        self.worker = worker
        self.consumer = config.consumer
        self.fates: deque[tuple[str, str, str]] = deque(maxlen=10)  # (signal, pair, fate)
        self.rejections: Counter[str] = Counter()
        self.closed_trades: Counter[str] = Counter()

    def fate(self, signal: Signal, text: str) -> None:
        self.fates.append((str(signal.id)[:8], signal.symbol, text))

    def ack(self, signal: Signal, status: str, reason: str | None = None) -> None:
        self.outbox.append("ack", {"signal_id": str(signal.id), "consumer": self.consumer, "status": status,
                                   "reason": reason})

    def finished(self, signal: Signal, wake: bool = True) -> None:
        """A claimed signal is done (closed or rejected): its slot is free for the next claim."""
        self.ack(signal, "closed")
        self.free_slot(wake)

    def free_slot(self, wake: bool = True) -> None:
        self.worker.slots.release()
        if wake:
            self.worker.wake()

    def reject(self, signal: Signal, gate: str, reason: str) -> None:
        self.rejections[gate] += 1
        self.fate(signal, f"rejected: {reason}")
        self.ack(signal, "rejected", reason)
        self.free_slot()

    def report(self, event: OrderEvent) -> None:
        """The event exactly as the queue's RPC takes it, written before it is sent."""
        self.outbox.append("report", {"event": event.to_payload()})
        self.worker.wake()

    def report_order(self, position: Position, order: TrackedOrder, kind: str, ts: float, **extra: Any) -> None:
        signal = position.signal
        self.report(OrderEvent(
            type=kind, signal_id=signal.id, ts=iso(ts), consumer=self.consumer,
            client_order_id=order.order_id, exchange=signal.exchange, symbol=signal.symbol,
            side="buy" if order.side == TradeType.BUY else "sell", purpose=order.purpose, **extra))

    def progress(self, positions: dict[Any, Position], pending: int, health: Counter[str],
                 ready: bool) -> dict[str, Any]:
        # Progress, not liveness: only what changes when the bot does something (claims, trades, closes).
        return {"claimed": self.worker.stats["claimed"], "open_positions": len(positions),
                "pending": pending, "outbox": len(self.outbox),
                "queue_breaker": self.worker.breaker.state.value, "rejections": dict(self.rejections),
                "order_health": dict(health), "closed": dict(self.closed_trades),
                "ready": ready, "stuck": sum(1 for p in positions.values() if p.stuck)}

    def queue_line(self, full: bool) -> str:
        worker = self.worker
        line = (f"queue: breaker {worker.breaker.state.value}, outbox {len(self.outbox)} pending, "
                f"claimed {worker.stats['claimed']}")
        if full:
            line += f", delivered {worker.stats['delivered']}" + (
                f", last error: {worker.last_error}" if worker.last_error else "")
        return line

    def status_lines(self, health: Counter[str]) -> list[str]:
        return ["last signals: " + ("; ".join(f"{s} {p} {f}" for s, p, f in self.fates) or "none"),
                "rejections by gate: " + (", ".join(f"{g} {n}" for g, n in self.rejections.items()) or "none"),
                "order health: " + (", ".join(f"{k} {n}" for k, n in health.items()) or "nothing to do")]


class ScriptRedactor(RedactingFilter):
    """The script's redacting filter: a restarted script replaces it instead of stacking another (found by
    class name, so a filter left by an earlier load of this module is found too)."""


def guard_logs(config: SignalExecutorConfig, own: list[logging.Logger]) -> tuple[str, ...]:
    """Mask the queue's credentials, and anything that looks like a secret, in every log line from now on.

    Attached to every handler Hummingbot has set up (its log file and log pane, on the root logger and any
    other) and to the executor's own loggers (`own`), so a secret inside an exception text (a queue reply, a
    connector error, a traceback the clock logs) never reaches a log. Returns the secrets' parts, for the
    status text."""
    secrets = tuple(os.environ.get(name, "") for name in (config.queue_url_env, config.queue_key_env,
                                                          config.queue_token_env))
    redactor = ScriptRedactor(s for s in secrets if s)
    loggers = [logging.getLogger(), *(lg for lg in logging.root.manager.loggerDict.values()
                                      if isinstance(lg, logging.Logger))]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    for target in [*own, *handlers.values()]:
        for old in [f for f in target.filters if type(f).__name__ == ScriptRedactor.__name__]:
            target.removeFilter(old)
        target.addFilter(redactor)
    return tuple(part for s in secrets if s for part in secret_parts(s))
