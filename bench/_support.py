"""What the benchmarks share: a Postgres to run on, fresh migrated databases, recorded candles."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from controller.data.embedded_db import EmbeddedPostgres  # noqa: E402
from controller.data.migrate import migrate  # noqa: E402

OHLCV_DIR = Path(os.environ.get("OHLCV_DIR", PROJECT_ROOT.parent / "shared" / "data" / "ohlcv"))


@contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL: TEST_DATABASE_URL when set, else a throwaway embedded server."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    base = Path(tempfile.mkdtemp(prefix="controller-bench-pg-"))
    base.chmod(0o755)
    server = EmbeddedPostgres(base, "bench", durable=False)
    try:
        yield server.start().url_for("postgres")
    finally:
        server.destroy()


@contextmanager
def migrated_database(admin_url: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = str(psycopg.conninfo.make_conninfo(admin_url, dbname=name))
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def recorded_candles(path: Path, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
    raw = pd.read_csv(path)
    return pd.DataFrame({
        "exchange": exchange, "symbol": symbol, "timeframe": timeframe,
        "ts": pd.to_datetime(raw["timestamp"], unit="ms", utc=True),
        "open": raw["open"], "high": raw["high"], "low": raw["low"], "close": raw["close"], "volume": raw["volume"],
    })


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def interleaved(first: Callable[[], object], second: Callable[[], object], times: int) -> tuple[list[float], ...]:
    """Milliseconds of each call, the two alternating so that the box's noise falls on both alike."""
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(times):
        for work, out in ((first, samples[0]), (second, samples[1])):
            start = time.perf_counter()
            work()
            out.append((time.perf_counter() - start) * 1000)
    return samples
