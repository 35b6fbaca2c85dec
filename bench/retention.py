"""Retention benchmark: removing a month of 1-minute candles by dropping its partition vs DELETE.

30 days x 1440 minutes x 50 symbols = 2,160,000 1m candles (a random walk per symbol, January 2025), loaded
by PostgresStore.write_candles (binary COPY) into two fresh migrated databases, each vacuumed and analyzed:

(a) DROP TABLE of the month's partition (the mechanism), and `run_retention()` with `now` past the month's 1m
    delete horizon, which does the same for real: an exact count of the rows for its report (one sequential
    read), then the partition is replaced by an empty one (DROP + ATTACH). Each on the month freshly loaded.
(b) `DELETE FROM candles WHERE timeframe = '1m' AND ts in the month` (the baseline), then VACUUM.

Printed: the times, the ratios (target: DELETE at least 100x slower than dropping the partition), and the
candles table's size on disk (partitions, indexes, TOAST) after each: DELETE frees nothing until VACUUM, and
even then the indexes keep their size.

Durability: the throwaway server of bench/_support.py runs with fsync, full_page_writes and synchronous_commit
off (fast tests). Those settings remove most of what a DELETE costs on a real server (the WAL with a full-page
image of every page it touches) and nothing of what a DROP costs, so this script turns them back on, as
Supabase runs, before measuring. With TEST_DATABASE_URL the server is measured as it is configured.

Last line of output: one JSON object with every figure.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg
from _support import migrated_database, postgres_server

from controller.data.storage.postgres import PostgresStore

SYMBOLS = 50
DAYS = 30
MONTH_START = datetime(2025, 1, 1, tzinfo=UTC)
MONTH_END = datetime(2025, 2, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 15, tzinfo=UTC)  # January is past 1m's 90 days; nothing else is in the month
TARGET_RATIO = 100
DELETE = "delete from candles where timeframe = '1m' and ts >= %s and ts < %s"


def candle_frames(chunk: int = 10) -> Iterator[pd.DataFrame]:
    """The candles, `chunk` symbols at a time (a few hundred MB less memory than one frame)."""
    ts = pd.date_range(MONTH_START, periods=DAYS * 1440, freq="min")
    rng = np.random.default_rng(20250101)
    for first in range(0, SYMBOLS, chunk):
        frames = []
        for i in range(first, min(first + chunk, SYMBOLS)):
            close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, len(ts))))
            spread = np.abs(rng.normal(0, 0.0005, len(ts))) * close
            frames.append(pd.DataFrame({
                "exchange": "binance", "symbol": f"S{i:02d}-USDT", "timeframe": "1m", "ts": ts,
                "open": close, "high": close + spread, "low": close - spread, "close": close,
                "volume": rng.uniform(1, 100, len(ts))}))
        yield pd.concat(frames, ignore_index=True)


def load(url: str) -> tuple[int, float]:
    """Load the candles, then settle them as a month retention reaches is: vacuumed, analyzed, and untouched
    since the last checkpoint (so its first change writes full-page images, as on a real server).
    Returns (rows, seconds to load)."""
    store = PostgresStore(url)
    store.pool.wait()
    start = time.perf_counter()
    rows = sum(store.write_candles(frame) for frame in candle_frames())
    seconds = time.perf_counter() - start
    store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze candles")
        try:
            conn.execute("checkpoint")
        except psycopg.errors.InsufficientPrivilege:
            pass  # TEST_DATABASE_URL without the right: the next checkpoint comes on its own
    return rows, seconds


def durable(admin_url: str) -> bool:
    """Production durability on the bench's own throwaway server; whether the server is now durable."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not os.environ.get("TEST_DATABASE_URL"):
            for setting in ("fsync", "full_page_writes", "synchronous_commit"):
                conn.execute(f"alter system set {setting} = on")
            conn.execute("select pg_reload_conf()")
            time.sleep(0.5)  # the reload is asynchronous
        return all(conn.execute(f"show {s}").fetchone()[0] == "on" for s in ("fsync", "full_page_writes"))


def candles_bytes(conn: psycopg.Connection) -> int:
    return conn.execute("select tree_bytes('candles')").fetchone()[0]


def bench_drop(admin_url: str) -> dict[str, float | int]:
    with migrated_database(admin_url) as url:
        rows, load_s = load(url)
        with psycopg.connect(url) as conn:
            loaded = candles_bytes(conn)
            conn.commit()
            start = time.perf_counter()
            report = conn.execute("select * from run_retention(false, %s)", (NOW,)).fetchall()
            conn.commit()
            retention_s = time.perf_counter() - start
            deleted = {(t, a): n for t, a, n, _b, _d in report}[("candles", "deleted")]
            assert deleted == rows, (deleted, rows)
            assert conn.execute("select count(*) from candles where ts < %s", (MONTH_END,)).fetchone()[0] == 0
            after = candles_bytes(conn)
            conn.commit()
        # The bare mechanism, on the month loaded again: DROP TABLE of its partition.
        load(url)
        with psycopg.connect(url) as conn:
            start = time.perf_counter()
            conn.execute("drop table candles_2025_01")
            statement_s = time.perf_counter() - start
            conn.commit()  # the files go at commit: the kernel frees the partition's pages
            drop_s = time.perf_counter() - start
    return {"rows": rows, "load_s": round(load_s, 2), "retention_s": round(retention_s, 4),
            "drop_table_s": round(drop_s, 4), "drop_statement_s": round(statement_s, 4), "bytes_loaded": loaded,
            "bytes_after_retention": after}


def bench_delete(admin_url: str) -> dict[str, float | int]:
    with migrated_database(admin_url) as url:
        rows, load_s = load(url)
        with psycopg.connect(url) as conn:
            loaded = candles_bytes(conn)
            conn.commit()
            start = time.perf_counter()
            deleted = conn.execute(DELETE, (MONTH_START, MONTH_END)).rowcount
            conn.commit()
            delete_s = time.perf_counter() - start
            assert deleted == rows, (deleted, rows)
            after_delete = candles_bytes(conn)
            conn.commit()
        with psycopg.connect(url, autocommit=True) as conn:
            start = time.perf_counter()
            conn.execute("vacuum candles")
            vacuum_s = time.perf_counter() - start
            after_vacuum = candles_bytes(conn)
    return {"rows": rows, "load_s": round(load_s, 2), "delete_s": round(delete_s, 3), "vacuum_s": round(vacuum_s, 3),
            "bytes_loaded": loaded, "bytes_after_delete": after_delete, "bytes_after_vacuum": after_vacuum}


def mb(n: int) -> str:
    return f"{n / 1024**2:.1f} MB"


def main() -> None:
    with postgres_server() as admin_url:
        is_durable = durable(admin_url)
        drop = bench_drop(admin_url)
        delete = bench_delete(admin_url)
    ratio = delete["delete_s"] / max(drop["drop_table_s"], 1e-6)
    with_vacuum = (delete["delete_s"] + delete["vacuum_s"]) / max(drop["drop_table_s"], 1e-6)
    retention_ratio = delete["delete_s"] / drop["retention_s"]
    print(f"{drop['rows']:,} 1m candles (50 symbols x 30 days), loaded by COPY in {drop['load_s']} s: "
          f"{mb(drop['bytes_loaded'])} on disk (durable server: {'yes' if is_durable else 'no'})")
    print(f"(a) DROP TABLE of the partition: {drop['drop_table_s']} s ({drop['drop_statement_s']} s the statement, "
          f"the rest the commit releasing {mb(drop['bytes_loaded'])} of files)")
    print(f"    run_retention (an exact count for its report + the partition swap): {drop['retention_s']} s, "
          f"candles then {mb(drop['bytes_after_retention'])}")
    print(f"(b) DELETE of the same rows: {delete['delete_s']} s, candles then {mb(delete['bytes_after_delete'])} "
          f"(nothing freed); after VACUUM ({delete['vacuum_s']} s) {mb(delete['bytes_after_vacuum'])}")
    print(f"DELETE / DROP = {ratio:.0f}x (target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'not met'}); "
          f"DELETE + VACUUM / DROP = {with_vacuum:.0f}x; DELETE / run_retention = {retention_ratio:.0f}x")
    print(json.dumps({"benchmark": "retention", "rows": drop["rows"], "symbols": SYMBOLS, "days": DAYS,
                      "durable_server": is_durable, "load_s": drop["load_s"], "drop_table_s": drop["drop_table_s"],
                      "drop_statement_s": drop["drop_statement_s"],
                      "retention_s": drop["retention_s"], "delete_s": delete["delete_s"],
                      "vacuum_s": delete["vacuum_s"], "ratio_delete_vs_drop": round(ratio, 1),
                      "ratio_delete_and_vacuum_vs_drop": round(with_vacuum, 1),
                      "ratio_delete_vs_run_retention": round(retention_ratio, 1), "target_ratio": TARGET_RATIO,
                      "target_met": ratio >= TARGET_RATIO,
                      "candles_bytes_loaded": drop["bytes_loaded"],
                      "candles_bytes_after_retention": drop["bytes_after_retention"],
                      "candles_bytes_after_delete": delete["bytes_after_delete"],
                      "candles_bytes_after_delete_and_vacuum": delete["bytes_after_vacuum"]}))


if __name__ == "__main__":
    main()
