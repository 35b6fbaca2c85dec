"""`python -m controller scan` and `run` as a user runs them, on recorded candles and a real Postgres."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psycopg

from controller.config import PROJECT_ROOT
from controller.data.market_data import ohlcv_dir
from tests.support.clock import WAIT_S, wait_until


def env_for(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env.update(DATABASE_URL=url, COLUMNS="200")
    return env


def controller(*args: str) -> list[str]:
    return [sys.executable, "-m", "controller", *args]


def scan_bittrex(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        controller("scan", "--once", "--replay", str(ohlcv_dir()), "--exchange", "bittrex",
                   "--symbols", "ADA-BTC,ETH-BTC", "--until", "2018-01-11T00:15:00Z"),
        cwd=PROJECT_ROOT, env={**env_for(url), **env}, capture_output=True, text=True, timeout=120, check=False)


def test_scan_once_without_a_btc_market_in_the_data_says_regime_unknown_and_buys_nothing(migrated_db: str) -> None:
    result = scan_bittrex(migrated_db)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "scan at 2018-01-11 00:15 on bittrex: regime UNKNOWN (regime unknown: no fresh BTC-USDT" in out
    assert "dca" in out and "channel" in out and "ADA-BTC" in out and "ETH-BTC" in out
    assert "0 signal(s) emitted" in out
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select count(*) from signals").fetchone()[0] == 0


def test_scan_once_acting_as_caution_sizes_btc_pairs_in_btc(migrated_db: str) -> None:
    result = scan_bittrex(migrated_db, CONTROLLER_REGIME__ON_MISSING="caution")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "regime CAUTION (regime unknown" in out and "on_missing: caution" in out
    assert "enter" in out and "0.00025 BTC" in out
    with psycopg.connect(migrated_db) as conn:
        amounts = conn.execute("select quote_amount from signals where symbol = 'ADA-BTC'").fetchall()
    assert amounts and all(float(a) == 0.00025 for (a,) in amounts)  # 0.0005 BTC halved, not 25 "dollars"
    assert "2 signal(s) emitted" in out
    with psycopg.connect(migrated_db) as conn:  # DCA enters both pairs on that candle; channel neither
        emitted = conn.execute("select strategy, symbol from signals order by symbol").fetchall()
    assert emitted == [("dca", "ADA-BTC"), ("dca", "ETH-BTC")]


def test_run_stops_cleanly_on_sigterm_after_the_current_cycle(migrated_db: str) -> None:
    process = subprocess.Popen(
        controller("run", "--replay", str(ohlcv_dir()), "--exchange", "bittrex", "--symbols", "ADA-BTC",
                   "--start", "2018-01-11T00:00:00Z", "--until", "2018-01-29T00:00:00Z"),
        cwd=PROJECT_ROOT, env=env_for(migrated_db), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def cycles() -> int:
            with psycopg.connect(migrated_db) as conn:
                row = conn.execute("select progress ->> 'cycles' from heartbeats").fetchone()
            return int(row[0]) if row else 0

        wait_until(lambda: process.poll() is not None or cycles() >= 3, "three cycles of the loop")
        assert cycles() >= 3, "the loop made no progress"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "stopped cleanly" in stdout
    with psycopg.connect(migrated_db) as conn:
        final_cycles = int(conn.execute("select progress ->> 'cycles' from heartbeats").fetchone()[0])
        scans = conn.execute("select count(distinct candle_ts) from scans where strategy = 'channel'").fetchone()[0]
    assert final_cycles == scans  # every cycle that started also finished and wrote its scans


def test_scan_once_where_no_pair_has_candles_prints_one_summary_and_exits_non_zero(migrated_db: str) -> None:
    result = subprocess.run(
        controller("scan", "--once", "--replay", str(ohlcv_dir()), "--exchange", "bittrex",
                   "--symbols", "ADA-BTC,ETH-BTC", "--until", "2019-06-01T00:00:00Z"),
        cwd=PROJECT_ROOT, env=env_for(migrated_db), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    summaries = [line for line in result.stdout.splitlines() if "no candles for any pair" in line]
    assert len(summaries) == 1 and "tried replay:bittrex" in summaries[0]
    assert "no data" in result.stdout  # each pair is listed as a skip that says so
    assert "failed data:" not in result.stdout
