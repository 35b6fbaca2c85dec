"""Alerts on state changes (a webhook, rate-limited) and a Prometheus metrics endpoint.

Alerts go to one webhook URL from the environment (`ALERT_WEBHOOK_URL`, a secret: never logged). The
JSON body carries the message under both `text` (Slack) and `content` (Discord). Each report's changes
go out in one POST, at most `max_per_component` alerts per component per window; what the limit holds
back is counted and summarised in that component's next alert, or on its own once the window has room.
A POST runs in a daemon thread joined for `timeout_s`: a dead or slow webhook (DNS included) costs the
loop at most that, and a failure is logged, never raised.

Metrics: a standard-library HTTP server (127.0.0.1 by default) renders the text exposition format from
the last health report. prometheus_client is not used: a handful of series rendered from one snapshot
need no registry, and the controller image stays one dependency lighter.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import Field

from bridge.redaction import redact
from controller.config_base import Frozen
from controller.ops.health import SEVERITY, HealthReport, Kind, State

logger = logging.getLogger(__name__)

WEBHOOK_ENV = "ALERT_WEBHOOK_URL"
MAX_MESSAGE_CHARS = 1900  # Discord refuses content over 2000 characters


class AlertConfig(Frozen):
    """The `alerts` section. The webhook URL itself comes from the environment (ALERT_WEBHOOK_URL)."""

    enabled: bool = Field(True, description="send alerts when ALERT_WEBHOOK_URL is set")
    name: str = Field("controller", min_length=1, description="how messages name this deployment")
    max_per_component: int = Field(3, ge=1, le=100, description="alerts per component per window")
    window_s: float = Field(3600.0, ge=60, description="the rate limit's sliding window")
    timeout_s: float = Field(3.0, gt=0, le=30, description="longest a webhook call may hold up the loop")
    on_recovery: bool = Field(True, description="also alert when a component becomes healthy again")


class MetricsConfig(Frozen):
    """The `metrics` section: the Prometheus endpoint."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 only behind a firewall")
    port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")


# --- webhook --------------------------------------------------------------------------------------

PostFn = Callable[[str, bytes, float], int]


def post_json(url: str, body: bytes, timeout_s: float) -> int:
    """POST a JSON body; return the HTTP status (raises on a network error or an error status)."""
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (the operator's https URL)
                                     headers={"Content-Type": "application/json", "User-Agent": "controller-alerts"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        return int(response.status)


class Alerter:
    """Rate-limited alerts to one webhook. Thread-safe; never raises from its public methods."""

    def __init__(self, url: str | None, config: AlertConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic, post: PostFn = post_json) -> None:
        self.config = config or AlertConfig()
        self._url = url or None
        self._clock = clock
        self._post = post
        self._lock = threading.Lock()
        self._states: dict[str, State] = {}
        self._sent_at: dict[str, deque[float]] = {}
        self._suppressed: dict[str, int] = {}
        self._suppressed_since: dict[str, float] = {}
        self.sent = 0      # messages delivered
        self.failed = 0    # messages the webhook did not take (error or timeout)

    @classmethod
    def from_env(cls, config: AlertConfig | None = None, environ: Mapping[str, str] = os.environ,
                 **kwargs: Any) -> Alerter:
        return cls(environ.get(WEBHOOK_ENV), config, **kwargs)

    @property
    def enabled(self) -> bool:
        return self._url is not None and self.config.enabled

    def suppressed(self) -> dict[str, int]:
        """Alerts held back by the rate limit and not yet summarised, by component."""
        with self._lock:
            return {k: v for k, v in self._suppressed.items() if v}

    # --- the inputs -------------------------------------------------------------------------------

    def on_report(self, report: HealthReport) -> bool:
        """Alert on every component whose state changed since the last report (a health listener).

        On the first report only components already degraded or down are announced. Returns whether
        a message went out.
        """
        try:
            with self._lock:
                lines = self._changes(report)
            return self._send(lines)
        except Exception:  # an alert must never take the loop down
            logger.exception("alerting failed")
            return False

    def alert(self, component: str, text: str) -> bool:
        """One alert about `component` (e.g. a restart by the supervisor), under the same rate limit."""
        try:
            with self._lock:
                line = self._admit(component, text, self._clock())
            return self._send([line] if line else [])
        except Exception:
            logger.exception("alerting failed")
            return False

    # --- rate limiting (the lock is held) ---------------------------------------------------------

    def _changes(self, report: HealthReport) -> list[str]:
        now = self._clock()
        lines = []
        changed = set()
        for c in report.components:
            old = self._states.get(c.name)
            self._states[c.name] = c.state
            if old == c.state:
                continue
            if old is None and SEVERITY[c.state] <= SEVERITY[State.HEALTHY]:
                continue  # first sight of a healthy or disabled component: nothing to say
            if c.state is State.HEALTHY and not self.config.on_recovery:
                continue
            changed.add(c.name)
            why = f": {'; '.join(c.reasons)}" if c.reasons else ""
            text = f"{c.name} {old.value if old else 'started'} -> {c.state.value}{why}"
            if line := self._admit(c.name, text, now):
                lines.append(line)
        # What the limit held back earlier, once the window has room again and nothing new was said.
        for name, count in list(self._suppressed.items()):
            if count and name not in changed and self._room(name, now):
                state = self._states.get(name)
                self._suppressed[name] = 0
                self._record(name, now)
                lines.append(f"{name}: {count} alert(s) suppressed by the rate limit in the last "
                             f"{_span(now - self._suppressed_since.get(name, now))}; now "
                             f"{state.value if state else 'unknown'}")
        return lines

    def _room(self, component: str, now: float) -> bool:
        sent = self._sent_at.setdefault(component, deque())
        while sent and sent[0] <= now - self.config.window_s:
            sent.popleft()
        return len(sent) < self.config.max_per_component

    def _record(self, component: str, now: float) -> None:
        self._sent_at.setdefault(component, deque()).append(now)

    def _admit(self, component: str, text: str, now: float) -> str | None:
        if not self._room(component, now):
            if not self._suppressed.get(component):
                self._suppressed_since[component] = now
            self._suppressed[component] = self._suppressed.get(component, 0) + 1
            logger.info("alert suppressed by the rate limit",
                        extra={"component": component, "suppressed": self._suppressed[component]})
            return None
        self._record(component, now)
        held = self._suppressed.pop(component, 0)
        return f"{text} (+{held} earlier alert(s) suppressed)" if held else text

    # --- delivery -----------------------------------------------------------------------------------

    def _send(self, lines: list[str]) -> bool:
        if not lines:
            return False
        for line in lines:
            logger.warning("alert", extra={"text": line})
        if not self.enabled:
            return False
        text = f"[{self.config.name}] " + "\n".join(lines)
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[:MAX_MESSAGE_CHARS - 1] + "…"
        body = json.dumps({"text": text, "content": text}).encode()
        return self._deliver(body)

    def _deliver(self, body: bytes) -> bool:
        url = self._url or ""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["status"] = self._post(url, body, self.config.timeout_s)
            except Exception as exc:  # reported below, without the URL
                box["error"] = exc

        started = time.monotonic()
        thread = threading.Thread(target=target, name="alert-webhook", daemon=True)
        thread.start()
        thread.join(self.config.timeout_s)
        if thread.is_alive() or _timed_out(box.get("error")):
            # the join and the request's own socket timeout share the limit; which ends first is a race, the
            # outcome (and so the message) is the same
            error = f"no answer within {self.config.timeout_s:g} s"
        elif "error" in box:
            error = redact(f"{type(box['error']).__name__}: {box['error']}", [url])
        elif not 200 <= box.get("status", 0) < 300:
            error = f"HTTP {box.get('status')}"
        else:
            with self._lock:
                self.sent += 1
            return True
        with self._lock:
            self.failed += 1
        logger.warning("alert webhook failed", extra={"error": error,
                                                      "elapsed_s": round(time.monotonic() - started, 3)})
        return False


def _timed_out(error: object) -> bool:
    """Whether the request gave up on its socket timeout (raised as is, or wrapped by urllib as the reason)."""
    return isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


# --- metrics --------------------------------------------------------------------------------------

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BREAKER_STATES = ("closed", "open", "half_open")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        number = repr(float(value)) if isinstance(value, float) else str(int(value))
        self.lines.append(f"{name}{{{inner}}} {number}" if inner else f"{name} {number}")


def render_metrics(report: HealthReport | None, counters: Mapping[str, int] | None = None) -> str:
    """The text exposition format: component states, breakers and API counters from `report`, scan
    counters (`Scanner.counters`) and supervisor restarts."""
    out = _Exposition()
    counters = counters or {}
    out.family("controller_cycles_total", "counter", "Scan cycles run.")
    out.sample("controller_cycles_total", counters.get("cycles", 0))
    out.family("controller_signals_emitted_total", "counter", "Signals written to the queue.")
    out.sample("controller_signals_emitted_total", counters.get("signals_emitted", 0))
    out.family("controller_strategy_failures_total", "counter", "Strategies skipped in a cycle, by kind.")
    out.sample("controller_strategy_failures_total", counters.get("strategy_timeouts", 0), kind="timeout")
    out.sample("controller_strategy_failures_total", counters.get("strategy_errors", 0), kind="error")
    out.family("controller_data_failures_total", "counter", "Candle fetches that failed.")
    out.sample("controller_data_failures_total", counters.get("data_failures", 0))
    if report is None:
        return "\n".join(out.lines) + "\n"

    out.family("controller_health_report_timestamp_seconds", "gauge", "When the last health report was made.")
    out.sample("controller_health_report_timestamp_seconds", report.at.timestamp())
    out.family("controller_health_overall", "gauge", "Worst state of the components that are not disabled.")
    for state in (State.HEALTHY, State.DEGRADED, State.DOWN):
        out.sample("controller_health_overall", int(report.state is state), state=state.value)
    out.family("controller_component_state", "gauge", "1 for the state each component is in, else 0.")
    for c in report.components:
        for state in State:
            out.sample("controller_component_state", int(c.state is state), component=c.name, kind=c.kind.value,
                       state=state.value)
    seen = [c for c in report.components if c.last_seen is not None]
    if seen:
        out.family("controller_heartbeat_age_seconds", "gauge", "Seconds since the component's last heartbeat.")
        for c in seen:
            out.sample("controller_heartbeat_age_seconds", (report.at - c.last_seen).total_seconds(), component=c.name)
        out.family("controller_progress_age_seconds", "gauge", "Seconds since the component's progress changed.")
        for c in seen:
            if c.last_progress_at is not None:
                out.sample("controller_progress_age_seconds", (report.at - c.last_progress_at).total_seconds(),
                           component=c.name)
    restarts = [c for c in report.components if c.kind is Kind.SUPERVISOR]
    if restarts:
        out.family("controller_supervisor_restarts_total", "counter", "Restarts made by the supervisor.")
        for c in restarts:
            out.sample("controller_supervisor_restarts_total", int(c.detail.get("restarts", 0)),
                       component=c.name.removeprefix("supervisor:"))
    if report.endpoints:
        out.family("controller_breaker_state", "gauge", "1 for the state each endpoint's circuit breaker is in.")
        for e in report.endpoints:
            for state in BREAKER_STATES:
                out.sample("controller_breaker_state", int(e.breaker == state), source=e.source, endpoint=e.endpoint,
                           state=state)
        for name, attr, help_text in (("controller_api_calls_total", "calls", "Calls made (attempts)."),
                                      ("controller_api_successes_total", "successes", "Calls that succeeded."),
                                      ("controller_api_rate_limit_hits_total", "rate_limit_hits", "429/418 answers."),
                                      ("controller_api_refused_total", "refused", "Calls refused by an open breaker.")):
            out.family(name, "counter", help_text)
            for e in report.endpoints:
                out.sample(name, getattr(e, attr), source=e.source, endpoint=e.endpoint)
        out.family("controller_api_failures_total", "counter", "Failed calls, by error kind.")
        for e in report.endpoints:
            for kind, count in sorted(e.failures_by_kind.items()):
                out.sample("controller_api_failures_total", count, source=e.source, endpoint=e.endpoint, kind=kind)
        out.family("controller_api_calls_per_minute", "gauge", "Calls in the last minute.")
        for e in report.endpoints:
            out.sample("controller_api_calls_per_minute", e.calls_per_minute, source=e.source, endpoint=e.endpoint)
    return "\n".join(out.lines) + "\n"


class MetricsServer:
    """Serves `GET /metrics` from the last report it was given (`on_report` is a health listener)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 counters: Callable[[], Mapping[str, int]] | None = None) -> None:
        self._counters = counters
        self._lock = threading.Lock()
        self._report: HealthReport | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = server.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per scrape would drown the log

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: MetricsConfig, counters: Callable[[], Mapping[str, int]] | None = None
                    ) -> MetricsServer | None:
        """A started server when metrics are enabled, else None."""
        if not config.enabled:
            return None
        server = cls(config.host, config.port, counters)
        server.start()
        return server

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/metrics"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="metrics", daemon=True)
        self._thread.start()
        logger.info("metrics endpoint listening", extra={"url": self.url})

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def on_report(self, report: HealthReport) -> None:
        with self._lock:
            self._report = report

    def render(self) -> str:
        with self._lock:
            report = self._report
        try:
            counters = dict(self._counters()) if self._counters else {}
        except Exception:
            logger.exception("metrics counters unreadable")
            counters = {}
        text = render_metrics(report, counters)
        age = (datetime.now(UTC) - report.at).total_seconds() if report else None
        if age is not None:
            text += ("# HELP controller_health_report_age_seconds Seconds since the last health report.\n"
                     "# TYPE controller_health_report_age_seconds gauge\n"
                     f"controller_health_report_age_seconds {max(0.0, age)!r}\n")
        return text
