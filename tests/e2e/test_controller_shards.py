"""Two `python -m controller run --shard auto/2` processes on recorded candles and a real Postgres: one is
killed with SIGKILL mid-run; the other takes its shard over and no decision candle is queued twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import psycopg

from controller.config import PROJECT_ROOT
from controller.data.market_data import ohlcv_dir
from controller.data.shards import shard_of
from tests.support.clock import WAIT_S, wait_for_database_time, wait_until

BITTREX = ("ADA-BTC", "ETC-BTC", "ETH-BTC", "LTC-BTC", "XLM-BTC")


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    # no BTC-USDT market on bittrex: act as CAUTION so entries are emitted; a 2 s lease so the test is short
    env.update(DATABASE_URL=url, COLUMNS="200", CONTROLLER_REGIME__ON_MISSING="caution",
               CONTROLLER_LOOP__SHARD_LEASE_S="2")
    return env


def start(url: str, holder: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--replay", str(ohlcv_dir()), "--exchange", "bittrex",
         "--start", "2018-01-11T00:00:00Z", "--until", "2018-01-29T00:00:00Z", "--shard", "auto/2",
         "--holder", holder],
        cwd=PROJECT_ROOT, env=env_for(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def progress(url: str, holder: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute("select progress from heartbeats where component = %s", (f"controller:{holder}",)
                           ).fetchone()
    return row[0] if row else {}


def query(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_a_killed_controllers_shard_is_taken_over_and_no_candle_is_emitted_twice(migrated_db: str) -> None:
    a = start(migrated_db, "a")
    b = None
    try:
        wait_until(lambda: a.poll() is not None or int(progress(migrated_db, "a").get("cycles", 0)) >= 40,
                   "controller a scanning")
        assert a.poll() is None, a.communicate()[1]
        b = start(migrated_db, "b")  # behind a in replayed time: it will scan candles a has scanned already
        wait_until(lambda: b.poll() is not None or progress(migrated_db, "b").get("shards") == [1],
                   "controller b holding the other shard")
        assert progress(migrated_db, "a")["shards"] == [0]
        a_shard = [s for s in BITTREX if shard_of(s, 2) == 0]

        a.send_signal(signal.SIGKILL)
        a.wait(timeout=WAIT_S)
        [(expires,)] = query(migrated_db, "select expires_at from shard_leases where n = 2 and shard = 0")
        wait_for_database_time(migrated_db, expires)  # a's lease lapses: nobody renews it
        wait_until(lambda: b.poll() is not None or progress(migrated_db, "b").get("shards") == [0, 1],
                   "controller b taking over shard 0")
        taken_at_cycle = int(progress(migrated_db, "b")["cycles"])
        wait_until(lambda: b.poll() is not None or int(progress(migrated_db, "b")["cycles"]) >= taken_at_cycle + 40,
                   "controller b scanning both shards")
        assert b.poll() is None, b.communicate()[1]
        b.send_signal(signal.SIGTERM)
        stdout, stderr = b.communicate(timeout=WAIT_S)
    finally:
        for process in (a, b):
            if process is not None and process.poll() is None:
                process.kill()
    assert b.returncode == 0, stderr
    assert "stopped cleanly" in stdout

    assert query(migrated_db, "select shard, holder, acquired_at > renewed_at from shard_leases order by shard") == [
        (0, None, False), (1, None, False)]  # b released both on its clean stop
    doubled = query(migrated_db, "select strategy, symbol, timeframe_s, candle_ts, kind, count(*) from signals"
                                 " group by 1, 2, 3, 4, 5 having count(*) > 1")
    assert doubled == []
    untagged = query(migrated_db, "select count(*) from signals where candle_ts is null")
    assert untagged == [(0,)]  # every signal carries its decision candle, so the key above covers them all
    emitted = query(migrated_db, "select distinct symbol from signals")
    assert {s for (s,) in emitted} & set(a_shard)  # the killed controller's shard did emit
    final = progress(migrated_db, "b")
    assert final["shards"] == [0, 1] and final["scanned_symbols"] == len(BITTREX)
    # b replayed candles a had scanned before it died: its attempts on a's queued decisions were no-ops
    assert final["already_emitted"] >= 1
