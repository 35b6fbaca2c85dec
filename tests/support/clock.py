"""A clock for tests: seconds that move only when told to or when something sleeps."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any


class FakeClock:
    """Call it for the time; `advance` moves it; `sleep` moves it too and is recorded in `sleeps`."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.t += seconds


def wait_for_database_time(db: Any, moment: object, deadline_s: float = 30.0) -> None:
    """Poll until the database's clock is past `moment` (a lease or an expiry it set), with a deadline.

    `db` is a URL or an open connection. The queue's rules run on the database's clock, so that is the clock a
    test waits on: no guessed sleep.
    """
    import time

    import psycopg

    def passed(conn: psycopg.Connection) -> bool:
        return bool(conn.execute("select clock_timestamp() > %s", (moment,)).fetchone()[0])

    deadline = time.monotonic() + deadline_s
    with contextlib.ExitStack() as stack:
        conn = db if isinstance(db, psycopg.Connection) else stack.enter_context(psycopg.connect(db, autocommit=True))
        while not passed(conn):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the database clock did not pass {moment} within {deadline_s} s")
            time.sleep(0.02)


# A bound on how long a test waits for something that should happen soon. Only a failing test ever waits
# this long; a passing one returns as soon as the condition holds, so it is generous for a loaded 2-core box.
WAIT_S = 120.0


def wait_until(condition: Callable[[], bool], what: str, deadline_s: float = WAIT_S) -> None:
    """Poll `condition` (from a plain thread) until it holds; fail after `deadline_s` of real time."""
    import time

    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        time.sleep(0.02)


async def eventually(condition: Callable[[], bool], what: str, deadline_s: float = WAIT_S) -> None:
    """`wait_until` inside an event loop: polls without blocking the loop."""
    import asyncio
    import time

    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_s} s")
        await asyncio.sleep(0.02)
