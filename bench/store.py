"""Storage benchmark: bulk candle writes and claim round trips, each against a baseline in the same run.

1. 100,000 candles built from the recorded files, written into a fresh migrated database (a) by
   PostgresStore.write_candles (binary COPY) and (b) by psycopg's executemany of the same upsert (psycopg 3
   pipelines it: a strong baseline), of a plain insert, and with one round trip per row (what psycopg2's
   executemany does, the baseline of the published ~40x figure). Target: (a) at least 20x faster than (b).
2. claim_signals round trip (one signal per call) on loopback, p50 and p95 over 200 claims, for both
   queue transports: direct Postgres, and PostgREST RPC over HTTP against the in-repo PostgREST stand-in
   (no real PostgREST can be installed here; its figures show our client and HTTP cost, not PostgREST's).

Last line of output: one JSON object with every figure.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import psycopg
from _support import OHLCV_DIR, migrated_database, percentile, postgres_server, recorded_candles

from bridge.queue_client import PostgresQueue, PostgrestQueue, SignalQueue
from bridge.schemas import NewSignal
from controller.data.storage.postgres import PostgresStore
from tests.support.postgrest_standin import PostgrestStandin, make_jwt

CANDLES = 100_000
CLAIMS = 200

UPSERT = """
    insert into candles (exchange, symbol, timeframe, ts, open, high, low, close, volume)
    values (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    on conflict (exchange, symbol, timeframe, ts) do update set
        open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
        volume = excluded.volume
"""


def candle_frame() -> pd.DataFrame:
    """100k real 1-minute candles: the recorded ETH-BTC and LTC-BTC files under several symbol names."""
    sources = [recorded_candles(OHLCV_DIR / f, "bittrex", "X-BTC", "1m")
               for f in ("bittrex_ETH-BTC_1m.csv", "bittrex_LTC-BTC_1m.csv")]
    frames, total, i = [], 0, 0
    while total < CANDLES:
        frame = sources[i % 2].assign(symbol=f"C{i:02d}-BTC")
        frames.append(frame)
        total += len(frame)
        i += 1
    return pd.concat(frames, ignore_index=True).head(CANDLES)


def executemany_seconds(admin_url: str, candles: pd.DataFrame, statement: str, *, pipelined: bool = True) -> float:
    """Seconds to write `candles` with `statement` row by row: psycopg 3's executemany (pipelined), or one
    round trip per row (what psycopg2's executemany does)."""
    with migrated_database(admin_url) as url, psycopg.connect(url) as conn:
        ts = candles["ts"]
        conn.execute("select create_candle_partitions(%s, %s)", (ts.min().to_pydatetime(), ts.max().to_pydatetime()))
        conn.commit()
        rows = list(zip(candles["exchange"], candles["symbol"], candles["timeframe"], ts.dt.to_pydatetime(),
                        candles["open"], candles["high"], candles["low"], candles["close"], candles["volume"],
                        strict=True))
        start = time.perf_counter()
        with conn.cursor() as cur:
            if pipelined:
                cur.executemany(statement, rows)
            else:
                for row in rows:
                    cur.execute(statement, row)
        conn.commit()
        seconds = time.perf_counter() - start
        assert conn.execute("select count(*) from candles").fetchone()[0] == len(candles)
    return seconds


def bench_copy(admin_url: str, candles: pd.DataFrame) -> dict[str, float]:
    with migrated_database(admin_url) as url:
        store = PostgresStore(url)
        store.pool.wait()  # the pool opens in the background: time the write, not the first connection
        start = time.perf_counter()
        assert store.write_candles(candles) == len(candles)
        copy_s = time.perf_counter() - start
        start = time.perf_counter()
        assert store.write_candles(candles) == len(candles)  # the same rows again: the upsert path
        rewrite_s = time.perf_counter() - start
        store.close()
    upsert_s = executemany_seconds(admin_url, candles, UPSERT)
    insert_s = executemany_seconds(admin_url, candles, UPSERT.split(" on conflict")[0])
    per_row_s = executemany_seconds(admin_url, candles, UPSERT, pipelined=False)
    return {"copy_s": round(copy_s, 3), "executemany_upsert_s": round(upsert_s, 3),
            "executemany_insert_s": round(insert_s, 3), "round_trip_per_row_upsert_s": round(per_row_s, 3),
            "copy_speedup": round(upsert_s / copy_s, 1),
            "copy_speedup_vs_plain_insert": round(insert_s / copy_s, 1),
            "copy_speedup_vs_round_trip_per_row": round(per_row_s / copy_s, 1), "rewrite_upsert_s": round(rewrite_s, 3),
            "copy_rows_per_s": round(len(candles) / copy_s), "executemany_rows_per_s": round(len(candles) / upsert_s)}


def claim_latencies(queue: SignalQueue, url: str, tag: str) -> list[float]:
    store = PostgresStore(url)
    expires = datetime.now(UTC) + timedelta(hours=1)
    for i in range(CLAIMS):
        store.emit_signal(NewSignal(strategy="bench", exchange=tag, symbol=f"S{i:04d}-USDT", side="buy", price=1.0,
                                    quote_amount=10.0, take_profit_pct=1.0, expires_at=expires, confidence=0.5))
    store.close()
    latencies = []
    for _ in range(CLAIMS):
        start = time.perf_counter()
        claimed = queue.claim("bench-bot", 1, 60, {tag: None})
        latencies.append((time.perf_counter() - start) * 1000)
        assert len(claimed) == 1
    queue.close()
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2)}


def main() -> None:
    candles = candle_frame()
    with postgres_server() as admin_url:
        copy = bench_copy(admin_url, candles)
        print(f"{len(candles):,} new candles: PostgresStore.write_candles (binary COPY) {copy['copy_s']} s; "
              f"executemany of the same upsert {copy['executemany_upsert_s']} s -> {copy['copy_speedup']}x "
              f"(target >= 20x); executemany of a plain insert {copy['executemany_insert_s']} s -> "
              f"{copy['copy_speedup_vs_plain_insert']}x; one round trip per row (psycopg2-style) "
              f"{copy['round_trip_per_row_upsert_s']} s -> {copy['copy_speedup_vs_round_trip_per_row']}x; "
              f"rewriting the same rows (COPY + merge) {copy['rewrite_upsert_s']} s")
        with migrated_database(admin_url) as url:
            direct = summary(claim_latencies(PostgresQueue(url), url, "direct"))
            secret = secrets.token_hex(32)  # signs the stand-in's JWTs for this run only
            with PostgrestStandin(url, secret) as standin:
                token = make_jwt(secret, "executor")
                http = summary(claim_latencies(PostgrestQueue(standin.base_url, token), url, "http"))
        print(f"claim_signals round trip over {CLAIMS} claims: direct Postgres p50 {direct['p50_ms']} ms, "
              f"p95 {direct['p95_ms']} ms; PostgREST RPC (stand-in) p50 {http['p50_ms']} ms, p95 {http['p95_ms']} ms")
    print(json.dumps({"benchmark": "store", "candles": len(candles), **copy,
                      "claim_direct": direct, "claim_http_standin": http, "target_copy_speedup": 20,
                      "copy_target_met": copy["copy_speedup"] >= 20}))


if __name__ == "__main__":
    main()
