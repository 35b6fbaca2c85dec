"""The queue under concurrency on a real Postgres: consumers in threads, each with its own connection,
claim from one queue at the same time; no signal is handed out twice, none is lost, and a consumer that
stops without acking loses its signals to another once its lease runs out."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.support.clock import WAIT_S, wait_for_database_time

# A hang is what these tests would show a lost lock as; the bound only ends a failing test, so it is sized for
# a loaded 2-core box (the run-wide pytest timeout is longer still).
HANG_S = 3 * WAIT_S

N_SIGNALS = 1000
N_CONSUMERS = 8
BATCH = 25


def signal(symbol: str, strategy: str = "rsi_dip") -> dict[str, Any]:
    return {"strategy": strategy, "exchange": "binance", "symbol": symbol, "side": "buy", "price": 1.25,
            "quote_amount": 50, "take_profit_pct": 1.0, "confidence": 0.7,
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}


def emit_many(url: str, symbols: list[str]) -> list[uuid.UUID]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set role service_role")
        rows = conn.execute("select emit_signal(s) from jsonb_array_elements(%s) with ordinality as t(s, n)"
                            " order by n", [Jsonb([signal(s) for s in symbols])]).fetchall()
    return [r[0] for r in rows]


def executor_conn(url: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("set role executor")
    return conn


def claim(conn: psycopg.Connection, consumer: str, max_count: int, lease_seconds: int) -> list[uuid.UUID]:
    return [r[0] for r in conn.execute("select id from claim_signals(%s, %s, %s)",
                                       [consumer, max_count, lease_seconds])]


def drain(url: str, consumers: list[str], lease_seconds: int = 300) -> dict[str, list[uuid.UUID]]:
    """Every consumer claims batches in its own thread and connection until the queue gives it nothing."""
    start = threading.Barrier(len(consumers))

    def run(consumer: str) -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        with executor_conn(url) as conn:
            start.wait(timeout=WAIT_S)
            while batch := claim(conn, consumer, BATCH, lease_seconds):
                got.extend(batch)
        return got

    with ThreadPoolExecutor(max_workers=len(consumers)) as pool:
        futures = {c: pool.submit(run, c) for c in consumers}
        return {c: f.result(timeout=WAIT_S) for c, f in futures.items()}


@pytest.mark.timeout(HANG_S)
def test_eight_consumers_claim_each_of_a_thousand_signals_exactly_once(migrated_db: str) -> None:
    emitted = emit_many(migrated_db, [f"S{i:04d}-USDT" for i in range(N_SIGNALS)])
    assert len(set(emitted)) == N_SIGNALS

    received = drain(migrated_db, [f"bot-{n}" for n in range(N_CONSUMERS)])

    handed_out = [signal_id for ids in received.values() for signal_id in ids]
    twice = [signal_id for signal_id, n in Counter(handed_out).items() if n > 1]
    assert twice == []
    assert set(handed_out) == set(emitted)
    assert sum(1 for ids in received.values() if ids) >= 2, "the consumers did not actually share the queue"
    with psycopg.connect(migrated_db) as conn:
        rows = {r[0]: r[1:] for r in conn.execute("select id, status, claimed_by, claim_count from signals")}
    expected = {signal_id: ("claimed", consumer, 1) for consumer, ids in received.items() for signal_id in ids}
    assert rows == expected


def latest_lease(url: str) -> datetime:
    with psycopg.connect(url) as conn:
        return conn.execute("select max(lease_until) from signals").fetchone()[0]


@pytest.mark.timeout(HANG_S)
def test_a_stopped_consumers_signals_go_to_another_after_the_lease_and_its_late_ack_is_refused(
        migrated_db: str) -> None:
    emitted = emit_many(migrated_db, [f"L{i:02d}-USDT" for i in range(10)])
    with executor_conn(migrated_db) as stopped, executor_conn(migrated_db) as other:
        taken = claim(stopped, "bot-stopped", 10, 1)  # ... and then it never acks
        assert sorted(taken) == sorted(emitted)
        assert claim(other, "bot-other", 10, 60) == []  # the lease still holds

        wait_for_database_time(migrated_db, latest_lease(migrated_db))
        retaken = claim(other, "bot-other", 10, 60)
        assert retaken == taken
        for signal_id in retaken:
            other.execute("select ack_signal(%s, %s, 'executing')", [signal_id, "bot-other"])
            other.execute("select ack_signal(%s, %s, 'closed')", [signal_id, "bot-other"])

        # refused with the claim-taken code (PT409, migration 0012), which the executor drops, not a key error
        for status in ["executing", "closed"]:
            with pytest.raises(psycopg.Error) as refused:
                stopped.execute("select ack_signal(%s, %s, %s)", [taken[0], "bot-stopped", status])
            assert refused.value.sqlstate == "PT409"
        with pytest.raises(psycopg.Error) as refused:
            stopped.execute("select ack_signal(%s, %s, 'rejected', 'woke up late')", [taken[-1], "bot-stopped"])
        assert refused.value.sqlstate == "PT409"
        assert claim(stopped, "bot-stopped", 10, 60) == []

    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("select status, claimed_by, claim_count, executing_at is not null,"
                            " finished_at is not null from signals").fetchall()
    assert rows == [("closed", "bot-other", 2, True, True)] * len(emitted)


@pytest.mark.timeout(HANG_S)
def test_signals_of_a_stopped_consumer_are_reclaimed_exactly_once_by_racing_consumers(migrated_db: str) -> None:
    emitted = emit_many(migrated_db, [f"R{i:03d}-USDT" for i in range(200)])
    with executor_conn(migrated_db) as stopped:
        assert len(claim(stopped, "bot-stopped", 1000, 1)) == len(emitted)
    wait_for_database_time(migrated_db, latest_lease(migrated_db))

    received = drain(migrated_db, [f"bot-{n}" for n in range(N_CONSUMERS)])

    handed_out = [signal_id for ids in received.values() for signal_id in ids]
    assert len(handed_out) == len(set(handed_out)) == len(emitted)
    assert set(handed_out) == set(emitted)
    with psycopg.connect(migrated_db) as conn:
        rows = {r[0]: r[1:] for r in conn.execute("select id, claimed_by, claim_count from signals")}
    assert rows == {signal_id: (consumer, 2) for consumer, ids in received.items() for signal_id in ids}


@pytest.mark.timeout(HANG_S)
def test_racing_emits_of_the_same_signal_store_exactly_one(migrated_db: str) -> None:
    start = threading.Barrier(N_CONSUMERS)

    def emit_once(_: int) -> str:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute("set role service_role")
            start.wait(timeout=WAIT_S)
            try:
                conn.execute("select emit_signal(%s)", [Jsonb(signal("BTC-USDT"))])
            except psycopg.errors.UniqueViolation:
                return "duplicate"
            return "stored"

    with ThreadPoolExecutor(max_workers=N_CONSUMERS) as pool:
        outcomes = Counter(pool.map(emit_once, range(N_CONSUMERS), timeout=WAIT_S))

    assert outcomes == {"stored": 1, "duplicate": N_CONSUMERS - 1}
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select count(*) from signals").fetchone()[0] == 1


@pytest.mark.timeout(HANG_S)
def test_a_claim_skips_rows_another_consumer_is_still_claiming_instead_of_waiting(migrated_db: str) -> None:
    # Deterministic form of the race: A's claim holds its row locks (its transaction is still open) while B
    # claims. B must get the next signal at once; waiting on A's lock is what losing SKIP LOCKED looks like.
    emitted = emit_many(migrated_db, ["A1-USDT", "A2-USDT"])  # one statement: same created_at, order by id
    with executor_conn(migrated_db) as a, executor_conn(migrated_db) as b:
        with a.transaction():
            [taken] = claim(a, "bot-a", 1, 60)
            b.execute("set lock_timeout = '5s'")
            assert claim(b, "bot-b", 10, 60) == [other for other in emitted if other != taken]
        assert claim(b, "bot-b", 10, 60) == []  # and once A commits, its row is claimed, not free
