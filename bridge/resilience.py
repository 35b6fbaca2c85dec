"""Resilience primitives for every external call: error kinds, retries with backoff, circuit breakers,
rate limiting and per-endpoint statistics.

Only retryable kinds are retried (timeouts, connection failures, rate limits, server errors, malformed
responses); an auth failure or another 4xx is returned to the caller at once, because trying again
cannot help. Only idempotent calls may be retried: the caller decides, by using `retry_call` or not
(or by the `idempotent` argument of `ResilientCaller.call`).

`ResilientCaller` puts the pieces together for one external dependency (an exchange, a database API):
a token bucket shared by all its endpoints, a circuit breaker and statistics per endpoint, retries for
idempotent calls; `health()` returns every state and counter for a health report.

Every clock, sleep and random source is injectable, so tests run on simulated time.
Standard library only: the Hummingbot side uses this module too.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)


class ErrorKind(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # DNS, refused, reset
    RATE_LIMIT = "rate_limit"  # 429, 418
    SERVER = "server"          # 5xx
    AUTH = "auth"              # 401, 403
    CLIENT = "client"          # other 4xx: the request itself is wrong
    MALFORMED = "malformed"    # a response that does not parse or lacks what it must hold
    CIRCUIT_OPEN = "circuit_open"  # refused locally: the endpoint's circuit breaker is open (see CircuitOpen)


RETRYABLE = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.RATE_LIMIT, ErrorKind.SERVER,
                       ErrorKind.MALFORMED})


class CallError(Exception):
    """A failed external call, with its kind; `retry_after` is the server's Retry-After, in seconds."""

    def __init__(self, kind: ErrorKind, message: str, *, endpoint: str = "", status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.endpoint = endpoint
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        code = f" (HTTP {self.status})" if self.status else ""
        return f"{where}{self.kind.value}{code}: {self.args[0]}"


def kind_of_status(status: int) -> ErrorKind | None:
    """The error kind of an HTTP status, or None for success."""
    if status < 400:
        return None
    if status in (429, 418):
        return ErrorKind.RATE_LIMIT
    if status in (401, 403):
        return ErrorKind.AUTH
    if status in (408, 504):
        return ErrorKind.TIMEOUT
    if status >= 500:
        return ErrorKind.SERVER
    return ErrorKind.CLIENT


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (HTTP dates are rare from APIs; ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    base_s: float = 1.0
    cap_s: float = 60.0
    tries: int = 5

    def __post_init__(self) -> None:
        if self.tries < 1 or self.base_s < 0 or self.cap_s < self.base_s:
            raise ValueError(f"invalid retry policy: {self}")

    def delay(self, attempt: int, rng: Callable[[], float] = random.random, retry_after: float | None = None) -> float:
        jittered = rng() * min(self.cap_s, self.base_s * 2**attempt)
        if retry_after is not None:
            # The server said when; never sooner than that, never past our cap.
            return min(self.cap_s, max(jittered, retry_after))
        return jittered


def retry_call[T](
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Call `fn` (which raises CallError on failure) up to `policy.tries` times; re-raise the last error.

    Use it only for idempotent calls.
    """
    for attempt in range(policy.tries):
        try:
            return fn()
        except CallError as exc:
            if not exc.retryable or attempt == policy.tries - 1:
                raise
            wait = policy.delay(attempt, rng, exc.retry_after)
            logger.warning("call failed, retrying", extra={"endpoint": exc.endpoint, "kind": exc.kind.value,
                                                           "attempt": attempt + 1, "wait_s": round(wait, 3)})
            sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")


# --- circuit breaker -------------------------------------------------------------------------------

# Kinds that say the endpoint itself is unwell, and so count towards opening its breaker. CLIENT and AUTH
# do not: the endpoint answered, and the request or its credentials are what is wrong. Counting them would
# let one caller's bad symbol cut every other caller off from a healthy endpoint.
UNHEALTHY = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.RATE_LIMIT, ErrorKind.SERVER,
                       ErrorKind.MALFORMED})


class BreakerState(StrEnum):
    CLOSED = "closed"        # calls pass
    OPEN = "open"            # calls are refused until the next probe is due
    HALF_OPEN = "half_open"  # one probe call is in flight; its outcome closes or re-opens the breaker


class CircuitOpen(CallError):
    """A call refused without being made, because the endpoint's breaker is open.

    Not retryable: the breaker, not a retry loop, decides when the endpoint is tried again
    (`retry_in_s` says when the next probe is due).
    """

    def __init__(self, endpoint: str, retry_in_s: float) -> None:
        super().__init__(ErrorKind.CIRCUIT_OPEN, f"circuit breaker open, next probe in {retry_in_s:.1f} s",
                         endpoint=endpoint)
        self.retry_in_s = retry_in_s


class CircuitBreaker:
    """CLOSED → OPEN after `failure_threshold` consecutive unhealthy failures; OPEN refuses calls at once.

    When the wait is over, one probe call is let through (HALF_OPEN): success closes the breaker, an
    unhealthy failure opens it again with the wait doubled (capped at `max_probe_after_s`). Each opening
    before the breaker has been healthy for `forget_after_s` (CLOSED, no failure) doubles the wait again,
    so a flapping endpoint is tried less and less often; after that long healthy the wait is back to
    `probe_after_s`. CLIENT and AUTH errors neither count as failures nor as successes (see UNHEALTHY).

    Use `allow()` before the call and `record_success()` / `record_failure(kind)` / `release()` after
    it, or `call(fn)` for all three. Thread-safe.
    """

    def __init__(self, name: str, failure_threshold: int = 5, probe_after_s: float = 120.0,
                 max_probe_after_s: float = 3600.0, forget_after_s: float = 1800.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failure_threshold < 1 or probe_after_s <= 0 or max_probe_after_s < probe_after_s or forget_after_s < 0:
            raise ValueError(f"invalid circuit breaker settings for {name!r}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.probe_after_s = probe_after_s
        self.max_probe_after_s = max_probe_after_s
        self.forget_after_s = forget_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0                     # consecutive unhealthy failures while CLOSED
        self._escalation = 0                   # openings since the breaker was last healthy for forget_after_s
        self._wait_s = probe_after_s           # the current (or last) open period
        self._opened_at: float | None = None
        self._probe_started: float | None = None
        self._healthy_since = clock()
        self.times_opened = 0
        self.refused = 0

    # --- reading -------------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._forget(self._clock())
            return self._state

    def would_allow(self) -> bool:
        """Whether a call made now would be let through (without letting one through)."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            return self._admission(now) is None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            self._forget(now)
            next_probe = self._admission(now) if self._state is not BreakerState.CLOSED else None
            return {
                "state": self._state.value,
                "consecutive_failures": self._failures,
                "failure_threshold": self.failure_threshold,
                "open_wait_s": self._wait_s,
                "next_wait_s": self._next_wait(),
                "next_probe_in_s": round(next_probe, 3) if next_probe is not None else 0.0,
                "times_opened": self.times_opened,
                "refused": self.refused,
                "healthy_for_s": round(now - self._healthy_since, 3) if self._state is BreakerState.CLOSED else 0.0,
            }

    # --- the call protocol ---------------------------------------------------------------------------

    def allow(self) -> None:
        """Let a call through, or raise CircuitOpen. Admitting a call into an open breaker makes it the probe."""
        with self._lock:
            now = self._clock()
            self._forget(now)
            remaining = self._admission(now)
            if remaining is not None:
                self.refused += 1
                raise CircuitOpen(self.name, remaining)
            if self._state is not BreakerState.CLOSED:
                if self._state is BreakerState.OPEN:
                    logger.info("circuit breaker half-open, probing", extra={"breaker": self.name})
                self._state = BreakerState.HALF_OPEN
                self._probe_started = now

    def record_success(self) -> None:
        with self._lock:
            now = self._clock()
            if self._state is not BreakerState.CLOSED:
                logger.warning("circuit breaker closed: the probe succeeded",
                               extra={"breaker": self.name, "was_open_s": round(now - (self._opened_at or now), 3)})
                self._healthy_since = now
            self._state = BreakerState.CLOSED
            self._failures = 0
            self._opened_at = None
            self._probe_started = None

    def record_failure(self, kind: ErrorKind) -> None:
        with self._lock:
            now = self._clock()
            self._forget(now)
            if kind not in UNHEALTHY:
                self._probe_started = None  # says nothing about the endpoint: the next call may probe
                return
            if self._state is BreakerState.HALF_OPEN:
                self._open(now, reason=f"probe failed: {kind.value}")
            elif self._state is BreakerState.CLOSED:
                self._failures += 1
                self._healthy_since = now
                if self._failures >= self.failure_threshold:
                    self._open(now, reason=f"{self._failures} consecutive failures, last: {kind.value}")
            # OPEN: a call admitted before the breaker opened, finishing late; it changes nothing.

    def release(self) -> None:
        """End an admitted call without a verdict (it failed in our own code, not at the endpoint)."""
        with self._lock:
            self._probe_started = None

    def call[T](self, fn: Callable[[], T]) -> T:
        """Call `fn` (raising CallError on failure) through the breaker."""
        self.allow()
        try:
            result = fn()
        except CallError as exc:
            self.record_failure(exc.kind)
            raise
        except BaseException:
            self.release()
            raise
        self.record_success()
        return result

    # --- internals (the lock is held) ----------------------------------------------------------------

    def _next_wait(self) -> float:
        return min(self.max_probe_after_s, self.probe_after_s * 2 ** self._escalation)

    def _open(self, now: float, reason: str) -> None:
        self._wait_s = self._next_wait()
        self._escalation += 1
        self._state = BreakerState.OPEN
        self._opened_at = now
        self._probe_started = None
        self._failures = 0
        self.times_opened += 1
        logger.warning("circuit breaker opened", extra={"breaker": self.name, "reason": reason,
                                                        "probe_in_s": self._wait_s})

    def _forget(self, now: float) -> None:
        if (self._state is BreakerState.CLOSED and self._escalation
                and now - self._healthy_since >= self.forget_after_s):
            self._escalation = 0
            self._wait_s = self.probe_after_s

    def _admission(self, now: float) -> float | None:
        """None if a call may go now, else the seconds until one may."""
        if self._state is BreakerState.CLOSED:
            return None
        if self._state is BreakerState.OPEN:
            due = (self._opened_at or now) + self._wait_s
            return None if now >= due else due - now
        # HALF_OPEN: one probe at a time. A probe that never reported back (its thread died) stops
        # blocking after probe_after_s, so the breaker cannot stay half-open for ever.
        if self._probe_started is None or now - self._probe_started >= self.probe_after_s:
            return None
        return self._probe_started + self.probe_after_s - now


# --- rate limiting ---------------------------------------------------------------------------------

class TokenBucket:
    """A token bucket: `rate_per_s` tokens a second, at most `burst` saved up. Thread-safe.

    `clock` and `sleep` must agree (a simulated sleep must advance the simulated clock), since
    `acquire` sleeps until the clock says a token is there.
    """

    def __init__(self, rate_per_s: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate_per_s > 0 or burst < 1:
            raise ValueError(f"invalid token bucket: rate_per_s={rate_per_s}, burst={burst}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._updated = clock()
        self._held_until = -math.inf
        self.waited_s = 0.0  # total time callers spent waiting here

    @classmethod
    def from_interval_ms(cls, interval_ms: float, burst: float = 1.0, clock: Callable[[], float] = time.monotonic,
                         sleep: Callable[[float], None] = time.sleep) -> TokenBucket:
        """A limiter from an exchange's published spacing between requests (ccxt's `exchange.rateLimit`)."""
        if not interval_ms > 0:
            raise ValueError(f"invalid request interval: {interval_ms} ms")
        return cls(1000.0 / interval_ms, burst, clock, sleep)

    def try_acquire(self, tokens: float = 1) -> bool:
        """Take `tokens` if they are there now; never wait."""
        with self._lock:
            if self._wait_for(tokens, self._clock()) > 0:
                return False
            self._tokens -= tokens
            return True

    def acquire(self, tokens: float = 1) -> float:
        """Take `tokens`, sleeping until they are there; return the seconds waited."""
        if tokens > self.burst:
            raise ValueError(f"cannot take {tokens} tokens from a bucket of {self.burst}")
        waited = 0.0
        while True:
            with self._lock:
                wait = self._wait_for(tokens, self._clock())
                if wait <= 0:
                    self._tokens -= tokens
                    self.waited_s += waited
                    return waited
            self._sleep(wait)
            waited += wait

    def hold(self, seconds: float) -> None:
        """Let nothing through for `seconds` (the server said Retry-After), whatever the bucket holds."""
        with self._lock:
            self._held_until = max(self._held_until, self._clock() + seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            self._refill(now)
            return {"rate_per_s": self.rate_per_s, "burst": self.burst, "tokens": round(self._tokens, 3),
                    "held_for_s": round(max(0.0, self._held_until - now), 3), "waited_s": round(self.waited_s, 3)}

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._updated) * self.rate_per_s)
        self._updated = now

    def _wait_for(self, tokens: float, now: float) -> float:
        self._refill(now)
        if now < self._held_until:
            return self._held_until - now
        missing = tokens - self._tokens
        # A hair of tolerance: after sleeping exactly the computed time, float rounding must not cost a second nap.
        return 0.0 if missing <= 1e-9 else missing / self.rate_per_s


# --- statistics ------------------------------------------------------------------------------------

class EndpointStats:
    """Counters of one endpoint: attempts, outcomes by kind, rate-limit hits, refusals, the last error and
    the call rate over a sliding window. Thread-safe."""

    def __init__(self, endpoint: str, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.endpoint = endpoint
        self.window_s = window_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._recent: deque[float] = deque()
        self.calls = 0
        self.successes = 0
        self.failures: dict[ErrorKind, int] = {}
        self.rate_limit_hits = 0
        self.refused = 0
        self.retries = 0
        self.last_error: str | None = None
        self.last_error_kind: ErrorKind | None = None
        self.last_error_at: float | None = None  # wall-clock epoch seconds

    def record_call(self) -> None:
        """A call (one attempt) goes out."""
        with self._lock:
            now = self._clock()
            self.calls += 1
            self._recent.append(now)
            self._prune(now)

    def record_success(self) -> None:
        with self._lock:
            self.successes += 1

    def record_failure(self, error: CallError) -> None:
        with self._lock:
            self.failures[error.kind] = self.failures.get(error.kind, 0) + 1
            if error.kind is ErrorKind.RATE_LIMIT:
                self.rate_limit_hits += 1
            self.last_error = str(error)[:500]
            self.last_error_kind = error.kind
            self.last_error_at = self._wall_clock()

    def record_refused(self) -> None:
        with self._lock:
            self.refused += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def calls_per_minute(self) -> float:
        with self._lock:
            self._prune(self._clock())
            return len(self._recent) * 60.0 / self.window_s

    def snapshot(self) -> dict[str, Any]:
        per_minute = self.calls_per_minute()
        with self._lock:
            last = None
            if self.last_error is not None:
                at = datetime.fromtimestamp(self.last_error_at or 0.0, UTC).isoformat()
                last = {"message": self.last_error, "kind": str(self.last_error_kind), "at": at}
            return {
                "calls": self.calls,
                "successes": self.successes,
                "failures": {str(kind): n for kind, n in sorted(self.failures.items())},
                "failures_total": sum(self.failures.values()),
                "rate_limit_hits": self.rate_limit_hits,
                "refused": self.refused,
                "retries": self.retries,
                "calls_per_minute": round(per_minute, 3),
                "last_error": last,
            }

    def _prune(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - self.window_s:
            self._recent.popleft()


# --- one external dependency -----------------------------------------------------------------------

class ResilientCaller:
    """Every call to one external dependency: a rate limiter shared by its endpoints, a circuit breaker
    and statistics per endpoint, and retries with backoff for calls the caller declares idempotent.

    A retry is not attempted once the failure has opened the endpoint's breaker: the error is raised,
    and later calls get CircuitOpen until the probe is due.
    """

    def __init__(self, name: str, *, limiter: TokenBucket | None = None, retry: RetryPolicy | None = None,
                 failure_threshold: int = 5, probe_after_s: float = 120.0, max_probe_after_s: float = 3600.0,
                 forget_after_s: float = 1800.0, stats_window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 rng: Callable[[], float] = random.random, wall_clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.wall_clock = wall_clock
        self._breaker_settings = {"failure_threshold": failure_threshold, "probe_after_s": probe_after_s,
                                  "max_probe_after_s": max_probe_after_s, "forget_after_s": forget_after_s}
        self._stats_window_s = stats_window_s
        self._lock = threading.Lock()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._stats: dict[str, EndpointStats] = {}

    def breaker(self, endpoint: str) -> CircuitBreaker:
        """The endpoint's breaker (made on first use)."""
        with self._lock:
            if endpoint not in self._breakers:
                self._breakers[endpoint] = CircuitBreaker(f"{self.name}/{endpoint}", clock=self.clock,
                                                          **self._breaker_settings)
            return self._breakers[endpoint]

    def stats(self, endpoint: str) -> EndpointStats:
        """The endpoint's statistics (made on first use)."""
        with self._lock:
            if endpoint not in self._stats:
                self._stats[endpoint] = EndpointStats(endpoint, self._stats_window_s, self.clock, self.wall_clock)
            return self._stats[endpoint]

    def available(self, endpoint: str) -> bool:
        """Whether a call to `endpoint` made now would be let through by its breaker."""
        return self.breaker(endpoint).would_allow()

    def call[T](self, endpoint: str, fn: Callable[[], T], idempotent: bool) -> T:
        """Call `fn` (which raises CallError on failure); retry it only if `idempotent`.

        Raises CircuitOpen without calling when the endpoint's breaker is open.
        """
        breaker = self.breaker(endpoint)
        stats = self.stats(endpoint)
        tries = self.retry.tries if idempotent else 1
        for attempt in range(tries):
            try:
                return self._attempt(endpoint, fn, breaker, stats)
            except CircuitOpen:
                raise
            except CallError as exc:
                if not exc.retryable or attempt == tries - 1 or not breaker.would_allow():
                    raise
                wait = self.retry.delay(attempt, self.rng, exc.retry_after)
                stats.record_retry()
                logger.warning("call failed, retrying", extra={"dependency": self.name, "endpoint": endpoint,
                                                               "kind": exc.kind.value, "attempt": attempt + 1,
                                                               "wait_s": round(wait, 3)})
                self.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _attempt[T](self, endpoint: str, fn: Callable[[], T], breaker: CircuitBreaker, stats: EndpointStats) -> T:
        try:
            breaker.allow()
        except CircuitOpen:
            stats.record_refused()
            raise
        try:
            if self.limiter is not None:
                self.limiter.acquire()
            stats.record_call()
            result = fn()
        except CallError as exc:
            if not exc.endpoint:
                exc.endpoint = endpoint
            stats.record_failure(exc)
            breaker.record_failure(exc.kind)
            if exc.kind is ErrorKind.RATE_LIMIT and exc.retry_after and self.limiter is not None:
                self.limiter.hold(exc.retry_after)  # every caller of this dependency backs off, not only this one
            raise
        except BaseException:
            breaker.release()
            raise
        stats.record_success()
        breaker.record_success()
        return result

    def health(self) -> dict[str, Any]:
        """Every breaker state and counter, per endpoint, plus the limiter's state."""
        with self._lock:
            endpoints = sorted(set(self._breakers) | set(self._stats))
        return {
            "dependency": self.name,
            "limiter": self.limiter.snapshot() if self.limiter is not None else None,
            "endpoints": {ep: {"breaker": self.breaker(ep).snapshot(), **self.stats(ep).snapshot()}
                          for ep in endpoints},
        }
