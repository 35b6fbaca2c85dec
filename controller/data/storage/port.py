"""The controller's storage port: one small interface, two adapters selected by configuration.

`PostgresStore` (psycopg 3) serves any Postgres: Supabase's connection string, a self-hosted server and
the embedded default. `SupabaseStore` (supabase-py over PostgREST) serves users who have only the
project URL and a service-role key. Both pass the same contract tests; SQL functions hold the queue
semantics, so neither adapter re-implements them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import pandas as pd

from bridge.schemas import NewSignal

CANDLE_COLUMNS = ["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close", "volume"]
SCAN_COLUMNS = ["candle_ts", "strategy", "exchange", "symbol", "timeframe", "decision", "reason", "features",
                "thresholds", "params_hash", "signal_id"]
OPEN_STATUSES = ("new", "claimed", "executing")


class SignalRejected(Exception):
    """emit_signal refused a signal (invalid, expired or a duplicate); the message says why."""


class AlreadyEmitted(SignalRejected):
    """The signal's decision candle was queued already (by another controller, or before a restart)."""


def already_emitted(signal: NewSignal) -> AlreadyEmitted:
    return AlreadyEmitted(f"{signal.strategy}/{signal.exchange}/{signal.symbol}: the {signal.kind or 'entry'} of "
                          f"the candle closing {signal.candle_ts} was emitted already")


class Store(Protocol):
    """What the controller reads and writes. Candles travel as DataFrames with CANDLE_COLUMNS."""

    def write_candles(self, candles: pd.DataFrame) -> int:
        """Upsert candles (bulk); return how many rows were written."""
        ...

    def read_candles(self, exchange: str, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        """Candles with start <= ts < end, oldest first."""
        ...

    def last_candle_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None: ...

    def emit_signal(self, signal: NewSignal, as_of: datetime | None = None) -> UUID:
        """Queue a signal; `as_of` (replays) is the time the queue compares expiry and duplicates with."""
        ...

    def write_scans(self, scans: Sequence[Mapping[str, Any]]) -> int:
        """Insert scan rows (keys from SCAN_COLUMNS) in one batch."""
        ...

    def open_signals(self) -> list[dict[str, Any]]:
        """Signals not yet finished (new, claimed, executing): what position caps count."""
        ...

    def closed_trades(self, since: datetime) -> list[dict[str, Any]]:
        """Trades closed at or after `since` (symbol, strategy, exit_reason, closed_at, pnl), oldest first."""
        ...

    def register_params(self, strategy: str, params: Mapping[str, Any]) -> tuple[int, str]:
        """Record a parameter set (once); return its (version, params_hash)."""
        ...

    def heartbeat(self, component: str, progress: Mapping[str, Any]) -> None: ...

    def flag_values(self) -> dict[str, Any]:
        """Live flag values from the flags table."""
        ...

    def close(self) -> None: ...
