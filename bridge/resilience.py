"""Resilience primitives for every external call: error kinds, and retries with backoff.

Only retryable kinds are retried (timeouts, connection failures, rate limits, server errors, malformed
responses); an auth failure or another 4xx is returned to the caller at once, because trying again
cannot help. Only idempotent calls may be retried: the caller decides, by using `retry_call` or not.

Standard library only: the Hummingbot side uses this module too.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

logger = logging.getLogger(__name__)


class ErrorKind(StrEnum):
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # DNS, refused, reset
    RATE_LIMIT = "rate_limit"  # 429, 418
    SERVER = "server"          # 5xx
    AUTH = "auth"              # 401, 403
    CLIENT = "client"          # other 4xx: the request itself is wrong
    MALFORMED = "malformed"    # a response that does not parse or lacks what it must hold


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
