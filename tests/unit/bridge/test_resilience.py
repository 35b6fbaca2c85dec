"""Retries: only retryable kinds, exponential backoff with full jitter, Retry-After honoured."""

from __future__ import annotations

import pytest

from bridge.resilience import CallError, ErrorKind, RetryPolicy, kind_of_status, parse_retry_after, retry_call


class FailingThenOk:
    def __init__(self, failures: list[CallError], result: str = "ok") -> None:
        self.failures = list(failures)
        self.calls = 0
        self.result = result

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.result


@pytest.mark.parametrize(
    ("status", "kind"),
    [(200, None), (204, None), (400, ErrorKind.CLIENT), (401, ErrorKind.AUTH), (403, ErrorKind.AUTH),
     (404, ErrorKind.CLIENT), (408, ErrorKind.TIMEOUT), (418, ErrorKind.RATE_LIMIT), (429, ErrorKind.RATE_LIMIT),
     (500, ErrorKind.SERVER), (502, ErrorKind.SERVER), (503, ErrorKind.SERVER), (504, ErrorKind.TIMEOUT)],
)
def test_http_statuses_map_to_error_kinds(status: int, kind: ErrorKind | None) -> None:
    assert kind_of_status(status) == kind


def test_retryable_errors_are_retried_with_growing_jittered_waits() -> None:
    waits: list[float] = []
    fn = FailingThenOk([CallError(ErrorKind.SERVER, "boom"), CallError(ErrorKind.TIMEOUT, "slow"),
                        CallError(ErrorKind.CONNECTION, "refused")])

    result = retry_call(fn, RetryPolicy(base_s=1, cap_s=60, tries=5), sleep=waits.append, rng=lambda: 1.0)

    assert result == "ok"
    assert fn.calls == 4
    assert waits == [1.0, 2.0, 4.0]  # with the jitter at its top: base * 2**attempt


def test_full_jitter_draws_between_zero_and_the_exponential_bound() -> None:
    policy = RetryPolicy(base_s=1, cap_s=60, tries=10)
    assert policy.delay(3, rng=lambda: 0.0) == 0.0
    assert policy.delay(3, rng=lambda: 0.5) == 4.0
    assert policy.delay(9, rng=lambda: 1.0) == 60.0  # capped


@pytest.mark.parametrize("kind", [ErrorKind.AUTH, ErrorKind.CLIENT])
def test_auth_and_client_errors_are_not_retried(kind: ErrorKind) -> None:
    waits: list[float] = []
    fn = FailingThenOk([CallError(kind, "no")])
    with pytest.raises(CallError) as raised:
        retry_call(fn, RetryPolicy(), sleep=waits.append)
    assert raised.value.kind == kind
    assert fn.calls == 1
    assert waits == []


def test_gives_up_after_the_last_try_with_the_last_error() -> None:
    waits: list[float] = []
    fn = FailingThenOk([CallError(ErrorKind.SERVER, f"boom {i}") for i in range(5)])
    with pytest.raises(CallError, match="boom 2"):
        retry_call(fn, RetryPolicy(tries=3), sleep=waits.append, rng=lambda: 0.5)
    assert fn.calls == 3
    assert len(waits) == 2


def test_retry_after_is_a_floor_for_the_wait() -> None:
    waits: list[float] = []
    fn = FailingThenOk([CallError(ErrorKind.RATE_LIMIT, "slow down", retry_after=7.0)])
    retry_call(fn, RetryPolicy(base_s=1, cap_s=60), sleep=waits.append, rng=lambda: 0.1)
    assert waits == [7.0]


def test_retry_after_never_exceeds_the_cap() -> None:
    assert RetryPolicy(cap_s=30).delay(0, rng=lambda: 0.1, retry_after=3600) == 30


@pytest.mark.parametrize(("header", "seconds"), [("5", 5.0), ("0.5", 0.5), (None, None), ("", None),
                                                 ("Wed, 21 Oct 2026 07:28:00 GMT", None), ("-3", 0.0)])
def test_retry_after_header_parsing(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_an_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid retry policy"):
        RetryPolicy(tries=0)
