"""The Hummingbot script's own error text (its status line and its log) holds no queue password.

The script records the last queue error for `status` and logs refusals; both come from the queue client's
exceptions. Here the script's real QueueWorker talks to a real, unreachable queue whose address carries a
password, on both transports, and every text the script keeps or logs is checked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hummingbot.core.data_type.common import PriceType

from bridge.queue_client import PostgresQueue, PostgrestQueue
from bridge.resilience import RetryPolicy
from executor.outbox import Outbox
from executor.worker import QueueWorker
from offline.harness import PaperExchange, executor_config, start, stop
from tests.support.net import refusing_port

PASSWORD = "Sup3r-s3cret-pw"
NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=2)


@pytest.mark.parametrize("transport", ["postgres", "postgrest"])
def test_queue_errors_kept_for_status_and_logged_hold_no_password(tmp_path: Path, transport: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with refusing_port() as port:  # every call fails
        if transport == "postgres":
            client = PostgresQueue(f"postgresql://executor:{PASSWORD}@127.0.0.1:{port}/trading", timeout_s=1,
                                   retry=NO_WAIT)
        else:
            client = PostgrestQueue(f"http://executor:{PASSWORD}@127.0.0.1:{port}", PASSWORD, token=PASSWORD,
                                    timeout_s=0.5, retry=NO_WAIT)
        worker = QueueWorker(client, Outbox(tmp_path / "outbox.jsonl"),
                             executor_config(tmp_path / "outbox.jsonl"), {"binance": None})
        worker.capacity = 1
        with caplog.at_level(logging.DEBUG):
            worker._heartbeat()
            worker._claim()
            worker._restore()
        client.close()

    assert worker.last_error, "the calls were expected to fail"
    assert sum(n for k, n in worker.stats.items() if k.startswith("errors_")) == 3  # heartbeat, claim, restore
    assert PASSWORD not in worker.last_error
    assert PASSWORD not in caplog.text


class EchoingQueue(BaseHTTPRequestHandler):
    """A queue endpoint that refuses every call and echoes the credential it was sent (some proxies do)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"message": f"credential {self.headers['apikey']} not accepted here"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LeakyExchange(PaperExchange):
    """A connector whose error text carries the key, as a real one's request URL can."""

    leak: str | None = None

    def get_price_by_type(self, trading_pair: str, price_type: PriceType) -> Decimal:
        if self.leak:
            raise OSError(f"price request failed: {self.leak}")
        return super().get_price_by_type(trading_pair, price_type)


def test_status_and_hummingbots_logs_never_show_the_queues_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """The key (no secret-looking context around it, so only knowing the value masks it) comes back in the
    queue's error, in an outbox record the queue refuses, and in an exception raised inside the clock's tick:
    the status and every log line Hummingbot's handlers receive show *** instead."""
    key = "k7Qw-plain-value-9xZ"
    server = ThreadingHTTPServer(("127.0.0.1", 0), EchoingQueue)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("QUEUE_URL", url)
    monkeypatch.setenv("SUPABASE_ANON_KEY", key)
    monkeypatch.delenv("EXECUTOR_JWT", raising=False)
    outbox = tmp_path / "outbox.jsonl"
    outbox.write_text(json.dumps({"seq": 1, "kind": "ack", "signal_id": "00000000-0000-0000-0000-000000000001",
                                  "consumer": "bot-a", "status": "closed", "reason": None}) + "\n")
    exchange = LeakyExchange()
    exchange.set_balance("USDT", 1000)

    async def scenario() -> tuple[str, str]:
        with caplog.at_level(logging.INFO):
            harness = start(executor_config(outbox, queue_transport="postgrest"),
                            PostgrestQueue(url, key, retry=NO_WAIT), exchange=exchange)
            try:
                worker = harness.strategy.worker
                await harness.until(lambda: worker.stats["refused"] == 1 and worker.last_error is not None)
                status = harness.strategy.format_status()
                exchange.leak = f"GET /ticker failed for {key}"
                await harness.step(2)  # the tick raises; Hummingbot's clock logs it with its traceback
                return status, worker.last_error or ""
            finally:
                exchange.leak = None
                stop(harness)
                server.shutdown()

    status, last_error = asyncio.run(scenario())
    assert key in last_error  # the worker keeps the raw error; only what a person sees is masked
    assert "last error" in status and "credential *** not accepted" in status and key not in status
    messages = [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    assert any("credential *** not accepted" in m for m in messages)  # the refused outbox record, masked
    assert any("GET /ticker failed for ***" in m for m in messages)  # the clock's traceback, masked
    assert key not in caplog.text and all(key not in m for m in messages)
