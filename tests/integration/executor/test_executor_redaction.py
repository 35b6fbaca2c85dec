"""The Hummingbot script's own error text (its status line and its log) holds no queue password.

The script records the last queue error for `status` and logs refusals; both come from the queue client's
exceptions. Here the script's real QueueWorker talks to a real, unreachable queue whose address carries a
password, on both transports, and every text the script keeps or logs is checked.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from bridge.queue_client import PostgresQueue, PostgrestQueue
from bridge.resilience import RetryPolicy
from hummingbot_scripts.signal_executor import Outbox, QueueWorker
from offline.harness import executor_config

PASSWORD = "Sup3r-s3cret-pw"
NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("transport", ["postgres", "postgrest"])
def test_queue_errors_kept_for_status_and_logged_hold_no_password(tmp_path: Path, transport: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens: every call fails
    if transport == "postgres":
        client = PostgresQueue(f"postgresql://executor:{PASSWORD}@127.0.0.1:{port}/trading", timeout_s=1,
                               retry=NO_WAIT)
    else:
        client = PostgrestQueue(f"http://executor:{PASSWORD}@127.0.0.1:{port}", PASSWORD, token=PASSWORD,
                                timeout_s=0.5, retry=NO_WAIT)
    worker = QueueWorker(client, Outbox(tmp_path / "outbox.jsonl"), executor_config(tmp_path / "outbox.jsonl"),
                         {"binance": None})
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
