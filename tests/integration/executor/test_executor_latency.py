"""Latency in the shipped configuration (issue 10): the stability gate decides on the tick a signal is claimed
once the bot has sampled a full window, and a new signal wakes the claimer by LISTEN/NOTIFY (direct transport)
or ends its waiting claim (long poll, PostgREST) instead of waiting for the claim poll. Hummingbot's real
Clock on the paper exchange, a real Postgres queue."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from uuid import UUID

import psycopg

from bridge.queue_client import PostgresQueue, PostgrestQueue
from controller.data.storage.postgres import PostgresStore
from offline.harness import Harness, executor_config, start, stop
from tests.support.executor import NO_WAIT, emit
from tests.support.postgrest_standin import PostgrestStandin, make_jwt

HOUR = 3600.0  # a claim poll this long never fires during a test: only a notification can wake the claimer



def entry_orders(url: str, signal_id: UUID) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from orders where signal_id = %s and purpose = 'entry'",
                            (signal_id,)).fetchone()[0]


async def claimed(harness: Harness, count: int = 1) -> None:
    """Wait in real time, without ticking, until the worker has claimed `count` signals in all."""
    await harness.until(lambda: harness.strategy.worker.stats["claimed"] >= count, tick=False)


def test_a_signal_claimed_once_the_window_is_full_is_placed_on_the_next_tick(store: PostgresStore,
                                                                            migrated_db: str, tmp_path: Path) -> None:
    """The shipped 5 s window, sampled every second since the bot became ready: no fresh 5 s wait at claim."""
    config = executor_config(tmp_path / "outbox.jsonl", stability_window_s=5, stability_sample_s=1)

    async def scenario() -> tuple[Harness, UUID, int]:
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await harness.step(6)  # the bot has watched BTC-USDT for more than its 5 s window
            assert harness.strategy.prices.full("BTC-USDT", harness.now)
            signal_id = emit(store)
            await claimed(harness)
            await harness.step(1)  # exactly one tick: the claimed signal is gated on the window and entered
            placed = sum(1 for p in harness.strategy.positions.values() for o in p.orders.values()
                         if o.purpose == "entry")
            await harness.drained()
            return harness, signal_id, placed
        finally:
            stop(harness)

    harness, signal_id, placed = asyncio.run(scenario())
    assert placed == 1
    assert signal_id in harness.strategy.positions and not harness.strategy.pending
    assert entry_orders(migrated_db, signal_id) == 1


def test_a_swing_inside_the_rolling_window_still_rejects_at_claim(store: PostgresStore, migrated_db: str,
                                                                 tmp_path: Path) -> None:
    """The window decides at claim on what the bot saw before the signal existed: a 1 % swing 3 s ago rejects."""
    config = executor_config(tmp_path / "outbox.jsonl", stability_window_s=5, stability_sample_s=1)

    async def scenario() -> tuple[Harness, UUID]:
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await harness.step(6)
            harness.book("BTC-USDT", 101.0)
            await harness.step(1)
            harness.book("BTC-USDT", 100.0)
            await harness.step(2)
            signal_id = emit(store)
            await claimed(harness)
            await harness.step(1)
            await harness.drained()
            return harness, signal_id
        finally:
            stop(harness)

    harness, signal_id = asyncio.run(scenario())
    assert harness.strategy.rejections == {"unstable": 1}
    assert entry_orders(migrated_db, signal_id) == 0
    with psycopg.connect(migrated_db) as conn:
        status, reason = conn.execute("select status, reject_reason from signals where id = %s",
                                      (signal_id,)).fetchone()
    assert status == "rejected" and "within 5 s" in reason


def test_notify_wakes_the_claimer_between_polls(store: PostgresStore, migrated_db: str, tmp_path: Path) -> None:
    """With an hour between claim polls, a new signal is still claimed: by its notification, one claim call."""
    config = executor_config(tmp_path / "outbox.jsonl", claim_interval_s=HOUR)

    async def scenario() -> tuple[Harness, list[UUID], dict[str, int]]:
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        worker = harness.strategy.worker
        try:
            # the first claim (on the first ready tick) and the LISTEN connection
            await harness.until(lambda: worker.stats["claim_calls"] == 1 and worker.listening.is_set())
            polls_before = worker.stats["claim_calls"]
            other = emit(store, symbol="SOL-USDT")  # a market this bot does not trade: no wake-up
            first = emit(store)
            await claimed(harness)
            second = emit(store, symbol="ETH-USDT", price=50.0)
            await claimed(harness, 2)
            await harness.until(lambda: len(harness.strategy.positions) == 2)
            await harness.drained()
            stats = {"claim_calls": worker.stats["claim_calls"] - polls_before, "notified": worker.stats["notified"]}
            return harness, [other, first, second], stats
        finally:
            stop(harness)

    harness, (other, first, second), stats = asyncio.run(scenario())
    assert set(harness.strategy.positions) == {first, second}
    assert stats == {"claim_calls": 2, "notified": 2}  # one claim per notification of ours, none for SOL-USDT
    assert entry_orders(migrated_db, first) == entry_orders(migrated_db, second) == 1
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select status from signals where id = %s", (other,)).fetchone()[0] == "new"


def test_without_listen_the_claimer_waits_for_its_poll(store: PostgresStore, migrated_db: str,
                                                       tmp_path: Path) -> None:
    """queue_listen off (PostgREST, or a pooling proxy): no LISTEN connection, the poll alone claims."""
    config = executor_config(tmp_path / "outbox.jsonl", queue_listen=False, claim_interval_s=0.05)

    async def scenario() -> Harness:
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        worker = harness.strategy.worker
        try:
            await harness.until(lambda: worker.stats["claim_calls"] >= 1)
            emit(store)
            await claimed(harness)
            return harness
        finally:
            stop(harness)

    harness = asyncio.run(scenario())
    worker = harness.strategy.worker
    assert worker.stats["notified"] == 0 and not worker.listening.is_set()
    assert worker.stats["claim_calls"] >= 2  # claimed by a later poll


def sleeping_claims(url: str) -> int:
    """Requests inside claim_signals_wait's sleep right now."""
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from pg_stat_activity where wait_event = 'PgSleep'").fetchone()[0]


def test_on_postgrest_the_long_poll_claims_between_polls_and_never_holds_up_reports(
        store: PostgresStore, migrated_db: str, tmp_path: Path) -> None:
    """PostgREST cannot LISTEN: with an hour between claim polls the bot still claims each signal, inside the
    claim that was waiting when it was emitted, and what it reports goes out while the next claim waits."""
    secret = secrets.token_hex(32)
    config = executor_config(tmp_path / "outbox.jsonl", queue_transport="postgrest", claim_interval_s=HOUR,
                             claim_wait_s=15)

    async def scenario() -> tuple[list[UUID], dict[str, int]]:
        with PostgrestStandin(migrated_db, secret) as standin:
            harness = start(config, PostgrestQueue(standin.base_url, make_jwt(secret, "executor"), retry=NO_WAIT))
            worker = harness.strategy.worker
            try:
                await harness.until(lambda: worker.stats["claim_calls"] == 1 and sleeping_claims(migrated_db) == 1)
                other = emit(store, symbol="SOL-USDT")  # not this bot's market: does not end the wait
                first = emit(store, time_limit_s=30)  # closed by its time limit once the clock runs on
                await claimed(harness)
                second = emit(store, symbol="ETH-USDT", price=50.0)
                await claimed(harness, 2)
                await harness.until(lambda: len(harness.strategy.positions) == 2)
                await harness.drained()
                await harness.until(lambda: sleeping_claims(migrated_db) == 1, tick=False)
                calls = worker.stats["claim_calls"]
                await harness.until(lambda: first not in harness.strategy.positions)  # a sell and its reports
                await harness.drained()
                stats = {"calls_to_claim_both": calls, "calls_during_the_exit": worker.stats["claim_calls"] - calls,
                         "waiting_after_the_exit": sleeping_claims(migrated_db)}
                return [other, first, second], stats
            finally:
                stop(harness)

    (other, first, second), stats = asyncio.run(scenario())
    # one waiting claim per signal and the one waiting now (a claim that never waited would have been
    # called every 0.2 s); the exit was reported inside that one wait: the claim in flight did not end
    assert stats["calls_to_claim_both"] <= 4
    assert stats["calls_during_the_exit"] == 0 and stats["waiting_after_the_exit"] == 1
    assert entry_orders(migrated_db, first) == entry_orders(migrated_db, second) == 1
    with psycopg.connect(migrated_db) as conn:
        statuses = dict(conn.execute("select id, status from signals").fetchall())
        exits = conn.execute("select exit_reason from trades where signal_id = %s", (first,)).fetchall()
    assert statuses == {other: "new", first: "closed", second: "executing"}
    assert exits == [("time_limit",)]
