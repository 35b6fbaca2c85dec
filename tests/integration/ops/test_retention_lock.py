"""Retention and a concurrent writer: a row written to a partition while retention rewrites it is not lost.

`run_retention` copies the rows that stay (or move to the archive) out of a candle partition and swaps the
copy in at the end. A writer that inserted into that partition before the copy and commits after it would
lose its row with the old partition, unless retention takes the SHARE lock first (it then waits for the
writer, whose row is copied). The test holds such a writer open on a second connection, waits (polling the
database with a deadline, no sleep-and-hope) until retention is blocked behind it, commits, and checks that
both rows ended up where their tier says.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest

from controller.ops.retention import RetentionRow, run_retention
from tests.support.clock import WAIT_S
from tests.support.retention_seed import SEED

NOW = datetime(2025, 6, 15, tzinfo=UTC)
# 2025-04 is rewritten at NOW: its 1m rows move to the archive, its 15m / 1h / 1d rows stay hot.
WRITTEN_AT = "2025-04-10 00:07+00"  # off the seed's grid: these rows are the writer's alone


@pytest.fixture
def seeded_db(migrated_db: str) -> str:
    with psycopg.connect(migrated_db) as conn:
        conn.execute(SEED)
    return migrated_db


def waiting_on_a_lock(url: str, pid: int) -> bool:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("select wait_event_type = 'Lock' from pg_stat_activity where pid = %s",
                            (pid,)).fetchone()[0] is True


def test_a_row_written_during_retention_into_the_partition_it_rewrites_is_kept(seeded_db: str) -> None:
    writer = psycopg.connect(seeded_db)  # a transaction stays open until we commit it below
    retention = psycopg.connect(seeded_db)
    try:
        writer.execute("insert into candles values ('binance', 'BTC-USDT', '15m', %s, 7, 7, 7, 7, 7),"
                       " ('binance', 'BTC-USDT', '1m', %s, 7, 7, 7, 7, 7)", (WRITTEN_AT, WRITTEN_AT))
        outcome: dict[str, list[RetentionRow] | BaseException] = {}

        def run() -> None:
            try:
                outcome["report"] = run_retention(retention, now=NOW)
            except BaseException as exc:  # handed to the test thread below
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        pid = retention.info.backend_pid
        deadline = time.monotonic() + WAIT_S
        blocked = False
        while time.monotonic() < deadline and thread.is_alive() and not blocked:
            blocked = waiting_on_a_lock(seeded_db, pid)
            if not blocked:
                thread.join(0.05)
        writer.commit()
        thread.join(120)
        assert not thread.is_alive(), "retention did not finish after the writer committed"
        assert blocked, "retention never waited for the writer's open transaction"
        assert "error" not in outcome, outcome.get("error")
        report = outcome["report"]
        assert isinstance(report, list) and any(r.action == "moved" and r.rows > 0 for r in report)
    finally:
        writer.close()
        retention.close()

    with psycopg.connect(seeded_db) as conn:
        hot = conn.execute("select timeframe, close from candles where ts = %s", (WRITTEN_AT,)).fetchall()
        archived = conn.execute("select timeframe, close from candles_archive where ts = %s",
                                (WRITTEN_AT,)).fetchall()
    assert hot == [("15m", 7)]
    assert archived == [("1m", 7)]
