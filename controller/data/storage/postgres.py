"""`PostgresStore`: the storage port over psycopg 3, with a connection pool.

Candles arrive by binary COPY (see pgcopy): straight into `candles` when their time range is new, else
into a temporary table merged with one `insert … on conflict do update`, so a rewrite is an upsert.
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
from controller.data.storage.pgcopy import COPY_COLUMNS, candles_binary_copy
from controller.data.storage.port import (
    CANDLE_COLUMNS,
    OPEN_STATUSES,
    SCAN_COLUMNS,
    SignalRejected,
    already_emitted,
)

logger = logging.getLogger(__name__)

_MERGE_CANDLES = """
    insert into candles select * from candles_in
    on conflict (exchange, symbol, timeframe, ts) do update set
        open = excluded.open, high = excluded.high, low = excluded.low,
        close = excluded.close, volume = excluded.volume
"""


_CLOSED_TRADES = """
    select t.symbol, s.strategy, t.exit_reason, t.closed_at, t.pnl_quote, t.pnl_pct
      from trades t join signals s on s.id = t.signal_id
"""


class PostgresStore:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, timeout_s: float = 10.0) -> None:
        self.pool = ConnectionPool(dsn, min_size=min_size, max_size=max_size, timeout=timeout_s, open=True,
                                   # unprepared: a transaction-mode pooler may run each statement on
                                   # another server connection, where a prepared one does not exist
                                   kwargs={"connect_timeout": max(1, round(timeout_s)), "prepare_threshold": None})

    def close(self) -> None:
        self.pool.close()

    # --- candles ---------------------------------------------------------------------------------

    def write_candles(self, candles: pd.DataFrame) -> int:
        if candles.empty:
            return 0
        frame = candles[CANDLE_COLUMNS]
        ts = pd.to_datetime(frame["ts"], utc=True)
        payload = candles_binary_copy(frame)
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("select create_candle_partitions(%s, %s)", (ts.min().to_pydatetime(),
                                                                    ts.max().to_pydatetime()))
            if not self._overlaps_stored(conn, frame.assign(ts=ts)):
                try:
                    with conn.transaction():
                        self._copy(conn, "candles", payload)
                    return len(frame)
                except psycopg.errors.UniqueViolation:
                    pass  # a concurrent writer stored some of them first: merge instead
            conn.execute("create temp table candles_in (like candles including defaults) on commit drop")
            self._copy(conn, "candles_in", payload)
            return conn.execute(_MERGE_CANDLES).rowcount

    @staticmethod
    def _copy(conn: psycopg.Connection, table: str, payload: bytes) -> None:
        with conn.cursor().copy(f"copy {table} ({', '.join(COPY_COLUMNS)}) from stdin with (format binary)") as copy:
            copy.write(payload)

    @staticmethod
    def _overlaps_stored(conn: psycopg.Connection, frame: pd.DataFrame) -> bool:
        """Whether any stored candle falls in the time range of a (exchange, symbol, timeframe) being written.

        New ranges (backfills, the next candles) go straight into `candles` by COPY; overlapping ones
        go through a temporary table and an upsert.
        """
        ranges = frame.groupby(["exchange", "symbol", "timeframe"])["ts"].agg(["min", "max"]).reset_index()
        return conn.execute(
            """select exists (
                   select 1 from unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])
                                 as r(exchange, symbol, timeframe, lo, hi)
                   join candles c on c.exchange = r.exchange and c.symbol = r.symbol
                                 and c.timeframe = r.timeframe and c.ts between r.lo and r.hi)""",
            (list(ranges["exchange"]), list(ranges["symbol"]), list(ranges["timeframe"]),
             [t.to_pydatetime() for t in ranges["min"]], [t.to_pydatetime() for t in ranges["max"]]),
        ).fetchone()[0]

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

    def emit_signal(self, signal: NewSignal, as_of: datetime | None = None) -> UUID:
        try:
            with self.pool.connection() as conn:
                if as_of is not None:  # a replay: the queue compares with the simulated time
                    signal_id = conn.execute("select emit_signal_at(%s, %s)",
                                             (Jsonb(signal.to_payload()), as_of)).fetchone()[0]
                else:
                    signal_id = conn.execute("select emit_signal(%s)", (Jsonb(signal.to_payload()),)).fetchone()[0]
        except (psycopg.errors.InvalidParameterValue, psycopg.errors.UniqueViolation) as exc:
            raise SignalRejected(exc.diag.message_primary or str(exc)) from None
        if signal_id is None:  # the decision candle's unique key: queued before, nothing written now
            raise already_emitted(signal)
        return signal_id

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

    def closed_trades(self, since: datetime) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            return cur.execute(f"{_CLOSED_TRADES} where t.closed_at >= %s order by t.closed_at", (since,)).fetchall()

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
