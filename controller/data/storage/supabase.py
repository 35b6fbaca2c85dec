"""`SupabaseStore`: the storage port over supabase-py (PostgREST), for a project URL and a service-role key.

The same tables and SQL functions as `PostgresStore`. Supabase caps a select at 1000 rows, so reads
page with `range` until a short page; writes go in batches of at most 1000 rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import httpx
import pandas as pd
from postgrest.exceptions import APIError
from supabase import Client, ClientOptions, create_client

from bridge.schemas import NewSignal, params_hash, to_json_value
from controller.data.storage.port import (
    CANDLE_COLUMNS,
    OPEN_STATUSES,
    SCAN_COLUMNS,
    SignalRejected,
    already_emitted,
)

logger = logging.getLogger(__name__)

PAGE = 1000  # Supabase's default max rows per request


def _chunks(rows: list[dict[str, Any]], size: int = PAGE) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


class SupabaseStore:
    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def connect(cls, url: str, service_role_key: str, *, timeout_s: int = 10,
                options: ClientOptions | None = None) -> SupabaseStore:
        options = options or ClientOptions(httpx_client=httpx.Client(timeout=timeout_s))
        return cls(create_client(url, service_role_key, options=options))

    def close(self) -> None:
        self.client.postgrest.session.close()

    def _select_all(self, query_factory: Any) -> list[dict[str, Any]]:
        """Every row of a query, one page of PAGE rows at a time (a fresh builder per page)."""
        rows: list[dict[str, Any]] = []
        while True:
            page = query_factory().range(len(rows), len(rows) + PAGE - 1).execute().data
            rows.extend(page)
            if len(page) < PAGE:
                return rows

    # --- candles ---------------------------------------------------------------------------------

    def write_candles(self, candles: pd.DataFrame) -> int:
        if candles.empty:
            return 0
        frame = candles[CANDLE_COLUMNS].copy()
        ts = pd.to_datetime(frame["ts"], utc=True)
        frame["ts"] = ts.map(lambda t: t.isoformat())
        self.client.rpc("create_candle_partitions", {"from_ts": ts.min().isoformat(),
                                                     "to_ts": ts.max().isoformat()}).execute()
        rows = frame.to_dict("records")
        for chunk in _chunks(rows):
            self.client.table("candles").upsert(chunk, on_conflict="exchange,symbol,timeframe,ts",
                                                returning="minimal").execute()
        return len(rows)

    def read_candles(self, exchange: str, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        rows = self._select_all(
            lambda: self.client.table("candles").select(",".join(CANDLE_COLUMNS))
            .eq("exchange", exchange).eq("symbol", symbol).eq("timeframe", timeframe)
            .gte("ts", start.isoformat()).lt("ts", end.isoformat()).order("ts")
        )
        frame = pd.DataFrame(rows, columns=CANDLE_COLUMNS)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        return frame.astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})

    def last_candle_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None:
        rows = (self.client.table("candles").select("ts").eq("exchange", exchange).eq("symbol", symbol)
                .eq("timeframe", timeframe).order("ts", desc=True).limit(1).execute().data)
        return pd.Timestamp(rows[0]["ts"]).to_pydatetime() if rows else None

    # --- signals and scans -----------------------------------------------------------------------

    def emit_signal(self, signal: NewSignal, as_of: datetime | None = None) -> UUID:
        try:
            if as_of is not None:  # a replay: the queue compares with the simulated time
                data = self.client.rpc("emit_signal_at", {"signal": signal.to_payload(),
                                                          "as_of": as_of.isoformat()}).execute().data
            else:
                data = self.client.rpc("emit_signal", {"signal": signal.to_payload()}).execute().data
        except APIError as exc:
            # invalid_parameter_value (a bad key) and unique_violation (a duplicate) are refusals
            if exc.code in ("22023", "23505"):
                raise SignalRejected(exc.message or str(exc)) from None
            raise
        if data is None:  # the decision candle's unique key: queued before, nothing written now
            raise already_emitted(signal)
        return UUID(data)

    def write_scans(self, scans: Sequence[Mapping[str, Any]]) -> int:
        rows = [{c: to_json_value(scan.get(c)) for c in SCAN_COLUMNS} for scan in scans]
        for row in rows:
            row["features"] = row["features"] or {}
            row["thresholds"] = row["thresholds"] or {}
        for chunk in _chunks(rows):
            self.client.table("scans").insert(chunk, returning="minimal").execute()
        return len(rows)

    def open_signals(self) -> list[dict[str, Any]]:
        return self._select_all(
            lambda: self.client.table("signals").select("*").in_("status", list(OPEN_STATUSES))
            .order("created_at").order("id")
        )

    def closed_trades(self, since: datetime) -> list[dict[str, Any]]:
        trades = self._select_all(
            lambda: self.client.table("trades").select("signal_id,symbol,exit_reason,closed_at,pnl_quote,pnl_pct")
            .gte("closed_at", since.isoformat()).order("closed_at").order("signal_id")
        )
        ids = sorted({t["signal_id"] for t in trades})
        strategy: dict[str, str] = {}
        for i in range(0, len(ids), 200):  # ids travel in the URL: keep it short
            chunk = ids[i:i + 200]
            rows = self.client.table("signals").select("id,strategy").in_("id", chunk).execute().data
            strategy.update({r["id"]: r["strategy"] for r in rows})
        return [{"symbol": t["symbol"], "strategy": strategy[t["signal_id"]], "exit_reason": t["exit_reason"],
                 "closed_at": pd.Timestamp(t["closed_at"]).to_pydatetime(), "pnl_quote": t["pnl_quote"],
                 "pnl_pct": t["pnl_pct"]} for t in trades]

    def register_params(self, strategy: str, params: Mapping[str, Any]) -> tuple[int, str]:
        digest = params_hash(dict(params))
        version = self.client.rpc("register_strategy_params", {"strategy": strategy, "params": dict(params),
                                                               "params_hash": digest}).execute().data
        return int(version), digest

    # --- liveness and flags ------------------------------------------------------------------------

    def heartbeat(self, component: str, progress: Mapping[str, Any]) -> None:
        self.client.rpc("heartbeat", {"component": component, "progress": to_json_value(dict(progress))}).execute()

    def flag_values(self) -> dict[str, Any]:
        return {row["name"]: row["value"] for row in self._select_all(
            lambda: self.client.table("flags").select("name,value").order("name"))}
