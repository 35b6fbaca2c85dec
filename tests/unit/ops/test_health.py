"""Health states from heartbeat scenarios, market-data statistics, rendering and the hourly reporter."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.resilience import CallError, ErrorKind, ResilientCaller
from controller.ops.health import (
    ComponentHealth,
    DatabaseSnapshot,
    HealthConfig,
    HealthReporter,
    Heartbeat,
    Kind,
    RecentError,
    State,
    ago,
    assess,
    assess_heartbeat,
    component_kind,
    endpoint_health,
    flatten_sources,
    render_endpoints,
    render_table,
    render_text,
)
from tests.support.clock import FakeClock

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CONFIG = HealthConfig()  # controller every 300 s, hummingbot every 30 s, grace 30 s, down after 2 intervals


def beat(component: str, *, seen_s: float = 0, progress_s: float = 0, **progress: Any) -> Heartbeat:
    """A heartbeat row last seen `seen_s` and last progressing `progress_s` seconds before NOW."""
    return Heartbeat(component, progress, NOW - timedelta(days=1), NOW - timedelta(seconds=seen_s),
                     NOW - timedelta(seconds=progress_s))


def controller_beat(*, seen_s: float = 0, candle_age_s: float = 0, cycles: int = 5) -> Heartbeat:
    return beat("controller", seen_s=seen_s, progress_s=seen_s, cycles=cycles,
                last_candle=(NOW - timedelta(seconds=candle_age_s)).isoformat())




# --- heartbeats -----------------------------------------------------------------------------------------

def test_fresh_heartbeat_with_progress_is_healthy() -> None:
    health = assess_heartbeat(beat("hummingbot:hb-1", seen_s=5, progress_s=5, tick="t1"), NOW, CONFIG,
                              Kind.HUMMINGBOT)
    assert health.state is State.HEALTHY
    assert health.reasons == ()


def test_alive_but_no_progress_is_degraded_not_healthy() -> None:
    health = assess_heartbeat(beat("hummingbot:hb-1", seen_s=5, progress_s=600, tick="t1"), NOW, CONFIG,
                              Kind.HUMMINGBOT)
    assert health.state is State.DEGRADED
    assert "alive but no progress for 10 min" in health.reasons[0]


def test_silent_past_twice_the_interval_is_down() -> None:
    # 2 x 300 s + 30 s grace = 630 s
    assert assess_heartbeat(controller_beat(seen_s=640, candle_age_s=640), NOW, CONFIG,
                            Kind.CONTROLLER).state is State.DOWN
    health = assess_heartbeat(beat("hummingbot:hb-1", seen_s=91), NOW, CONFIG, Kind.HUMMINGBOT)
    assert health.state is State.DOWN
    assert health.reasons == ("no heartbeat for 91 s (limit 90 s)",)


def test_late_heartbeat_within_twice_the_interval_is_degraded() -> None:
    health = assess_heartbeat(beat("hummingbot:hb-1", seen_s=70, progress_s=70), NOW, CONFIG, Kind.HUMMINGBOT)
    assert health.state is State.DEGRADED
    assert health.reasons[0].startswith("heartbeat late")


def test_controller_heartbeating_without_a_new_candle_is_degraded() -> None:
    health = assess_heartbeat(controller_beat(seen_s=10, candle_age_s=900), NOW, CONFIG, Kind.CONTROLLER)
    assert health.state is State.DEGRADED
    assert health.reasons == ("no new candle for 15 min (limit 2 candles = 10 min)",)


def test_controller_with_a_candle_from_the_last_interval_is_healthy() -> None:
    assert assess_heartbeat(controller_beat(seen_s=10, candle_age_s=310), NOW, CONFIG,
                            Kind.CONTROLLER).state is State.HEALTHY


def test_controller_candle_check_follows_the_configured_candle_interval() -> None:
    hourly = HealthConfig(candle_interval_s=3600)
    assert assess_heartbeat(controller_beat(candle_age_s=900), NOW, hourly, Kind.CONTROLLER).state is State.HEALTHY


def test_controller_without_candles_is_healthy_while_flags_pause_scanning() -> None:
    row = beat("controller", cycles=3, last_candle=None)
    assert assess_heartbeat(row, NOW, CONFIG, Kind.CONTROLLER).state is State.DEGRADED
    paused = assess_heartbeat(row, NOW, CONFIG, Kind.CONTROLLER, {"trading.enabled": False})
    assert paused.state is State.HEALTHY


def test_hummingbot_with_its_queue_breaker_open_is_degraded() -> None:
    health = assess_heartbeat(beat("hummingbot:hb-1", queue_breaker="open"), NOW, CONFIG, Kind.HUMMINGBOT)
    assert health.state is State.DEGRADED
    assert health.reasons == ("queue circuit breaker open",)


def test_component_kind_comes_from_the_name() -> None:
    assert component_kind("controller") is Kind.CONTROLLER
    assert component_kind("scanner-eu", controller_name="scanner-eu") is Kind.CONTROLLER
    assert component_kind("hummingbot:hb-1") is Kind.HUMMINGBOT
    assert component_kind("ml") is Kind.ML
    assert component_kind("shadow:evaluator") is Kind.SHADOW
    assert component_kind("store") is Kind.OTHER  # only the in-process check may speak for the store
    assert component_kind("dashboard") is Kind.OTHER


# --- flags ---------------------------------------------------------------------------------------------

def test_ml_and_shadow_missing_while_their_flags_are_off_are_disabled_not_down() -> None:
    report = assess([controller_beat()], NOW, CONFIG, flags={"ml.enabled": False, "shadow.enabled": False})
    assert report.get("ml").state is State.DISABLED
    assert report.get("shadow").state is State.DISABLED
    assert report.get("ml").reasons == ("ml.enabled is false",)
    assert report.state is State.HEALTHY
    assert report.exit_code() == 0


def test_ml_missing_while_its_flag_is_on_is_down() -> None:
    report = assess([controller_beat()], NOW, CONFIG, flags={"ml.enabled": True})
    assert report.get("ml").state is State.DOWN
    assert report.get("ml").reasons == ("no heartbeat ever recorded",)
    assert report.exit_code() == 1


def test_ml_heartbeating_under_a_longer_name_counts_as_present() -> None:
    report = assess([controller_beat(), beat("ml:trainer", seen_s=30, progress_s=30)], NOW, CONFIG,
                    flags={"ml.enabled": True})
    assert report.get("ml") is None
    assert report.get("ml:trainer").state is State.HEALTHY


def test_a_stale_shadow_row_with_its_flag_off_is_disabled() -> None:
    report = assess([controller_beat(), beat("shadow", seen_s=86400, progress_s=86400)], NOW, CONFIG, flags={})
    assert report.get("shadow").state is State.DISABLED


def test_expected_hummingbot_that_never_heartbeat_is_down() -> None:
    config = HealthConfig(expected_hummingbot=("hb-1", "hb-2"))
    report = assess([controller_beat(), beat("hummingbot:hb-1")], NOW, config)
    assert report.get("hummingbot:hb-1").state is State.HEALTHY
    assert report.get("hummingbot:hb-2").state is State.DOWN


def test_missing_controller_is_down() -> None:
    report = assess([], NOW, CONFIG)
    assert report.get("controller").state is State.DOWN
    assert report.state is State.DOWN


def test_unreadable_store_is_down_with_the_reason_redacted() -> None:
    report = assess([], NOW, CONFIG, store_error="connection to postgresql://app:hunter2@db:5432/x failed")
    store = report.get("store")
    assert store.state is State.DOWN
    assert "hunter2" not in store.reasons[0]
    assert report.get("controller") is None  # nothing else can be judged without the table


def test_overall_state_is_the_worst_of_the_counted_components() -> None:
    report = assess([controller_beat(), beat("hummingbot:hb-1", seen_s=5, progress_s=600)], NOW, CONFIG)
    assert report.state is State.DEGRADED
    assert report.states()["hummingbot:hb-1"] is State.DEGRADED
    assert [c.kind for c in report.components][:2] == [Kind.CONTROLLER, Kind.STORE]


# --- market data --------------------------------------------------------------------------------------

def caller(name: str, clock: FakeClock, *, ok: int = 0, failures: int = 0, rate_limited: int = 0) -> ResilientCaller:
    """A real ResilientCaller with calls already made on a simulated clock."""
    rc = ResilientCaller(name, failure_threshold=5, clock=clock, sleep=clock.advance, rng=lambda: 0.0,
                         wall_clock=lambda: NOW.timestamp())

    def fail(kind: ErrorKind) -> None:
        with pytest.raises(CallError):
            rc.call("ohlcv", lambda: (_ for _ in ()).throw(CallError(kind, "boom", status=503)), idempotent=False)

    for _ in range(ok):
        rc.call("ohlcv", lambda: [], idempotent=False)
    for _ in range(rate_limited):
        fail(ErrorKind.RATE_LIMIT)
        rc.call("ohlcv", lambda: [], idempotent=False)  # keep the breaker closed
    for _ in range(failures):
        fail(ErrorKind.SERVER)
    return rc


def test_source_with_every_breaker_open_is_down() -> None:
    clock = FakeClock()
    health = caller("binance", clock, failures=5).health()
    report = assess([controller_beat()], NOW, CONFIG, sources={"binance": health})
    source = report.get("market_data:binance")
    assert source.state is State.DOWN
    assert source.reasons[0] == "circuit breaker ohlcv open"
    assert report.endpoints[0].breaker == "open"
    assert report.errors[0].where == "binance/ohlcv"


def test_source_whose_calls_mostly_fail_is_degraded() -> None:
    clock = FakeClock()
    rc = caller("binance", clock, ok=1)
    for _ in range(3):  # two failures, then a success: the breaker stays closed
        for _ in range(2):
            with pytest.raises(CallError):
                rc.call("ohlcv", lambda: (_ for _ in ()).throw(CallError(ErrorKind.TIMEOUT, "slow")), idempotent=False)
        rc.call("ohlcv", lambda: [], idempotent=False)
    report = assess([controller_beat()], NOW, CONFIG, sources={"binance": rc.health()})
    source = report.get("market_data:binance")
    assert source.state is State.DEGRADED
    assert source.reasons == ("ohlcv: 40% of 10 calls succeeded",)


def test_success_rate_is_judged_since_the_last_report_once_enough_calls_were_made() -> None:
    clock = FakeClock()
    rc = caller("binance", clock, ok=5, failures=4)  # 5 / 9: not enough calls to judge yet
    first = assess([controller_beat()], NOW, CONFIG, sources={"binance": rc.health()})
    assert first.get("market_data:binance").state is State.HEALTHY
    for _ in range(12):
        rc.call("ohlcv", lambda: [], idempotent=False)
    # lifetime 17 / 21 = 81 %; since the last report 12 / 12
    second = assess([controller_beat()], NOW, CONFIG, sources={"binance": rc.health()}, previous=first)
    assert second.get("market_data:binance").state is State.HEALTHY
    strict = HealthConfig(min_success_rate=0.9)
    assert assess([controller_beat()], NOW, strict, sources={"binance": rc.health()}).get(
        "market_data:binance").state is State.DEGRADED
    assert assess([controller_beat()], NOW, strict, sources={"binance": rc.health()}, previous=first).get(
        "market_data:binance").state is State.HEALTHY


def test_failover_health_is_flattened_into_its_sources() -> None:
    clock = FakeClock()
    failover = {"serving": "kraken", "failovers": 1, "divergences": 0, "compared": 0,
                "primary": caller("binance", clock, failures=5).health(),
                "backup": caller("kraken", clock, ok=3).health()}
    assert sorted(flatten_sources(failover)) == ["binance", "kraken"]
    report = assess([controller_beat()], NOW, CONFIG, sources={"market": failover})
    assert report.get("market_data:binance").state is State.DOWN
    assert report.get("market_data:kraken").state is State.HEALTHY


def test_endpoint_statistics_carry_rates_and_rate_limit_hits() -> None:
    clock = FakeClock()
    rc = caller("binance", clock, ok=6, rate_limited=2)
    (stats,) = endpoint_health("binance", rc.health())
    assert (stats.calls, stats.successes, stats.failures, stats.rate_limit_hits) == (10, 8, 2, 2)
    assert stats.success_rate == pytest.approx(0.8)
    assert stats.calls_per_minute == 10.0
    assert stats.failures_by_kind == {"rate_limit": 2}
    assert stats.last_error == "ohlcv: rate_limit (HTTP 503): boom"


def test_a_source_without_calls_yet_is_healthy() -> None:
    report = assess([controller_beat()], NOW, CONFIG, sources={"kraken": ResilientCaller("kraken").health()})
    assert report.get("market_data:kraken").state is State.HEALTHY


# --- rendering -----------------------------------------------------------------------------------------

def test_render_table_lists_every_component_with_state_and_reason() -> None:
    report = assess([controller_beat(candle_age_s=900), beat("hummingbot:hb-1")], NOW, CONFIG,
                    started_at=NOW - timedelta(hours=3))
    table = render_table(report)
    assert [c.header for c in table.columns] == ["component", "kind", "state", "last seen", "last progress", "why"]
    assert table.row_count == len(report.components)
    text = render_text(report)
    assert "health at 2026-03-01 12:00:00 UTC: degraded, up 3.0 h" in text
    assert "no new candle for 15 min" in text
    assert "hummingbot:hb-1" in text and "disabled" in text


def test_render_endpoints_shows_success_rate_calls_per_minute_and_rate_limits() -> None:
    clock = FakeClock()
    report = assess([controller_beat()], NOW, CONFIG,
                    sources={"binance": caller("binance", clock, ok=6, rate_limited=2).health()})
    assert render_endpoints(report).row_count == 1
    text = render_text(report)
    assert "market data endpoints" in text
    line = next(row for row in text.splitlines() if "binance" in row and "ohlcv" in row)
    assert "80.0%" in line and "10.0" in line and " 2 " in line
    assert "recent errors" in text


def test_durations_read_at_a_glance() -> None:
    assert [ago(s) for s in (5, 119, 600, 7199, 9000, 200000)] == ["5 s", "119 s", "10 min", "120 min", "2.5 h",
                                                                   "2.3 d"]


# --- the reporter --------------------------------------------------------------------------------------

class Cycle:
    def __init__(self, at: datetime, failures: dict[str, str], duration_s: float = 1.5, emitted: int = 2) -> None:
        self.at, self.failures, self.duration_s, self.emitted = at, failures, duration_s, emitted


def make_reporter(read: Any, **kwargs: Any) -> tuple[HealthReporter, list[datetime]]:
    now = [NOW]
    return HealthReporter(CONFIG, read, clock=lambda: now[0], **kwargs), now


def snapshot() -> DatabaseSnapshot:
    return DatabaseSnapshot(NOW, (controller_beat(),), {"ml.enabled": False})


def test_reporter_logs_the_report_hourly_and_a_final_one(caplog: pytest.LogCaptureFixture) -> None:
    reporter, now = make_reporter(snapshot)
    caplog.set_level(logging.INFO, logger="controller.ops.health")
    assert reporter.maybe_report() is not None  # the first check logs at once
    now[0] += timedelta(minutes=30)
    assert reporter.maybe_report() is None
    now[0] += timedelta(minutes=31)
    assert reporter.maybe_report() is not None
    reporter.observe(Cycle(NOW, {"swing": "timeout: swing did not finish within 5 s"}))
    final = reporter.final_report()
    titles = [r.getMessage().splitlines()[0] for r in caplog.records]
    assert titles == ["health report", "health report", "final health report"]
    assert caplog.records[-1].cycles == 1 and caplog.records[-1].avg_scan_s == 1.5
    assert final.errors[0] == RecentError(NOW, "swing", "timeout: swing did not finish within 5 s")


def test_reporter_reports_an_unreadable_store_as_down_without_raising() -> None:
    def broken() -> DatabaseSnapshot:
        raise ConnectionError("connection refused by postgresql://app:hunter2@db/x")

    reporter, _ = make_reporter(broken)
    report = reporter.check()
    assert report.get("store").state is State.DOWN
    assert "hunter2" not in report.get("store").reasons[0]


def test_reporter_hands_reports_to_listeners_and_survives_a_failing_one() -> None:
    seen: list[State] = []

    def bad(_: Any) -> None:
        raise RuntimeError("listener bug")

    extra = [ComponentHealth("supervisor:source", Kind.SUPERVISOR, State.DEGRADED, ("restarting",))]
    reporter, _ = make_reporter(snapshot, listeners=[bad, lambda r: seen.append(r.state)], extra=lambda: extra)
    reporter.check()
    assert seen == [State.DEGRADED]
    assert reporter.last.get("supervisor:source").state is State.DEGRADED
