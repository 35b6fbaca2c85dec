"""The executor's outbox (issue 10, items 4 and 10): an expired key loses nothing, a torn line does not stop the
bot, a delivered outbox is compacted, each bot has its own file."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from bridge.queue_client import PostgresQueue
from controller.data.storage.postgres import PostgresStore
from executor.config import SignalExecutorConfig
from executor.outbox import Outbox
from offline.harness import executor_config, start, stop
from tests.support.executor import NO_WAIT, emit, open_position, run, signal_row, trade_row


def test_an_expired_key_keeps_every_event_until_the_key_works_again(store: PostgresStore, migrated_db: str,
                                                                     tmp_path: Path) -> None:
    """While the queue refuses the bot's key (401/403: here a role that may not call the queue functions), the
    position's exit events stay in the outbox; once the key works they are delivered, in order, once."""
    signal_id = emit(store)

    async def scenario() -> tuple[int, int]:
        harness = start(executor_config(tmp_path / "outbox.jsonl"), PostgresQueue(migrated_db, retry=NO_WAIT))
        good = harness.strategy.worker.queue
        try:
            await open_position(harness, migrated_db, signal_id)
            harness.strategy.worker.queue = PostgresQueue(migrated_db, role="authenticated", retry=NO_WAIT)
            harness.book("BTC-USDT", 103.5)
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.until(lambda: harness.strategy.worker.stats["errors_auth"] >= 1)
            await harness.step(10)
            kept = len(harness.strategy.outbox)
            assert trade_row(migrated_db, signal_id) is None and signal_row(migrated_db, signal_id)["status"] == \
                "executing"
            harness.strategy.worker.queue = good  # the key is fixed
            await harness.drained()
            return kept, harness.strategy.worker.stats["refused"]
        finally:
            stop(harness)

    kept, refused = run(scenario())
    assert kept >= 5  # exit created, filled, completed, the closed position and the ack
    assert refused == 0
    assert trade_row(migrated_db, signal_id)["exit_reason"] == "take_profit"
    assert signal_row(migrated_db, signal_id)["status"] == "closed"
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select purpose, status from orders where signal_id = %s order by created_at",
                            (signal_id,)).fetchall() == [("entry", "filled"), ("exit", "filled")]


def test_a_torn_last_line_is_skipped_and_a_delivered_outbox_is_compacted(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    first = {"seq": 1, "kind": "ack", "signal_id": "a", "consumer": "bot-a", "status": "executing", "reason": None}
    second = {"seq": 2, "kind": "ack", "signal_id": "b", "consumer": "bot-a", "status": "executing", "reason": None}
    path.write_text(json.dumps(first) + "\n" + json.dumps({"sent": 1}) + "\n" + json.dumps(second) + "\n"
                    + '{"seq": 3, "kind": "rep')  # the bot died while writing record 3 (never sent)

    outbox = Outbox(path)
    assert outbox.peek() == second and len(outbox) == 1
    assert [json.loads(line) for line in path.read_text().splitlines()] == [second]  # compacted, torn line gone

    outbox.append("ack", {"signal_id": "c", "status": "closed", "reason": None})
    assert [json.loads(line)["seq"] for line in path.read_text().splitlines()] == [2, 3]
    outbox.mark_sent(2)
    outbox.mark_sent(3)
    assert len(outbox) == 0 and path.read_text() == ""  # all delivered: nothing left to grow

    path.write_text(json.dumps(first) + "\nnot json\n" + json.dumps(second) + "\n")
    with pytest.raises(ValueError, match="line 2: not JSON"):  # damage mid-file is not silently dropped
        Outbox(path)


def test_each_bot_has_its_own_outbox_file_by_default() -> None:
    a, b = SignalExecutorConfig(consumer="bot-a"), SignalExecutorConfig(consumer="bot-b")
    assert a.outbox_path.format(consumer=a.consumer) != b.outbox_path.format(consumer=b.consumer)
    assert "bot-a" in a.outbox_path.format(consumer=a.consumer)
