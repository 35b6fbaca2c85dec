"""Self-healing: restart a component that stays unhealthy, with backoff, and say so.

A `Restartable` has a health check (None when fine, else what is wrong) and a `restart()`. The
`Supervisor` checks each one per `tick()` (the loop calls it once per cycle); after
`failures_before_restart` failed checks in a row it restarts the component, then waits
`RetryPolicy.delay(attempt)` (exponential, full jitter) before it may restart it again, so a component
that cannot recover is not restarted in a tight loop. Restarts are counted, logged and handed to
`on_event` (alerts). What to restart and how (e.g. a fresh CcxtSource for the Scanner) is the wiring's
business, not this module's.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pydantic import Field, model_validator

from bridge.redaction import redact
from bridge.resilience import RetryPolicy
from controller.config_base import Frozen
from controller.ops.health import ComponentHealth, Kind, State

logger = logging.getLogger(__name__)


class Restartable(Protocol):
    def check(self) -> str | None:
        """None when healthy, else what is wrong (in words, for the log and the alert)."""
        ...

    def restart(self) -> None:
        """Rebuild the component; raise if that failed."""
        ...


@dataclass(frozen=True)
class Restarter:
    """A `Restartable` made of two functions."""

    check_fn: Callable[[], str | None]
    restart_fn: Callable[[], None]

    def check(self) -> str | None:
        return self.check_fn()

    def restart(self) -> None:
        self.restart_fn()


class SupervisorConfig(Frozen):
    """The `supervisor` section."""

    enabled: bool = True
    failures_before_restart: int = Field(3, ge=1, le=1000, description="failed checks in a row before a restart")
    backoff_base_s: float = Field(30.0, ge=0, description="backoff before a second restart (doubles after)")
    backoff_cap_s: float = Field(1800.0, ge=0, description="longest backoff between restarts")
    reset_after_s: float = Field(3600.0, ge=0, description="healthy this long after a restart: backoff restarts")
    max_restarts: int | None = Field(None, ge=1, description="give up after this many in a row; null: never")

    @model_validator(mode="after")
    def _cap(self) -> SupervisorConfig:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError("backoff_cap_s must be >= backoff_base_s")
        return self

    def policy(self) -> RetryPolicy:
        return RetryPolicy(base_s=self.backoff_base_s, cap_s=self.backoff_cap_s, tries=1)


@dataclass(frozen=True)
class RestartEvent:
    component: str
    reason: str                     # what the failing check said
    attempt: int                    # 1 for the first restart of this episode
    ok: bool                        # the restart itself succeeded
    error: str | None = None        # why the restart failed
    next_restart_in_s: float | None = None
    gave_up: bool = False

    def text(self) -> str:
        """The event in one line, for an alert."""
        if self.gave_up:
            return f"{self.component}: gave up after {self.attempt} restart(s); still failing: {self.reason}"
        outcome = "restarted" if self.ok else f"restart failed ({self.error})"
        wait = f"; next restart no sooner than {self.next_restart_in_s:.0f} s" if self.next_restart_in_s else ""
        return f"{self.component}: {outcome} (attempt {self.attempt}) because {self.reason}{wait}"


@dataclass
class _Supervised:
    name: str
    component: Restartable
    threshold: int
    consecutive: int = 0
    problem: str | None = None
    attempt: int = 0                # restarts in this episode (backoff exponent)
    restarts: int = 0               # total successful restarts
    failed_restarts: int = 0
    next_allowed: float | None = None
    last_restart: float | None = None
    gave_up: bool = False


class Supervisor:
    """Restarts named components that stay unhealthy, with backoff. Call `tick()` from one thread."""

    def __init__(self, config: SupervisorConfig | None = None, *, clock: Callable[[], float] = time.monotonic,
                 rng: Callable[[], float] = random.random,
                 on_event: Callable[[RestartEvent], None] | None = None) -> None:
        self.config = config or SupervisorConfig()
        self.policy = self.config.policy()
        self.clock = clock
        self.rng = rng
        self.on_event = on_event
        self._items: dict[str, _Supervised] = {}

    def add(self, name: str, component: Restartable, *, failures_before_restart: int | None = None) -> None:
        if name in self._items:
            raise ValueError(f"component {name!r} is supervised already")
        self._items[name] = _Supervised(name, component, failures_before_restart or self.config.failures_before_restart)

    def tick(self) -> list[RestartEvent]:
        """Check every component once; restart those past their limit whose backoff is over."""
        if not self.config.enabled:
            return []
        events = []
        for item in self._items.values():
            event = self._tick_one(item)
            if event is not None:
                events.append(event)
                self._emit(event)
        return events

    def _tick_one(self, item: _Supervised) -> RestartEvent | None:
        now = self.clock()
        try:
            problem = item.component.check()
        except Exception as exc:  # a check that raises is a failed check, not a crashed loop
            problem = f"health check raised {type(exc).__name__}: {exc}"
        if problem is None:
            if item.problem is not None:
                logger.info("supervised component healthy again", extra={"component": item.name})
            item.consecutive, item.problem = 0, None
            if item.last_restart is not None and now - item.last_restart >= self.config.reset_after_s:
                item.attempt, item.next_allowed, item.gave_up = 0, None, False
            return None
        item.consecutive += 1
        item.problem = redact(problem)
        if item.gave_up or item.consecutive < item.threshold:
            return None
        if item.next_allowed is not None and now < item.next_allowed:
            return None  # backing off
        if self.config.max_restarts is not None and item.attempt >= self.config.max_restarts:
            item.gave_up = True
            logger.error("supervisor gave up restarting", extra={"component": item.name, "restarts": item.attempt,
                                                                 "reason": item.problem})
            return RestartEvent(item.name, item.problem, item.attempt, ok=False, gave_up=True)
        return self._restart(item, now)

    def _restart(self, item: _Supervised, now: float) -> RestartEvent:
        error = None
        try:
            item.component.restart()
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
        wait = self.policy.delay(item.attempt, self.rng)
        item.attempt += 1
        item.last_restart = now
        item.next_allowed = now + wait
        item.consecutive = 0  # the restarted component gets a fresh judgement
        if error is None:
            item.restarts += 1
            logger.warning("supervised component restarted", extra={
                "component": item.name, "attempt": item.attempt, "reason": item.problem, "next_in_s": round(wait, 1)})
        else:
            item.failed_restarts += 1
            logger.error("supervised component restart failed", extra={
                "component": item.name, "attempt": item.attempt, "error": error, "next_in_s": round(wait, 1)})
        return RestartEvent(item.name, item.problem or "", item.attempt, ok=error is None, error=error,
                            next_restart_in_s=wait)

    def _emit(self, event: RestartEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            logger.exception("supervisor event hook failed", extra={"component": event.component})

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every component's counters and backoff, by name."""
        now = self.clock()
        return {i.name: {"problem": i.problem, "consecutive_failures": i.consecutive, "restarts": i.restarts,
                         "failed_restarts": i.failed_restarts, "attempt": i.attempt, "gave_up": i.gave_up,
                         "next_restart_in_s": round(max(0.0, i.next_allowed - now), 3) if i.next_allowed else 0.0}
                for i in self._items.values()}

    def components(self) -> list[ComponentHealth]:
        """The supervised components as health entries (`HealthReporter(extra=supervisor.components)`)."""
        result = []
        for name, snap in self.snapshot().items():
            item = self._items[name]
            if item.gave_up:
                state, reasons = State.DOWN, (f"gave up after {item.attempt} restart(s): {item.problem}",)
            elif item.problem is not None:
                state, reasons = State.DEGRADED, (f"failing ({item.consecutive} check(s)): {item.problem}",)
            else:
                state, reasons = State.HEALTHY, ()
            result.append(ComponentHealth(f"supervisor:{name}", Kind.SUPERVISOR, state, reasons, detail=snap))
        return result
