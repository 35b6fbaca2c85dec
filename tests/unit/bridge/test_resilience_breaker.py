"""Circuit breaker, token bucket, endpoint statistics and ResilientCaller, all on a simulated clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from bridge.resilience import (
    BreakerState,
    CallError,
    CircuitBreaker,
    CircuitOpen,
    EndpointStats,
    ErrorKind,
    ResilientCaller,
    RetryPolicy,
    TokenBucket,
)
from tests.support.clock import WAIT_S, FakeClock


def server_error() -> CallError:
    return CallError(ErrorKind.SERVER, "boom", status=503)


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.allow()
        breaker.record_failure(ErrorKind.SERVER)
    assert breaker.state is BreakerState.OPEN


def probe_fails(breaker: CircuitBreaker, clock: FakeClock) -> None:
    clock.advance(breaker.snapshot()["next_probe_in_s"])
    breaker.allow()
    breaker.record_failure(ErrorKind.TIMEOUT)


# --- circuit breaker -------------------------------------------------------------------------------

def test_five_consecutive_failures_open_the_breaker_and_calls_are_then_refused_at_once() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("binance/ohlcv", clock=clock)
    for _ in range(4):
        breaker.allow()
        breaker.record_failure(ErrorKind.TIMEOUT)
    assert breaker.state is BreakerState.CLOSED

    breaker.allow()
    breaker.record_failure(ErrorKind.CONNECTION)

    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as refused:
        breaker.allow()
    assert refused.value.kind is ErrorKind.CIRCUIT_OPEN
    assert not refused.value.retryable
    assert refused.value.retry_in_s == 120
    assert refused.value.endpoint == "binance/ohlcv"
    assert breaker.refused == 1


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker("x", clock=FakeClock())
    for _ in range(4):
        breaker.record_failure(ErrorKind.SERVER)
    breaker.record_success()
    for _ in range(4):
        breaker.record_failure(ErrorKind.SERVER)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 4


@pytest.mark.parametrize("kind", [ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.RATE_LIMIT, ErrorKind.SERVER,
                                  ErrorKind.MALFORMED])
def test_every_unhealthy_kind_counts(kind: ErrorKind) -> None:
    breaker = CircuitBreaker("x", clock=FakeClock())
    for _ in range(5):
        breaker.record_failure(kind)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize("kind", [ErrorKind.CLIENT, ErrorKind.AUTH])
def test_client_and_auth_errors_never_open_the_breaker(kind: ErrorKind) -> None:
    breaker = CircuitBreaker("x", clock=FakeClock())
    for _ in range(50):
        breaker.allow()
        breaker.record_failure(kind)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.snapshot()["consecutive_failures"] == 0


def test_one_probe_is_let_through_after_120_s_and_others_wait_for_its_outcome() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)

    clock.advance(119.9)
    with pytest.raises(CircuitOpen):
        breaker.allow()
    assert not breaker.would_allow()

    clock.advance(0.1)
    assert breaker.would_allow()
    breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen):
        breaker.allow()  # a second caller while the probe is out


def test_a_successful_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    clock.advance(120)
    breaker.allow()

    breaker.record_success()

    assert breaker.state is BreakerState.CLOSED
    breaker.allow()
    breaker.allow()


def test_each_failed_probe_doubles_the_wait_up_to_an_hour() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    waits = [breaker.snapshot()["open_wait_s"]]
    for _ in range(7):
        probe_fails(breaker, clock)
        assert breaker.state is BreakerState.OPEN
        waits.append(breaker.snapshot()["open_wait_s"])

    assert waits == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    # The doubled wait is really waited: just before it, still refused.
    clock.advance(3599)
    with pytest.raises(CircuitOpen):
        breaker.allow()
    clock.advance(1)
    breaker.allow()


def test_an_endpoint_that_fails_again_soon_after_recovering_waits_longer() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    probe_fails(breaker, clock)  # wait 240
    clock.advance(240)
    breaker.allow()
    breaker.record_success()
    clock.advance(600)  # healthy, but for less than 1800 s

    open_breaker(breaker)

    assert breaker.snapshot()["open_wait_s"] == 480


def test_after_1800_s_of_health_the_wait_is_back_to_120_s() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    probe_fails(breaker, clock)
    probe_fails(breaker, clock)  # wait 480
    clock.advance(480)
    breaker.allow()
    breaker.record_success()

    clock.advance(1800)
    assert breaker.snapshot()["next_wait_s"] == 120
    open_breaker(breaker)

    assert breaker.snapshot()["open_wait_s"] == 120


def test_a_failure_while_closed_restarts_the_health_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    clock.advance(120)
    breaker.allow()
    breaker.record_success()  # next opening would wait 240

    clock.advance(1000)
    breaker.record_failure(ErrorKind.SERVER)
    clock.advance(1000)  # 2000 s since closing, but only 1000 s without a failure
    assert breaker.snapshot()["next_wait_s"] == 240
    clock.advance(800)
    assert breaker.snapshot()["next_wait_s"] == 120


def test_a_client_error_on_the_probe_frees_the_slot_for_the_next_caller() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    clock.advance(120)
    breaker.allow()

    breaker.record_failure(ErrorKind.CLIENT)

    assert breaker.state is BreakerState.HALF_OPEN
    breaker.allow()  # the next caller probes
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_a_probe_that_never_reports_stops_blocking_after_the_probe_wait() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    clock.advance(120)
    breaker.allow()  # this probe's thread dies without a word

    clock.advance(119)
    with pytest.raises(CircuitOpen):
        breaker.allow()
    clock.advance(1)
    breaker.allow()


def test_call_records_the_outcome_and_a_bug_in_our_code_is_no_verdict() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", failure_threshold=1, clock=clock)
    assert breaker.call(lambda: 42) == 42

    def broken() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        breaker.call(broken)
    assert breaker.state is BreakerState.CLOSED

    def failing() -> int:
        raise server_error()

    with pytest.raises(CallError):
        breaker.call(failing)
    assert breaker.state is BreakerState.OPEN


def test_only_one_of_many_threads_gets_the_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    clock.advance(120)
    admitted: list[int] = []
    start = threading.Barrier(16)

    def try_call(i: int) -> None:
        start.wait()
        try:
            breaker.allow()
            admitted.append(i)
        except CircuitOpen:
            pass

    threads = [threading.Thread(target=try_call, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)

    assert len(admitted) == 1
    assert breaker.refused == 15


def test_snapshot_reports_state_and_counters() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("x", clock=clock)
    open_breaker(breaker)
    clock.advance(20)

    snap = breaker.snapshot()

    assert snap["state"] == "open"
    assert snap["next_probe_in_s"] == 100
    assert snap["times_opened"] == 1
    assert snap["open_wait_s"] == 120 and snap["next_wait_s"] == 240


def test_invalid_breaker_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid circuit breaker"):
        CircuitBreaker("x", probe_after_s=600, max_probe_after_s=60)


# --- token bucket ----------------------------------------------------------------------------------

def test_the_burst_goes_at_once_then_one_token_per_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2, burst=3, clock=clock, sleep=clock.sleep)

    waits = [bucket.acquire() for _ in range(6)]

    assert waits == [0, 0, 0, 0.5, 0.5, 0.5]
    assert clock.sleeps == [0.5, 0.5, 0.5]


def test_tokens_refill_with_time_but_never_beyond_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, burst=2, clock=clock, sleep=clock.sleep)
    assert bucket.try_acquire() and bucket.try_acquire()
    assert not bucket.try_acquire()

    clock.advance(0.1)
    assert bucket.try_acquire()
    clock.advance(3600)
    assert bucket.snapshot()["tokens"] == 2


def test_a_limiter_from_the_exchange_published_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket.from_interval_ms(50, clock=clock, sleep=clock.sleep)  # ccxt binance.rateLimit
    for _ in range(4):
        bucket.acquire()
    assert bucket.rate_per_s == 20
    assert clock.sleeps == [0.05, 0.05, 0.05]


def test_hold_stops_everyone_until_retry_after_has_passed() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=100, burst=10, clock=clock, sleep=clock.sleep)
    bucket.hold(7)

    assert not bucket.try_acquire()
    assert bucket.acquire() == 7
    assert bucket.snapshot()["held_for_s"] == 0


def test_asking_for_more_than_the_burst_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot take"):
        TokenBucket(1, burst=2).acquire(3)


# --- endpoint statistics ---------------------------------------------------------------------------

def test_stats_count_calls_outcomes_by_kind_and_keep_the_last_error() -> None:
    clock = FakeClock()
    stats = EndpointStats("ohlcv", clock=clock, wall_clock=lambda: datetime(2024, 5, 1, tzinfo=UTC).timestamp())
    for error in (CallError(ErrorKind.RATE_LIMIT, "slow down", status=429), server_error(), server_error()):
        stats.record_call()
        stats.record_failure(error)
    stats.record_call()
    stats.record_success()
    stats.record_refused()

    snap = stats.snapshot()

    assert snap["calls"] == 4 and snap["successes"] == 1 and snap["refused"] == 1
    assert snap["failures"] == {"rate_limit": 1, "server": 2}
    assert snap["failures_total"] == 3
    assert snap["rate_limit_hits"] == 1
    assert snap["last_error"] == {"message": "server (HTTP 503): boom", "kind": "server",
                                  "at": "2024-05-01T00:00:00+00:00"}


def test_calls_per_minute_counts_a_sliding_window() -> None:
    clock = FakeClock()
    stats = EndpointStats("ohlcv", clock=clock)
    for _ in range(30):
        stats.record_call()
        clock.advance(1)
    assert stats.calls_per_minute() == 30
    clock.advance(44)  # the first 15 calls are now a minute old or older
    assert stats.calls_per_minute() == 15
    clock.advance(60)
    assert stats.calls_per_minute() == 0
    assert stats.calls == 30


# --- resilient caller ------------------------------------------------------------------------------

class Script:
    """A callable that raises the scripted errors in turn, then returns 'ok'."""

    def __init__(self, *errors: CallError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def make_caller(clock: FakeClock, *, tries: int = 5, rng: float = 1.0,
                limiter: TokenBucket | None = None) -> ResilientCaller:
    return ResilientCaller("exchange", limiter=limiter, retry=RetryPolicy(base_s=1, cap_s=60, tries=tries),
                           clock=clock, sleep=clock.sleep, rng=lambda: rng)


def test_idempotent_calls_are_retried_with_backoff() -> None:
    clock = FakeClock()
    fn = Script(server_error(), CallError(ErrorKind.TIMEOUT, "slow"))

    assert make_caller(clock).call("ohlcv", fn, idempotent=True) == "ok"

    assert fn.calls == 3
    assert clock.sleeps == [1.0, 2.0]


def test_retry_honours_retry_after_and_holds_the_limiter_for_everyone() -> None:
    clock = FakeClock()
    limiter = TokenBucket(100, burst=100, clock=clock, sleep=clock.sleep)
    caller = make_caller(clock, rng=0.1, limiter=limiter)
    fn = Script(CallError(ErrorKind.RATE_LIMIT, "slow down", status=429, retry_after=7.0))

    assert caller.call("ohlcv", fn, idempotent=True) == "ok"

    assert clock.sleeps == [7.0]  # the server's wait, not the jittered 0.1 s
    assert caller.health()["endpoints"]["ohlcv"]["rate_limit_hits"] == 1


def test_a_rate_limit_makes_other_endpoints_of_the_dependency_wait_too() -> None:
    clock = FakeClock()
    limiter = TokenBucket(100, burst=100, clock=clock, sleep=clock.sleep)
    caller = make_caller(clock, tries=1, limiter=limiter)
    with pytest.raises(CallError):
        caller.call("ohlcv", Script(CallError(ErrorKind.RATE_LIMIT, "slow", retry_after=5.0)), idempotent=True)

    caller.call("markets", Script(), idempotent=False)

    assert clock.sleeps == [5.0]


def test_calls_that_are_not_idempotent_are_never_retried() -> None:
    clock = FakeClock()
    fn = Script(server_error())
    with pytest.raises(CallError):
        make_caller(clock).call("orders", fn, idempotent=False)
    assert fn.calls == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("kind", [ErrorKind.CLIENT, ErrorKind.AUTH])
def test_client_errors_are_neither_retried_nor_held_against_the_endpoint(kind: ErrorKind) -> None:
    clock = FakeClock()
    caller = make_caller(clock)
    for _ in range(10):
        fn = Script(CallError(kind, "no"))
        with pytest.raises(CallError):
            caller.call("ohlcv", fn, idempotent=True)
        assert fn.calls == 1
    assert caller.breaker("ohlcv").state is BreakerState.CLOSED
    assert caller.health()["endpoints"]["ohlcv"]["failures"] == {str(kind): 10}


def test_retries_stop_when_the_breaker_opens_and_later_calls_are_refused_without_a_try() -> None:
    clock = FakeClock()
    caller = make_caller(clock, tries=10)
    fn = Script(*[server_error() for _ in range(10)])

    with pytest.raises(CallError) as failed:
        caller.call("ohlcv", fn, idempotent=True)
    assert failed.value.kind is ErrorKind.SERVER  # the real error, not CircuitOpen
    assert fn.calls == 5
    assert clock.sleeps == [1.0, 2.0, 4.0, 8.0]  # no wasted sleep after the fifth failure

    with pytest.raises(CircuitOpen):
        caller.call("ohlcv", fn, idempotent=True)
    assert fn.calls == 5
    assert not caller.available("ohlcv")
    assert caller.available("markets")  # breakers are per endpoint


def test_the_probe_after_the_wait_closes_the_breaker_again() -> None:
    clock = FakeClock()
    caller = make_caller(clock, tries=1)
    for _ in range(5):
        with pytest.raises(CallError):
            caller.call("ohlcv", Script(server_error()), idempotent=True)
    clock.advance(120)

    assert caller.call("ohlcv", Script(), idempotent=True) == "ok"
    assert caller.breaker("ohlcv").state is BreakerState.CLOSED


def test_health_reports_every_breaker_and_counter() -> None:
    clock = FakeClock()
    caller = make_caller(clock, tries=1, limiter=TokenBucket(10, burst=5, clock=clock, sleep=clock.sleep))
    caller.call("markets", Script(), idempotent=True)
    for _ in range(5):
        with pytest.raises(CallError):
            caller.call("ohlcv", Script(server_error()), idempotent=True)
    with pytest.raises(CircuitOpen):
        caller.call("ohlcv", Script(), idempotent=True)

    health = caller.health()

    assert health["dependency"] == "exchange"
    assert health["limiter"]["rate_per_s"] == 10
    assert set(health["endpoints"]) == {"markets", "ohlcv"}
    ohlcv = health["endpoints"]["ohlcv"]
    assert ohlcv["breaker"]["state"] == "open"
    assert ohlcv["calls"] == 5 and ohlcv["refused"] == 1 and ohlcv["failures"] == {"server": 5}
    assert ohlcv["last_error"]["message"] == "ohlcv: server (HTTP 503): boom"  # the endpoint is filled in
    assert health["endpoints"]["markets"]["breaker"]["state"] == "closed"
    assert health["endpoints"]["markets"]["successes"] == 1
