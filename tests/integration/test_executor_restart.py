"""The executor across a restart and a stop (issue 10, items 3 and 9), on Hummingbot's real Clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bridge.queue_client import PostgresQueue, PostgrestQueue
from bridge.resilience import RetryPolicy
from controller.data.storage.postgres import PostgresStore
from offline.harness import Harness, executor_config, start, stop
from tests.integration.test_signal_executor import NO_WAIT, emit, run, signal_row, trade_row


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


def test_a_resting_entry_survives_a_restart_and_its_later_fill_reaches_the_position(
        store: PostgresStore, migrated_db: str, tmp_path: Path) -> None:
    """The bot dies with its limit entry resting on the exchange. The restarted bot's own order tracker is
    empty, so it asks the connector: the order is live, it is kept (not reported lost), and when it fills the
    position is managed to its take profit, once."""
    signal_id = emit(store)

    async def scenario() -> Harness:
        config = executor_config(tmp_path / "first.jsonl", entry_order_type="limit", limit_timeout_s=500,
                                 stale_order_s=600, lost_order_grace_s=5, health_check_interval_s=2)
        first = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        await first.until(lambda: signal_id in first.strategy.positions)
        await first.drained()
        assert len(first.exchange.limit_orders) == 1  # resting at the bid
        stop(first)  # gone, with the order resting

        second = start(config.model_copy(update={"outbox_path": str(tmp_path / "second.jsonl")}),
                       PostgresQueue(migrated_db, retry=NO_WAIT), exchange=first.exchange)
        try:
            await second.until(lambda: signal_id in second.strategy.positions)
            await second.step(20)  # several health checks past the lost-order grace
            position = second.strategy.positions[signal_id]
            assert [o.done for o in position.orders.values()] == [False]
            second.book("BTC-USDT", 99.9)  # the ask falls through the resting bid: it fills
            await second.until(lambda: position.entry_amount > 0)
            second.book("BTC-USDT", 103.5)
            await second.until(lambda: signal_id not in second.strategy.positions)
            await second.drained()
            return second
        finally:
            stop(second)

    second = run(scenario())
    assert second.strategy.health["lost_reconciled"] == 0
    with psycopg.connect(migrated_db) as conn:
        orders = conn.execute("select purpose, order_type, status from orders where signal_id = %s"
                              " order by created_at", (signal_id,)).fetchall()
    assert orders == [("entry", "limit", "filled"), ("exit", "market", "filled")]
    assert trade_row(migrated_db, signal_id)["exit_reason"] == "take_profit"
    assert signal_row(migrated_db, signal_id)["status"] == "closed"


def test_on_stop_returns_while_the_queue_call_is_still_hanging(tmp_path: Path) -> None:
    """Hummingbot awaits on_stop on its event loop: it must not wait for a queue call that hangs (here a
    server that never answers, 5 s timeout). The worker ends on its own and closes its client."""
    from tests.integration.test_queue_contract import BlackHole

    hole = BlackHole()
    ONE_TRY = RetryPolicy(base_s=0.0, cap_s=0.0, tries=1)

    async def scenario() -> tuple[bool, bool]:
        harness = start(executor_config(tmp_path / "outbox.jsonl"),
                        PostgrestQueue(f"http://127.0.0.1:{hole.port}", "key", timeout_s=5, retry=ONE_TRY))
        await harness.step(2)
        while not hole.accepted:  # the worker is inside a call that will not be answered
            await asyncio.sleep(0.02)
        await harness.strategy.on_stop()
        hanging_after_stop = harness.strategy.worker._thread.is_alive()
        harness.strategy.worker.join(30)
        ended = not harness.strategy.worker._thread.is_alive()
        harness.clock.__exit__(None, None, None)
        return hanging_after_stop, ended

    try:
        hanging_after_stop, ended = run(scenario())
    finally:
        hole.close()
    assert hanging_after_stop  # on_stop did not wait for it
    assert ended  # and the worker still finished by itself
