"""The evaluator's schedule: its own thread, off while shadow.enabled is off, a failure never stops it."""

from __future__ import annotations

import threading

from shadow.service import Scheduler
from tests.support.clock import WAIT_S


def test_a_slow_pass_runs_in_its_own_thread_and_never_blocks_the_caller() -> None:
    release, started = threading.Event(), threading.Event()
    seen: list[str] = []

    def job() -> None:
        seen.append(threading.current_thread().name)
        started.set()
        release.wait(WAIT_S)  # a pass far longer than a scan

    scheduler = Scheduler(job, 0.01, lambda: True)
    scheduler.start()
    assert started.wait(WAIT_S)
    # the caller (the scan loop) goes on while the pass is still running
    assert scheduler.thread.is_alive() and not release.is_set()
    release.set()
    scheduler.stop()
    assert seen[0] == "shadow-evaluator" and threading.current_thread().name not in seen


def test_nothing_runs_while_the_flag_is_off_and_a_failure_is_counted_not_fatal() -> None:
    calls: list[int] = []
    enabled = threading.Event()
    done = threading.Event()

    def job() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("database went away")
        done.set()

    checks: list[bool] = []

    def flag() -> bool:
        checks.append(enabled.is_set())
        if len(checks) == 5:
            enabled.set()  # the flag is switched on after five checks
        return checks[-1]

    scheduler = Scheduler(job, 0.01, flag)
    scheduler.start()
    assert done.wait(WAIT_S)
    scheduler.stop()
    assert checks[:5] == [False] * 5 and len(calls) >= 2
    assert scheduler.failures == 1 and scheduler.last_error == "database went away"
