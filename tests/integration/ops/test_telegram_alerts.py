"""Telegram alerts against a local stand-in of the Bot API over real HTTP on 127.0.0.1.

The stand-in is not Telegram: it answers `sendMessage` the way the Bot API documents it (`ok`, `result`,
and on a 429 `parameters.retry_after`), records every request, and can be told to refuse the next ones.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bridge.redaction import redact
from bridge.resilience import BreakerState
from controller.ops.alerts import AlertConfig, Alerter
from controller.ops.health import ComponentHealth, HealthReport, Kind, State
from tests.support.clock import FakeClock

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
CHAT = "-1001234567890"


class BotApiStandIn:
    """A stand-in for the Telegram Bot API (not the real service): records each request's path and JSON body,
    answers 200 `{"ok": true}` unless `script` holds planned answers (status, retry_after) for the next calls."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.at: list[float] = []
        self.script: list[tuple[int, int | None]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                api.requests.append((self.path, body))
                api.at.append(time.monotonic())
                status, retry_after = api.script.pop(0) if api.script else (200, None)
                if status == 200:
                    answer: dict[str, Any] = {"ok": True, "result": {"message_id": len(api.requests),
                                                                     "chat": {"id": int(body["chat_id"])},
                                                                     "text": body["text"]}}
                elif status == 429:
                    answer = {"ok": False, "error_code": 429,
                              "description": f"Too Many Requests: retry after {retry_after}",
                              "parameters": {"retry_after": retry_after}}
                else:
                    answer = {"ok": False, "error_code": status, "description": "Bad Request: chat not found"
                              if status == 400 else "Internal Server Error"}
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def texts(self) -> list[str]:
        return [body["text"] for _, body in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[BotApiStandIn]:
    a = BotApiStandIn()
    yield a
    a.close()


def env() -> dict[str, str]:
    return {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_CHAT_ID": CHAT}


def down() -> HealthReport:
    from datetime import UTC, datetime
    return HealthReport(datetime(2026, 3, 1, tzinfo=UTC), (ComponentHealth("store", Kind.OTHER, State.DOWN),))


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def test_an_alert_is_sent_with_send_message_to_the_chat_from_the_environment(api: BotApiStandIn) -> None:
    alerter = Alerter.from_env(AlertConfig(name="prod", telegram_api=api.url), env(), clock=FakeClock())
    assert alerter.channels == ["telegram"]
    assert alerter.on_report(down()) and alerter.flush()
    ((path, body),) = api.requests
    assert path == f"/bot{TOKEN}/sendMessage"
    assert body == {"chat_id": CHAT, "text": "[prod] store started -> down", "disable_web_page_preview": True}
    assert alerter.sent == 1 and alerter.failed == 0


def test_both_channels_get_the_same_message(api: BotApiStandIn) -> None:
    bodies: list[bytes] = []

    def post(url: str, body: bytes, timeout_s: float) -> int:
        bodies.append(body)
        return 204

    alerter = Alerter.from_env(AlertConfig(telegram_api=api.url), {**env(), "ALERT_WEBHOOK_URL": "https://hook"},
                               post=post, clock=FakeClock())
    assert alerter.channels == ["webhook", "telegram"]
    alerter.alert("controller", "test alert")
    assert alerter.flush()
    assert api.texts() == ["[controller] test alert"] and json.loads(bodies[0])["text"] == "[controller] test alert"


def test_a_429_waits_the_retry_after_the_api_asked_for_then_delivers(api: BotApiStandIn) -> None:
    api.script = [(429, 1)]
    alerter = Alerter.from_env(AlertConfig(telegram_api=api.url, backoff_s=0.01), env(), clock=FakeClock())
    alerter.alert("controller", "test alert")
    assert alerter.flush(30)
    assert api.texts() == ["[controller] test alert"] * 2  # refused once, then taken
    stats = alerter.outbox("telegram").caller.health()["endpoints"]["send"]
    assert stats["rate_limit_hits"] == 1 and stats["retries"] == 1 and stats["successes"] == 1
    # the retry did not go out before the API allowed it (backoff_s alone would have waited 0.01 s)
    assert api.at[1] - api.at[0] >= 0.95
    assert alerter.sent == 1


def test_server_errors_are_retried_with_backoff_and_open_the_breaker(api: BotApiStandIn,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    api.script = [(500, None)] * 6
    config = AlertConfig(telegram_api=api.url, backoff_s=0.01, backoff_cap_s=0.05, tries=3, breaker_failures=3,
                         breaker_probe_s=600)
    alerter = Alerter.from_env(config, env(), clock=FakeClock())
    caplog.set_level(logging.INFO)
    alerter.alert("a", "first")
    assert alerter.flush(30)
    assert len(api.requests) == 3 and alerter.failed == 1  # three tries, then given up
    outbox = alerter.outbox("telegram")
    assert outbox.caller.breaker("send").state is BreakerState.OPEN
    alerter.alert("b", "second")  # refused locally while the breaker is open: the API is not called
    assert alerter.flush(30)
    assert len(api.requests) == 3 and alerter.failed == 2
    assert "circuit breaker is open" in logged(caplog)
    assert "Internal Server Error" in logged(caplog)
    assert TOKEN not in logged(caplog) and TOKEN.split(":")[1] not in logged(caplog)


def test_a_wrong_chat_is_not_retried(api: BotApiStandIn, caplog: pytest.LogCaptureFixture) -> None:
    api.script = [(400, None)]
    alerter = Alerter.from_env(AlertConfig(telegram_api=api.url, backoff_s=0.01), env(), clock=FakeClock())
    caplog.set_level(logging.INFO)
    alerter.alert("a", "x")
    assert alerter.flush(30)
    assert len(api.requests) == 1 and alerter.failed == 1
    assert "chat not found" in logged(caplog)


def test_an_unreachable_api_never_logs_the_token(caplog: pytest.LogCaptureFixture) -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    alerter = Alerter.from_env(AlertConfig(telegram_api=f"http://127.0.0.1:{port}", tries=1, timeout_s=2), env(),
                               clock=FakeClock())
    caplog.set_level(logging.INFO)
    alerter.alert("a", "x")
    assert alerter.flush(30)
    assert alerter.failed == 1 and "Connection refused" in logged(caplog)
    assert TOKEN not in logged(caplog) and TOKEN.split(":")[1] not in logged(caplog)


def test_redaction_masks_a_bot_token_in_a_url_it_was_not_told_about() -> None:
    text = redact(f"URLError: https://api.telegram.org/bot{TOKEN}/sendMessage: refused")
    assert TOKEN.split(":")[1] not in text and "/bot***/sendMessage" in text


def test_half_a_telegram_configuration_is_named_and_stays_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    alerter = Alerter.from_env(AlertConfig(), {"TELEGRAM_BOT_TOKEN": TOKEN})
    assert alerter.channels == [] and not alerter.enabled
    assert "TELEGRAM_CHAT_ID is not set" in caplog.text and TOKEN not in caplog.text
