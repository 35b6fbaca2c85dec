"""Alerts on state changes (a webhook and Telegram, rate-limited) and a Prometheus metrics endpoint.

Channels, each configured from the environment (secrets: never logged):
- a webhook (`ALERT_WEBHOOK_URL`): the JSON body carries the message under both `text` (Slack) and
  `content` (Discord);
- Telegram (`TELEGRAM_BOT_TOKEN` and `TELEGRAM_CHAT_ID`): the Bot API's `sendMessage`. The token is part
  of the URL path, so every error is redacted with it (bridge/redaction.py also masks any token-shaped
  `/bot<id>:<secret>` it sees).

Each report's changes go out as one message, at most `max_per_component` alerts per component per window;
what the limit holds back is counted and summarised in that component's next alert, or on its own once the
window has room. Every channel has its own queue and delivery thread, so the loop never waits for a slow
or dead channel; delivery goes through bridge/resilience.py like every other external call: a token bucket
(`per_minute`), retries with exponential backoff that honour the server's `retry_after`, and a circuit
breaker that stops calling a channel after `breaker_failures` failures in a row. A message that cannot be
delivered is logged (it was logged as an alert already) and counted in `failed`, never raised. A timeout
is retried, so a message may on rare occasions arrive twice: a duplicate alert costs less than a lost one.

Metrics: a standard-library HTTP server (127.0.0.1 by default) serves `/metrics`, written by
prometheus_client's exposition code from the last health report (a collector over one snapshot).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import Field

from bridge.redaction import redact, secret_parts
from bridge.resilience import (
    CallError,
    CircuitOpen,
    ErrorKind,
    ResilientCaller,
    RetryPolicy,
    TokenBucket,
    kind_of_status,
    parse_retry_after,
)
from controller.config_base import Frozen
from controller.ops.health import SEVERITY, HealthReport, Kind, State

logger = logging.getLogger(__name__)

WEBHOOK_ENV = "ALERT_WEBHOOK_URL"
TELEGRAM_TOKEN_ENV = "TELEGRAM_BOT_TOKEN"  # noqa: S105 (the variable's name, not its value)
TELEGRAM_CHAT_ENV = "TELEGRAM_CHAT_ID"
MAX_MESSAGE_CHARS = 1900  # Discord refuses content over 2000 characters (Telegram over 4096)


class AlertConfig(Frozen):
    """The `alerts` section. The channels' secrets come from the environment (ALERT_WEBHOOK_URL,
    TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID)."""

    enabled: bool = Field(True, description="send alerts to the channels configured in the environment")
    name: str = Field("controller", min_length=1, description="how messages name this deployment")
    max_per_component: int = Field(3, ge=1, le=100, description="alerts per component per window")
    window_s: float = Field(3600.0, ge=60, description="the rate limit's sliding window")
    timeout_s: float = Field(3.0, gt=0, le=30, description="longest one delivery attempt may take")
    on_recovery: bool = Field(True, description="also alert when a component becomes healthy again")
    per_minute: float = Field(20.0, gt=0, le=600, description="messages per minute per channel (Telegram: 20 "
                                                               "a minute to a group)")
    tries: int = Field(4, ge=1, le=10, description="delivery attempts per message")
    backoff_s: float = Field(1.0, ge=0.01, le=60, description="first retry's backoff (doubles, jittered)")
    backoff_cap_s: float = Field(60.0, ge=0.01, le=600, description="longest wait between attempts, a "
                                                                    "server's retry_after included")
    breaker_failures: int = Field(5, ge=1, le=100, description="failures in a row that open a channel's breaker")
    breaker_probe_s: float = Field(120.0, gt=0, le=3600, description="wait before an open breaker's first probe")
    queue_size: int = Field(100, ge=1, le=10_000, description="messages a channel holds while it cannot deliver; "
                                                              "beyond that the oldest is dropped")
    telegram_api: str = Field("https://api.telegram.org", min_length=1, description="the Bot API's base URL")


class MetricsConfig(Frozen):
    """The `metrics` section: the Prometheus endpoint."""

    enabled: bool = False
    host: str = Field("127.0.0.1", description="address to listen on; 0.0.0.0 only behind a firewall")
    port: int = Field(9108, ge=0, le=65535, description="0 picks a free port")


# --- channels -------------------------------------------------------------------------------------

PostFn = Callable[[str, bytes, float], int]


def post_json(url: str, body: bytes, timeout_s: float) -> int:
    """POST a JSON body; return the HTTP status (raises on a network error or an error status)."""
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310 (the operator's https URL)
                                     headers={"Content-Type": "application/json", "User-Agent": "controller-alerts"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
        return int(response.status)


class Channel(Protocol):
    """Where alerts go. `send` raises CallError (its message free of `secrets`) when the message was not taken."""

    name: str
    secrets: tuple[str, ...]

    def send(self, text: str, timeout_s: float) -> None: ...


def _timed_out(error: object) -> bool:
    """Whether the request gave up on its socket timeout (raised as is, or wrapped by urllib as the reason)."""
    return isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)


def _call_error(exc: Exception, timeout_s: float, secrets: Iterable[str]) -> CallError:
    """A network error or an error status as a CallError with its kind, its text redacted."""
    if isinstance(exc, CallError):
        return exc
    if _timed_out(exc):
        return CallError(ErrorKind.TIMEOUT, f"no answer within {timeout_s:g} s")
    text = redact(f"{type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, urllib.error.HTTPError):
        return CallError(kind_of_status(exc.code) or ErrorKind.SERVER, text, status=exc.code,
                         retry_after=parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None))
    if isinstance(exc, urllib.error.URLError | ConnectionError):
        return CallError(ErrorKind.CONNECTION, text)
    return CallError(ErrorKind.CONNECTION, text)


class WebhookChannel:
    """A Slack- or Discord-compatible webhook: one JSON POST per message."""

    def __init__(self, url: str, post: PostFn = post_json) -> None:
        self.name = "webhook"
        self._url = url
        self._post = post
        self.secrets = tuple(secret_parts(url))

    def send(self, text: str, timeout_s: float) -> None:
        body = json.dumps({"text": text, "content": text}).encode()
        try:
            status = self._post(self._url, body, timeout_s)
        except Exception as exc:
            raise _call_error(exc, timeout_s, self.secrets) from None
        if not 200 <= status < 300:
            raise CallError(kind_of_status(status) or ErrorKind.MALFORMED, f"HTTP {status}", status=status)


class TelegramChannel:
    """The Telegram Bot API's `sendMessage` to one chat (a user, a group or a channel).

    A 429 carries `parameters.retry_after` (seconds) in its JSON body, which the backoff honours; a 400
    (chat not found, bot not in the chat) or a 401 (bad token) is not retried.
    """

    def __init__(self, token: str, chat_id: str, api: str = "https://api.telegram.org") -> None:
        self.name = "telegram"
        self._url = f"{api.rstrip('/')}/bot{token}/sendMessage"
        self._chat_id = chat_id
        self.secrets = (token,)

    def send(self, text: str, timeout_s: float) -> None:
        body = json.dumps({"chat_id": self._chat_id, "text": text, "disable_web_page_preview": True}).encode()
        request = urllib.request.Request(self._url, data=body, method="POST",  # noqa: S310 (the Bot API's URL)
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
                answer = _json_or_none(response.read())
        except urllib.error.HTTPError as exc:
            raise self._refused(exc, timeout_s) from None
        except Exception as exc:
            raise _call_error(exc, timeout_s, self.secrets) from None
        if not (isinstance(answer, dict) and answer.get("ok") is True):
            raise CallError(ErrorKind.MALFORMED, "the Bot API answered without ok: true")

    def _refused(self, exc: urllib.error.HTTPError, timeout_s: float) -> CallError:
        try:
            answer = _json_or_none(exc.read())
        except Exception:  # the body is a courtesy; the status says enough
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        retry_after = parameters.get("retry_after")
        description = redact(str(answer.get("description") or exc.reason), self.secrets)
        return CallError(kind_of_status(exc.code) or ErrorKind.SERVER, f"Bot API: {description}", status=exc.code,
                         retry_after=float(retry_after) if isinstance(retry_after, int | float) else
                         parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None))


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def channels_from_env(config: AlertConfig, environ: Mapping[str, str] = os.environ,
                      post: PostFn = post_json) -> list[Channel]:
    """The channels whose secrets are set. A Telegram token without a chat id (or the reverse) is a
    configuration mistake: it is logged by name, and that channel stays off."""
    channels: list[Channel] = []
    if url := environ.get(WEBHOOK_ENV):
        channels.append(WebhookChannel(url, post))
    token, chat = environ.get(TELEGRAM_TOKEN_ENV), environ.get(TELEGRAM_CHAT_ENV)
    if token and chat:
        channels.append(TelegramChannel(token, chat, config.telegram_api))
    elif token or chat:
        missing = TELEGRAM_CHAT_ENV if token else TELEGRAM_TOKEN_ENV
        logger.error("Telegram alerts are off: %s is not set", missing)
    return channels


class Outbox:
    """One channel's queue and the daemon thread that delivers it through a ResilientCaller."""

    def __init__(self, channel: Channel, config: AlertConfig) -> None:
        self.channel = channel
        self.config = config
        self._stop = threading.Event()
        sleep = self._stop.wait  # a wait that close() cuts short
        self.caller = ResilientCaller(
            f"alerts:{channel.name}",
            limiter=TokenBucket(config.per_minute / 60.0, burst=max(1.0, min(5.0, config.per_minute)), sleep=sleep),
            retry=RetryPolicy(base_s=config.backoff_s, cap_s=max(config.backoff_s, config.backoff_cap_s),
                              tries=config.tries),
            failure_threshold=config.breaker_failures, probe_after_s=config.breaker_probe_s,
            max_probe_after_s=max(config.breaker_probe_s, 3600.0), sleep=sleep)
        self._queue: queue.Queue[str] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0  # messages pushed out of a full queue

    def submit(self, text: str) -> None:
        while True:
            try:
                self._queue.put_nowait(text)
                break
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                    with self._lock:
                        self.dropped += 1
                    logger.warning("alert queue full, oldest message dropped", extra={"channel": self.channel.name})
                except queue.Empty:
                    pass
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=f"alerts-{self.channel.name}", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued message was delivered or given up on; False if the time ran out first."""
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout_s: float) -> None:
        self.flush(timeout_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                text = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._deliver(text)
            finally:
                self._queue.task_done()

    def _deliver(self, text: str) -> None:
        started = time.monotonic()
        try:
            self.caller.call("send", lambda: self.channel.send(text, self.config.timeout_s), idempotent=True)
        except CircuitOpen as exc:
            error = f"not sent: the channel's circuit breaker is open (next probe in {exc.retry_in_s:.0f} s)"
        except CallError as exc:
            error = redact(str(exc), self.channel.secrets)
        except Exception as exc:  # our own bug: still never raised into the loop, never with a secret
            error = redact(f"{type(exc).__name__}: {exc}", self.channel.secrets)
        else:
            with self._lock:
                self.sent += 1
            return
        with self._lock:
            self.failed += 1
        logger.warning("alert delivery failed", extra={"channel": self.channel.name, "error": error,
                                                       "elapsed_s": round(time.monotonic() - started, 3)})


# --- the alerter ----------------------------------------------------------------------------------

class Alerter:
    """Rate-limited alerts to every configured channel. Thread-safe; never raises from its public methods."""

    def __init__(self, channels: Sequence[Channel] = (), config: AlertConfig | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or AlertConfig()
        self._outboxes = [Outbox(c, self.config) for c in channels]
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, State] = {}
        self._sent_at: dict[str, deque[float]] = {}
        self._suppressed: dict[str, int] = {}
        self._suppressed_since: dict[str, float] = {}

    @classmethod
    def from_env(cls, config: AlertConfig | None = None, environ: Mapping[str, str] = os.environ, *,
                 post: PostFn = post_json, **kwargs: Any) -> Alerter:
        config = config or AlertConfig()
        return cls(channels_from_env(config, environ, post), config, **kwargs)

    @property
    def enabled(self) -> bool:
        return bool(self._outboxes) and self.config.enabled

    @property
    def channels(self) -> list[str]:
        return [o.channel.name for o in self._outboxes]

    @property
    def sent(self) -> int:
        """Messages delivered, summed over the channels."""
        return sum(o.sent for o in self._outboxes)

    @property
    def failed(self) -> int:
        """Messages a channel did not take after every retry (or refused by its open breaker)."""
        return sum(o.failed for o in self._outboxes)

    def outbox(self, channel: str) -> Outbox:
        return next(o for o in self._outboxes if o.channel.name == channel)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every channel has delivered or given up on what it holds (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        return all(o.flush(max(0.0, deadline - time.monotonic())) for o in self._outboxes)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within `timeout_s`) and stop the delivery threads."""
        deadline = time.monotonic() + timeout_s
        for o in self._outboxes:
            o.close(max(0.0, deadline - time.monotonic()))

    def suppressed(self) -> dict[str, int]:
        """Alerts held back by the rate limit and not yet summarised, by component."""
        with self._lock:
            return {k: v for k, v in self._suppressed.items() if v}

    # --- the inputs -------------------------------------------------------------------------------

    def on_report(self, report: HealthReport) -> bool:
        """Alert on every component whose state changed since the last report (a health listener).

        On the first report only components already degraded or down are announced. Returns whether
        a message was queued for delivery.
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
        for outbox in self._outboxes:
            outbox.submit(text)
        return True


def _span(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


# --- metrics --------------------------------------------------------------------------------------

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # what generate_latest writes
BREAKER_STATES = ("closed", "open", "half_open")


class _Snapshot:
    """A prometheus_client collector over one health report and one set of counters."""

    def __init__(self, report: HealthReport | None, counters: Mapping[str, int], age_s: float | None) -> None:
        self.report = report
        self.counters = counters
        self.age_s = age_s

    def collect(self) -> Iterator[Metric]:
        counters, report = self.counters, self.report
        yield _counter("controller_cycles_total", "Scan cycles run.", [], [([], counters.get("cycles", 0))])
        yield _counter("controller_signals_emitted_total", "Signals written to the queue.", [],
                       [([], counters.get("signals_emitted", 0))])
        yield _counter("controller_strategy_failures_total", "Strategies skipped in a cycle, by kind.", ["kind"],
                       [(["timeout"], counters.get("strategy_timeouts", 0)),
                        (["error"], counters.get("strategy_errors", 0))])
        yield _counter("controller_data_failures_total", "Candle fetches that failed.", [],
                       [([], counters.get("data_failures", 0))])
        if report is None:
            return
        yield _gauge("controller_health_report_timestamp_seconds", "When the last health report was made.", [],
                     [([], report.at.timestamp())])
        yield _gauge("controller_health_overall", "Worst state of the components that are not disabled.", ["state"],
                     [([s.value], int(report.state is s)) for s in (State.HEALTHY, State.DEGRADED, State.DOWN)])
        yield _gauge("controller_component_state", "1 for the state each component is in, else 0.",
                     ["component", "kind", "state"],
                     [([c.name, c.kind.value, s.value], int(c.state is s)) for c in report.components for s in State])
        seen = [c for c in report.components if c.last_seen is not None]
        if seen:
            yield _gauge("controller_heartbeat_age_seconds", "Seconds since the component's last heartbeat.",
                         ["component"], [([c.name], (report.at - c.last_seen).total_seconds()) for c in seen
                                         if c.last_seen is not None])
            yield _gauge("controller_progress_age_seconds", "Seconds since the component's progress changed.",
                         ["component"], [([c.name], (report.at - c.last_progress_at).total_seconds()) for c in seen
                                         if c.last_progress_at is not None])
        restarts = [c for c in report.components if c.kind is Kind.SUPERVISOR]
        if restarts:
            yield _counter("controller_supervisor_restarts_total", "Restarts made by the supervisor.", ["component"],
                           [([c.name.removeprefix("supervisor:")], int(c.detail.get("restarts", 0)))
                            for c in restarts])
        if report.endpoints:
            where = ["source", "endpoint"]
            eps = report.endpoints
            yield _gauge("controller_breaker_state", "1 for the state each endpoint's circuit breaker is in.",
                         [*where, "state"],
                         [([e.source, e.endpoint, s], int(e.breaker == s)) for e in eps for s in BREAKER_STATES])
            for name, attr, help_text in (("controller_api_calls_total", "calls", "Calls made (attempts)."),
                                          ("controller_api_successes_total", "successes", "Calls that succeeded."),
                                          ("controller_api_rate_limit_hits_total", "rate_limit_hits",
                                           "429/418 answers."),
                                          ("controller_api_refused_total", "refused",
                                           "Calls refused by an open breaker.")):
                yield _counter(name, help_text, where, [([e.source, e.endpoint], getattr(e, attr)) for e in eps])
            yield _counter("controller_api_failures_total", "Failed calls, by error kind.", [*where, "kind"],
                           [([e.source, e.endpoint, kind], n) for e in eps
                            for kind, n in sorted(e.failures_by_kind.items())])
            yield _gauge("controller_api_calls_per_minute", "Calls in the last minute.", where,
                         [([e.source, e.endpoint], e.calls_per_minute) for e in eps])
        if self.age_s is not None:
            yield _gauge("controller_health_report_age_seconds", "Seconds since the last health report.", [],
                         [([], max(0.0, self.age_s))])


def _counter(name: str, help_text: str, labels: list[str], samples: list[tuple[list[str], float]]) -> Metric:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _gauge(name: str, help_text: str, labels: list[str], samples: list[tuple[list[str], float]]) -> Metric:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric(values, value)
    return family


def render_metrics(report: HealthReport | None, counters: Mapping[str, int] | None = None,
                   age_s: float | None = None) -> str:
    """The text exposition format: component states, breakers and API counters from `report`, scan
    counters (`Scanner.counters`), supervisor restarts and, when given, the report's age."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(report, counters or {}, age_s))
    return generate_latest(registry).decode()


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
        age = (datetime.now(UTC) - report.at).total_seconds() if report else None
        return render_metrics(report, counters, age)
