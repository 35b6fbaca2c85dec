"""The supervisor on a simulated clock: restarts after N failed checks, backoff, counts, alerts, giving up."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from controller.ops.health import Kind, State
from controller.ops.supervisor import Restarter, RestartEvent, Supervisor, SupervisorConfig
from tests.support.clock import FakeClock


class Flaky:
    """A component whose health is set by the test; counts its restarts; may fail to restart."""

    def __init__(self) -> None:
        self.problem: str | None = None
        self.restarts = 0
        self.restart_error: Exception | None = None

    def check(self) -> str | None:
        return self.problem

    def restart(self) -> None:
        self.restarts += 1
        if self.restart_error is not None:
            raise self.restart_error


@dataclass
class Rig:
    supervisor: Supervisor
    component: Flaky
    clock: FakeClock
    events: list[RestartEvent] = field(default_factory=list)


def supervised(**config: float | int | None) -> Rig:
    clock = FakeClock()
    events: list[RestartEvent] = []
    settings = {"failures_before_restart": 3, "backoff_base_s": 30.0, "backoff_cap_s": 240.0, **config}
    # rng 1.0: full jitter at its top, so each backoff is exactly min(cap, base * 2**attempt)
    supervisor = Supervisor(SupervisorConfig(**settings), clock=clock, rng=lambda: 1.0, on_event=events.append)
    component = Flaky()
    supervisor.add("market_data", component)
    return Rig(supervisor, component, clock, events)


def test_restart_only_after_the_configured_number_of_failed_checks_in_a_row() -> None:
    rig = supervised()
    rig.component.problem = "ohlcv breaker open for 10 min"
    assert rig.supervisor.tick() == [] and rig.supervisor.tick() == []
    (event,) = rig.supervisor.tick()
    assert rig.component.restarts == 1
    assert event == RestartEvent("market_data", "ohlcv breaker open for 10 min", attempt=1, ok=True,
                                 next_restart_in_s=30.0)


def test_a_healthy_check_resets_the_count_of_failures() -> None:
    rig = supervised()
    for healthy_between in (False, False, True, False, False):
        rig.component.problem = None if healthy_between else "stuck"
        rig.supervisor.tick()
    assert rig.component.restarts == 0
    assert rig.supervisor.snapshot()["market_data"]["consecutive_failures"] == 2


def test_restarts_back_off_exponentially_up_to_the_cap() -> None:
    rig = supervised(failures_before_restart=1)
    rig.component.problem = "stuck"
    restarted_at = []
    for _ in range(1000):  # checks once a second
        if rig.supervisor.tick():
            restarted_at.append(rig.clock.t - 1000.0)
        rig.clock.advance(1)
    gaps = [b - a for a, b in itertools.pairwise(restarted_at)]
    assert gaps[:5] == [30.0, 60.0, 120.0, 240.0, 240.0]
    assert [e.next_restart_in_s for e in rig.events[:5]] == [30.0, 60.0, 120.0, 240.0, 240.0]
    assert rig.supervisor.snapshot()["market_data"]["restarts"] == rig.component.restarts == len(rig.events)


def test_backoff_uses_the_retry_policy_jitter() -> None:
    clock = FakeClock()
    supervisor = Supervisor(SupervisorConfig(failures_before_restart=1, backoff_base_s=30.0), clock=clock,
                            rng=lambda: 0.5)
    component = Flaky()
    component.problem = "stuck"
    supervisor.add("worker", component)
    (event,) = supervisor.tick()
    assert event.next_restart_in_s == 15.0
    clock.advance(14.9)
    assert supervisor.tick() == []
    clock.advance(0.1)
    assert len(supervisor.tick()) == 1


def test_backoff_starts_over_after_a_healthy_spell() -> None:
    rig = supervised(failures_before_restart=1, reset_after_s=600.0)
    rig.component.problem = "stuck"
    rig.supervisor.tick()
    rig.clock.advance(30)
    rig.supervisor.tick()
    assert rig.events[-1].next_restart_in_s == 60.0
    rig.component.problem = None
    rig.clock.advance(600)
    rig.supervisor.tick()
    rig.component.problem = "stuck again"
    (event,) = rig.supervisor.tick()
    assert (event.attempt, event.next_restart_in_s) == (1, 30.0)


def test_a_restart_that_raises_is_counted_and_reported_not_raised() -> None:
    rig = supervised(failures_before_restart=1)
    rig.component.problem = "stuck"
    rig.component.restart_error = ConnectionError("exchange unreachable, token=abc123secret")
    (event,) = rig.supervisor.tick()
    assert not event.ok
    assert "ConnectionError" in event.error and "abc123secret" not in event.error
    snapshot = rig.supervisor.snapshot()["market_data"]
    assert (snapshot["restarts"], snapshot["failed_restarts"]) == (0, 1)
    assert "restart failed" in event.text()


def test_a_check_that_raises_counts_as_a_failed_check() -> None:
    clock = FakeClock()
    supervisor = Supervisor(SupervisorConfig(failures_before_restart=2), clock=clock, rng=lambda: 1.0)
    restarts = []

    def check() -> str | None:
        raise TimeoutError("check hung")

    supervisor.add("strategies", Restarter(check, lambda: restarts.append(clock.t)))
    supervisor.tick()
    (event,) = supervisor.tick()
    assert restarts == [1000.0]
    assert event.reason == "health check raised TimeoutError: check hung"


def test_gives_up_after_max_restarts_and_says_so_once() -> None:
    rig = supervised(failures_before_restart=1, max_restarts=2)
    rig.component.problem = "stuck"
    for _ in range(1000):
        rig.supervisor.tick()
        rig.clock.advance(1)
    assert rig.component.restarts == 2
    assert [e.gave_up for e in rig.events] == [False, False, True]
    assert rig.events[-1].text() == "market_data: gave up after 2 restart(s); still failing: stuck"
    (health,) = rig.supervisor.components()
    assert (health.name, health.kind, health.state) == ("supervisor:market_data", Kind.SUPERVISOR, State.DOWN)


def test_supervised_components_report_their_state_and_restart_count() -> None:
    rig = supervised(failures_before_restart=1)
    (health,) = rig.supervisor.components()
    assert health.state is State.HEALTHY
    rig.component.problem = "stuck"
    rig.supervisor.tick()
    (health,) = rig.supervisor.components()
    assert health.state is State.DEGRADED
    assert health.detail["restarts"] == 1


def test_the_alert_hook_gets_every_restart_and_a_failing_hook_is_ignored() -> None:
    clock = FakeClock()
    texts: list[str] = []

    def hook(event: RestartEvent) -> None:
        texts.append(event.text())
        raise RuntimeError("webhook bug")

    supervisor = Supervisor(SupervisorConfig(failures_before_restart=1), clock=clock, rng=lambda: 1.0, on_event=hook)
    component = Flaky()
    component.problem = "strategy swing timed out 3 cycles in a row"
    supervisor.add("strategies", component)
    supervisor.tick()
    assert texts == ["strategies: restarted (attempt 1) because strategy swing timed out 3 cycles in a row; "
                     "next restart no sooner than 30 s"]


def test_disabled_supervisor_never_restarts() -> None:
    rig = supervised(failures_before_restart=1, enabled=False)
    rig.component.problem = "stuck"
    assert rig.supervisor.tick() == []
    assert rig.component.restarts == 0


def test_names_are_unique_and_backoff_settings_are_validated() -> None:
    rig = supervised()
    with pytest.raises(ValueError, match="supervised already"):
        rig.supervisor.add("market_data", rig.component)
    with pytest.raises(ValueError, match="backoff_cap_s"):
        SupervisorConfig(backoff_base_s=60, backoff_cap_s=30)
