"""`PostgresStore`: the storage port over psycopg 3, with a connection pool.

Candles arrive by COPY into a temporary table and are merged with one `insert … on conflict do update`,
so a bulk write is as fast as COPY and still an upsert.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import pandas as pd
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from bridge.schemas import NewSignal, params_hash
from controller.storage import CANDLE_COLUMNS, OPEN_STATUSES, SCAN_COLUMNS, SignalRejected

logger = logging.getLogger(__name__)

_MERGE_CANDLES = """
    insert into candles select * from candles_in
    on conflict (exchange, symbol, timeframe, ts) do update set
        open = excluded.open, high = excluded.high, low = excluded.low,
        close = excluded.close, volume = excluded.volume
"""


class PostgresStore:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, timeout_s: float = 10.0) -> None:
        self.pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, timeout=timeout_s, open=True,
                                   kwargs={"connect_timeout": max(1, round(timeout_s))})

    def close(self) -> None:
        self.pool.close()

    # --- candles ---------------------------------------------------------------------------------

    def write_candles(self, candles: pd.DataFrame) -> int:
        if candles.empty:
            return 0
        frame = candles[CANDLE_COLUMNS]
        ts = pd.to_datetime(frame["ts"], utc=True)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("select create_candle_partitions(%s, %s)", (ts.min().to_pydatetime(),
                                                                    ts.max().to_pydatetime()))
            conn.execute("create temp table candles_in (like candles including defaults) on commit drop")
            with conn.cursor().copy(
                "copy candles_in (exchange, symbol, timeframe, ts, open, high, low, close, volume) from stdin"
            ) as copy:
                for row in zip(frame["exchange"], frame["symbol"], frame["timeframe"], ts.dt.to_pydatetime(),
                               frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"],
                               strict=True):
                    copy.write_row(row)
            written = conn.execute(_MERGE_CANDLES).rowcount
        return written

    def read_candles(self, exchange: str, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"select {', '.join(CANDLE_COLUMNS)} from candles"
                " where exchange = %s and symbol = %s and timeframe = %s and ts >= %s and ts < %s order by ts",
                (exchange, symbol, timeframe, start, end),
            ).fetchall()
        frame = pd.DataFrame(rows, columns=CANDLE_COLUMNS)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        return frame

    def last_candle_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None:
        with self.pool.connection() as conn:
            return conn.execute(
                "select max(ts) from candles where exchange = %s and symbol = %s and timeframe = %s",
                (exchange, symbol, timeframe),
            ).fetchone()[0]

    # --- signals and scans -----------------------------------------------------------------------

    def emit_signal(self, signal: NewSignal) -> UUID:
        try:
            with self.pool.connection() as conn:
                return conn.execute("select emit_signal(%s)", (Jsonb(signal.to_payload()),)).fetchone()[0]
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.UniqueViolation) as exc:
            raise SignalRejected(exc.diag.message_primary or str(exc)) from None

    def write_scans(self, scans: Sequence[Mapping[str, Any]]) -> int:
        if not scans:
            return 0
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor().copy(f"copy scans ({', '.join(SCAN_COLUMNS)}) from stdin") as copy:
                for scan in scans:
                    copy.write_row([
                        json.dumps(scan.get(c) or {}) if c in ("features", "thresholds") else scan.get(c)
                        for c in SCAN_COLUMNS
                    ])
        return len(scans)

    def open_signals(self) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute("select * from signals where status = any(%s) order by created_at",
                               (list(OPEN_STATUSES),)).fetchall()

    def register_params(self, strategy: str, params: Mapping[str, Any]) -> tuple[int, str]:
        digest = params_hash(dict(params))
        with self.pool.connection() as conn:
            version = conn.execute("select register_strategy_params(%s, %s, %s)",
                                   (strategy, Jsonb(dict(params)), digest)).fetchone()[0]
        return version, digest

    # --- liveness and flags ------------------------------------------------------------------------

    def heartbeat(self, component: str, progress: Mapping[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute("select heartbeat(%s, %s)", (component, Jsonb(dict(progress))))

    def flag_values(self) -> dict[str, Any]:
        with self.pool.connection() as conn:
            return dict(conn.execute("select name, value from flags").fetchall())
