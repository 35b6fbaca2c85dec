"""Alerts against a webhook receiver on 127.0.0.1, and the Prometheus endpoint over real HTTP.

The rate limit runs on a simulated clock; the HTTP is real (loopback only, every wait bounded).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.ops.alerts import (
    AlertConfig,
    Alerter,
    MetricsConfig,
    MetricsServer,
    WebhookChannel,
    render_metrics,
)
from controller.ops.health import ComponentHealth, EndpointHealth, HealthReport, Kind, State
from tests.support.clock import FakeClock

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Receiver:
    """A webhook on 127.0.0.1 that records every JSON body and answers with `status`."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/T000-SECRET-PATH"

    def texts(self) -> list[str]:
        return [b["text"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()




def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record with its extras (the webhook URL must be in none of them)."""
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def report(**states: State) -> HealthReport:
    components = tuple(ComponentHealth(name.replace("__", ":"), Kind.OTHER, state,
                                       ("no progress for 12 min",) if state is State.DEGRADED else ())
                       for name, state in states.items())
    return HealthReport(NOW, components)


# --- alerts ---------------------------------------------------------------------------------------

def test_a_state_change_posts_one_alert_with_slack_and_discord_keys(receiver: Receiver) -> None:
    alerter = Alerter([WebhookChannel(receiver.url)], AlertConfig(name="prod"), clock=FakeClock())
    assert alerter.on_report(report(controller=State.HEALTHY, hummingbot__hb1=State.HEALTHY)) is False
    assert alerter.on_report(report(controller=State.DEGRADED, hummingbot__hb1=State.DOWN)) is True
    assert alerter.flush()
    (body,) = receiver.bodies
    assert set(body) == {"text", "content"} and body["text"] == body["content"]
    assert body["text"] == ("[prod] controller healthy -> degraded: no progress for 12 min\n"
                            "hummingbot:hb1 healthy -> down")
    assert receiver.paths == ["/hooks/T000-SECRET-PATH"]
    assert alerter.sent == 1


def test_first_report_announces_only_components_already_in_trouble(receiver: Receiver) -> None:
    alerter = Alerter([WebhookChannel(receiver.url)], clock=FakeClock())
    alerter.on_report(report(controller=State.HEALTHY, ml=State.DISABLED, store=State.DOWN))
    assert alerter.flush()
    assert receiver.texts() == ["[controller] store started -> down"]


def test_recovery_is_announced_unless_switched_off(receiver: Receiver) -> None:
    alerter = Alerter([WebhookChannel(receiver.url)], clock=FakeClock())
    quiet = Alerter([WebhookChannel(receiver.url)], AlertConfig(on_recovery=False), clock=FakeClock())
    for a in (alerter, quiet):
        a.on_report(report(store=State.DOWN))
        a.on_report(report(store=State.HEALTHY))
        assert a.flush()
    assert receiver.texts() == ["[controller] store started -> down", "[controller] store down -> healthy",
                                "[controller] store started -> down"]


def test_a_flapping_component_is_rate_limited_and_the_suppressed_count_is_summarised(receiver: Receiver) -> None:
    clock = FakeClock()
    alerter = Alerter([WebhookChannel(receiver.url)], AlertConfig(max_per_component=3, window_s=3600), clock=clock)
    alerter.on_report(report(controller=State.HEALTHY, store=State.HEALTHY))
    for i in range(10):  # ten flaps, a minute apart
        clock.advance(60)
        state = State.DEGRADED if i % 2 == 0 else State.HEALTHY
        alerter.on_report(report(controller=state, store=State.HEALTHY))
    assert alerter.flush()
    assert len(receiver.bodies) == 3
    assert alerter.suppressed() == {"controller": 7}
    # Another component is not held back by the flapping one.
    clock.advance(60)
    alerter.on_report(report(controller=State.HEALTHY, store=State.DOWN))
    assert alerter.flush()
    assert receiver.texts()[-1] == "[controller] store healthy -> down"
    # Once the window has room again, a summary says what was held back and where things stand.
    clock.advance(3600)
    alerter.on_report(report(controller=State.HEALTHY, store=State.DOWN))
    assert alerter.flush()
    assert re.fullmatch(r"\[controller\] controller: 7 alert\(s\) suppressed by the rate limit in the last "
                        r"\d+ min; now healthy", receiver.texts()[-1])
    assert alerter.suppressed() == {}


def test_the_next_admitted_alert_carries_the_suppressed_count(receiver: Receiver) -> None:
    clock = FakeClock()
    alerter = Alerter([WebhookChannel(receiver.url)], AlertConfig(max_per_component=1, window_s=600), clock=clock)
    alerter.alert("supervisor:market_data", "restarted (attempt 1)")
    alerter.alert("supervisor:market_data", "restarted (attempt 2)")
    alerter.alert("supervisor:market_data", "restarted (attempt 3)")
    clock.advance(601)
    alerter.alert("supervisor:market_data", "restarted (attempt 4)")
    assert alerter.flush()
    assert receiver.texts() == ["[controller] restarted (attempt 1)",
                                "[controller] restarted (attempt 4) (+2 earlier alert(s) suppressed)"]


def test_a_dead_webhook_costs_at_most_the_timeout_and_raises_nothing(caplog: pytest.LogCaptureFixture) -> None:
    # A socket that accepts connections into its backlog and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hooks/T000-SECRET-PATH"
        alerter = Alerter([WebhookChannel(url)], AlertConfig(timeout_s=0.5, tries=1), clock=FakeClock())
        caplog.set_level(logging.INFO)
        # it returns (a hang would hit pytest's timeout) and says it gave up on the configured timeout; no
        # duration is asserted on a shared 2-core box
        assert alerter.on_report(report(store=State.DOWN)) is True  # queued: the loop does not wait
        assert alerter.flush()
    assert alerter.failed == 1
    assert "SECRET-PATH" not in logged(caplog)
    assert "no answer within 0.5 s" in logged(caplog)


@pytest.mark.parametrize("timed_out", [TimeoutError("timed out"), urllib.error.URLError(TimeoutError("timed out"))],
                         ids=["read", "connect"])
def test_a_socket_timeout_that_ends_before_the_wait_reads_the_same_as_no_answer(
        timed_out: Exception, caplog: pytest.LogCaptureFixture) -> None:
    """The request's socket timeout and the wait for it share the limit: on a loaded box either ends first (the
    dead-webhook test above once saw the socket's). Both are the same outcome, reported the same way."""
    def post(url: str, body: bytes, timeout_s: float) -> int:
        raise timed_out

    alerter = Alerter([WebhookChannel("http://127.0.0.1:9/hooks/T000-SECRET-PATH", post)],
                      AlertConfig(timeout_s=0.5, tries=1), clock=FakeClock())
    caplog.set_level(logging.INFO)
    assert alerter.on_report(report(store=State.DOWN)) is True
    assert alerter.flush()
    assert alerter.failed == 1 and alerter.sent == 0
    assert "no answer within 0.5 s" in logged(caplog) and "TimeoutError" not in logged(caplog)


def test_a_refused_connection_or_an_error_status_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    failing = Receiver(status=500)
    try:
        caplog.set_level(logging.INFO)
        for url in (f"http://127.0.0.1:{port}/hooks/T000-SECRET-PATH", failing.url):
            alerter = Alerter([WebhookChannel(url)], AlertConfig(timeout_s=2, tries=1), clock=FakeClock())
            assert alerter.on_report(report(store=State.DOWN)) is True
            assert alerter.flush()
            assert alerter.failed == 1
    finally:
        failing.close()
    assert len(failing.bodies) == 1
    assert "HTTP Error 500" in logged(caplog)
    assert "Connection refused" in logged(caplog)
    assert "SECRET-PATH" not in logged(caplog)


def test_without_a_webhook_alerts_are_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    alerter = Alerter.from_env(environ={})
    assert not alerter.enabled
    caplog.set_level(logging.WARNING, logger="controller.ops.alerts")
    assert alerter.on_report(report(store=State.DOWN)) is False
    assert [r.text for r in caplog.records] == ["store started -> down"]


def test_the_webhook_url_comes_from_the_environment(receiver: Receiver) -> None:
    alerter = Alerter.from_env(environ={"ALERT_WEBHOOK_URL": receiver.url}, clock=FakeClock())
    assert alerter.enabled
    assert alerter.alert("controller", "test alert")
    assert alerter.flush()
    assert receiver.texts() == ["[controller] test alert"]
    assert not Alerter.from_env(AlertConfig(enabled=False), environ={"ALERT_WEBHOOK_URL": receiver.url}).enabled


# --- metrics --------------------------------------------------------------------------------------

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


def rich_report() -> HealthReport:
    components = (
        ComponentHealth("controller", Kind.CONTROLLER, State.DEGRADED, ('no new "candle"',),
                        last_seen=NOW - timedelta(seconds=20), last_progress_at=NOW - timedelta(seconds=900)),
        ComponentHealth("ml", Kind.ML, State.DISABLED),
        ComponentHealth("supervisor:market_data", Kind.SUPERVISOR, State.HEALTHY, detail={"restarts": 2}),
    )
    endpoints = (EndpointHealth("binance", "ohlcv", "open", calls=12, successes=7, failures=5, rate_limit_hits=1,
                                refused=3, calls_per_minute=4.0, failures_by_kind={"server": 4, "rate_limit": 1}),)
    return HealthReport(NOW, components, endpoints)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample, parsed by prometheus_client's own text parser (label order carries no meaning)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(parsed: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return parsed[(name, frozenset(labels.items()))]


def test_metrics_render_in_the_text_exposition_format() -> None:
    text = render_metrics(rich_report(), {"cycles": 42, "signals_emitted": 7, "strategy_timeouts": 1})
    for line in text.splitlines():
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or SAMPLE.match(line), line
    parsed = samples(text)
    assert value(parsed, "controller_cycles_total") == 42
    assert value(parsed, "controller_signals_emitted_total") == 7
    assert value(parsed, "controller_strategy_failures_total", kind="timeout") == 1
    assert value(parsed, "controller_component_state", component="controller", kind="controller",
                 state="degraded") == 1
    assert value(parsed, "controller_component_state", component="controller", kind="controller",
                 state="healthy") == 0
    assert value(parsed, "controller_breaker_state", source="binance", endpoint="ohlcv", state="open") == 1
    assert value(parsed, "controller_api_calls_total", source="binance", endpoint="ohlcv") == 12
    assert value(parsed, "controller_api_failures_total", source="binance", endpoint="ohlcv", kind="server") == 4
    assert value(parsed, "controller_api_rate_limit_hits_total", source="binance", endpoint="ohlcv") == 1
    assert value(parsed, "controller_supervisor_restarts_total", component="market_data") == 2
    assert value(parsed, "controller_progress_age_seconds", component="controller") == 900.0
    assert value(parsed, "controller_health_overall", state="degraded") == 1
    types = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
    assert len(types) == len({name for name, _ in types})  # each family declared once
    # every family the docs list is there, with its type
    assert dict(types) == {
        "controller_cycles_total": "counter", "controller_signals_emitted_total": "counter",
        "controller_strategy_failures_total": "counter", "controller_data_failures_total": "counter",
        "controller_health_report_timestamp_seconds": "gauge", "controller_health_overall": "gauge",
        "controller_component_state": "gauge", "controller_heartbeat_age_seconds": "gauge",
        "controller_progress_age_seconds": "gauge", "controller_supervisor_restarts_total": "counter",
        "controller_breaker_state": "gauge", "controller_api_calls_total": "counter",
        "controller_api_successes_total": "counter", "controller_api_rate_limit_hits_total": "counter",
        "controller_api_refused_total": "counter", "controller_api_failures_total": "counter",
        "controller_api_calls_per_minute": "gauge"}


def test_metrics_endpoint_serves_the_last_report_on_loopback() -> None:
    counters = {"cycles": 3}
    server = MetricsServer.from_config(MetricsConfig(enabled=True, port=0), counters=lambda: counters)
    assert server is not None
    try:
        assert server.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(server.url, timeout=5) as response:  # noqa: S310 (loopback)
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            before = response.read().decode()
        assert value(samples(before), "controller_cycles_total") == 3
        assert "controller_component_state" not in before  # no report yet
        server.on_report(rich_report())
        counters["cycles"] = 4
        with urllib.request.urlopen(server.url, timeout=5) as response:  # noqa: S310
            after = response.read().decode()
        parsed = samples(after)
        assert value(parsed, "controller_cycles_total") == 4
        assert value(parsed, "controller_component_state", component="ml", kind="ml", state="disabled") == 1
        assert value(parsed, "controller_health_report_age_seconds") >= 0
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(server.url.replace("/metrics", "/other"), timeout=5)  # noqa: S310
        assert missing.value.code == 404
    finally:
        server.stop()


def test_metrics_are_off_unless_enabled() -> None:
    assert MetricsServer.from_config(MetricsConfig()) is None
