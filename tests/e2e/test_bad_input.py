"""Bad input as a user meets it, one case per row: the real CLI (`python -m controller …`, `python -m offline.demo`)
in a subprocess against a real migrated Postgres. A failing case must exit non-zero with one line that names
the file or variable and what is wrong, print no traceback, and leave every table as it was.

Read-only commands on a read-only connection are rows too: they succeed and write nothing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from controller.config import PROJECT_ROOT
from tests.conftest import PgServer

# Five-minute candles from here on; the scans below look at a time inside them.
FIRST_MS = 1_515_542_400_000  # 2018-01-10 00:00 UTC
CANDLES = 600  # 50 h: enough history for every strategy's lookback
UNTIL = "2018-01-12T00:00:00Z"
HEADER = "timestamp,open,high,low,close,volume"


def candle_lines(n: int = CANDLES) -> list[str]:
    lines = []
    for i in range(n):
        price = 0.09 + 0.0001 * (i % 37)
        lines.append(f"{FIRST_MS + i * 300_000},{price},{price * 1.002},{price * 0.998},{price * 1.001},{100 + i}")
    return lines


def write_csv(folder: Path, name: str, header: str = HEADER, rows: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join([header, *(rows if rows is not None else candle_lines())]) + "\n")
    return path


def good_folder(folder: Path) -> Path:
    for symbol in ("ETH-BTC", "LTC-BTC", "BTC-USDT"):
        write_csv(folder, f"bittrex_{symbol}_5m.csv")
    return folder


def with_bad_cell(folder: Path) -> Path:
    good_folder(folder)
    rows = candle_lines()
    fields = rows[2].split(",")
    fields[4] = "n/a"  # line 4 of the file (header = line 1), column close
    rows[2] = ",".join(fields)
    write_csv(folder, "bittrex_LTC-BTC_5m.csv", rows=rows)
    return folder


def with_short_row(folder: Path) -> Path:
    good_folder(folder)
    rows = candle_lines()
    rows[5] = ",".join(rows[5].split(",")[:4])  # line 7
    write_csv(folder, "bittrex_ETH-BTC_5m.csv", rows=rows)
    return folder


def with_wrong_header(folder: Path) -> Path:
    good_folder(folder)
    write_csv(folder, "bittrex_ETH-BTC_5m.csv", header="time,open,high,low,close,vol")
    return folder


def with_bad_name(folder: Path) -> Path:
    good_folder(folder)
    write_csv(folder, "ETHBTC-5m.csv")
    return folder


@dataclass(frozen=True)
class World:
    url: str  # a migrated database; its flags table has no rows (nothing synced them)
    read_only_url: str  # the same database as a role whose sessions are read-only
    data: Path  # a folder for the case's recordings


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[World], list[str]]  # after `python -m`
    says: tuple[str, ...]  # what the output must contain
    code: int = 2
    url: Callable[[World], str] = lambda w: w.url  # DATABASE_URL
    one_line: bool = True  # a failure: exactly one line, on stderr
    within_s: float | None = None
    also_absent: tuple[str, ...] = field(default=())
    may_write: tuple[str, ...] = field(default=())  # tables the command may change all the same


def closed_port_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres:secret-password@127.0.0.1:{port}/trading"


def scan(folder: Callable[[Path], Path], *extra: str) -> Callable[[World], list[str]]:
    return lambda w: ["controller", "scan", "--replay", str(folder(w.data)), "--until", UNTIL, *extra]


def demo(folder: Callable[[Path], Path]) -> Callable[[World], list[str]]:
    return lambda w: ["offline.demo", "--data", str(folder(w.data)), "--quick", "--report",
                      str(w.data / "report.html")]


CASES = [
    Case("scan: a value that is not a number", scan(with_bad_cell),
         ("bittrex_LTC-BTC_5m.csv", "line 4, column close", "'n/a' is not a number")),
    Case("scan: a row with too few fields", scan(with_short_row),
         ("bittrex_ETH-BTC_5m.csv", "line 7", "4 fields, the header has 6")),
    Case("scan: a wrong header", scan(with_wrong_header),
         ("bittrex_ETH-BTC_5m.csv", "line 1", "lacks timestamp, volume")),
    Case("scan: a file name that says no exchange, pair or timeframe", scan(with_bad_name),
         ("ETHBTC-5m.csv", "not a candle file name")),
    Case("scan: an unknown exchange", scan(good_folder, "--exchange", "kraken"),
         ("--exchange kraken", "holds no candles of that exchange", "bittrex")),
    Case("scan: an unknown symbol", scan(good_folder, "--symbols", "ETH-BTC,DOGE-BTC"),
         ("--symbols", "DOGE-BTC not recorded for bittrex")),
    Case("scan: a symbol that is not BASE-QUOTE", scan(good_folder, "--symbols", "ETHBTC"),
         ("--symbols", "ETHBTC")),
    Case("scan: the database unreachable", scan(good_folder), ("cannot connect to the database", "refused"),
         url=lambda w: closed_port_url(), within_s=5.0, also_absent=("secret-password", "PoolTimeout")),
    Case("scan: DATABASE_URL not a URL", scan(good_folder), ("DATABASE_URL is not a Postgres connection string",),
         url=lambda w: "not a url"),
    Case("migrate: DATABASE_URL not a URL", lambda w: ["controller", "migrate"],
         ("DATABASE_URL is not a Postgres connection string",), url=lambda w: "not a url"),
    Case("migrate: the database unreachable", lambda w: ["controller", "migrate"],
         ("cannot connect to the database",), url=lambda w: closed_port_url(), within_s=5.0,
         also_absent=("secret-password",)),
    Case("demo: a value that is not a number", demo(with_bad_cell),
         ("bittrex_LTC-BTC_5m.csv", "line 4, column close", "'n/a' is not a number")),
    Case("demo: a wrong header", demo(with_wrong_header),
         ("bittrex_ETH-BTC_5m.csv", "line 1", "lacks timestamp, volume")),
    Case("demo: DATABASE_URL not a URL", demo(good_folder), ("DATABASE_URL is not a Postgres connection string",),
         url=lambda w: "garbage", also_absent=("garbage",)),
    Case("demo: the database unreachable", demo(good_folder), ("cannot connect to the database", "refused"),
         url=lambda w: closed_port_url(), within_s=5.0, also_absent=("secret-password",)),
    Case("scan: before the recordings begin (a failed scan)",
         lambda w: ["controller", "scan", "--replay", str(good_folder(w.data)), "--until", "2017-06-01T00:00:00Z"],
         ("no candles",), code=1, one_line=False,
         # The scanner's heartbeat says it ran and got no candle: health tells "degraded" from "down" by it.
         may_write=("public.heartbeats",)),
    Case("flags show on a read-only connection: conf's defaults, nothing written", lambda w: ["controller", "flags",
         "show"], ("ml.enabled", "trading.enabled", "(conf default)"), code=0, url=lambda w: w.read_only_url,
         one_line=False),
    Case("flags set on a read-only connection", lambda w: ["controller", "flags", "set", "ml.enabled", "true"],
         ("flags set ml.enabled", "refused the write", "read-only"), url=lambda w: w.read_only_url),
]


@pytest.fixture
def world(pg_server: PgServer, migrated_db: str, tmp_path: Path) -> Iterator[World]:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        # A reader as a replica or a read-only grant gives it: it sees every row and cannot write any.
        conn.execute(sql.SQL("create role {} login bypassrls").format(sql.Identifier(role)))
        conn.execute(sql.SQL("grant pg_read_all_data to {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(sql.Identifier(role)))
    try:
        yield World(migrated_db, psycopg.conninfo.make_conninfo(migrated_db, user=role), tmp_path / "data")
    finally:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables where schemaname = 'public'")]
        return {t: conn.execute(sql.SQL("select count(*) from {}").format(sql.SQL(t))).fetchone()[0]
                for t in tables}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_said_in_one_line_and_changes_nothing(case: Case, world: World) -> None:
    argv = case.argv(world)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env.update(DATABASE_URL=case.url(world), COLUMNS="200")
    before = row_counts(world.url)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", *argv], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=300, check=False)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr

    assert result.returncode == case.code, output
    assert "Traceback" not in output
    for text in case.says:
        assert text in output, output
    for text in case.also_absent:
        assert text not in output, output
    if case.one_line:
        assert result.stdout.strip() == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("error: ")
    if case.within_s is not None:
        # Against the same program's start-up, timed here: the demo loads Hummingbot's classes before it reads
        # its configuration, and a busy machine stretches both alike; a pool retrying would add its whole timeout.
        startup = time.monotonic()
        subprocess.run([sys.executable, "-m", argv[0], "--help"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                       timeout=300, check=True)
        startup = time.monotonic() - startup
        assert elapsed - startup < case.within_s, (elapsed, startup)
    after = row_counts(world.url)
    assert {t: n for t, n in after.items() if t not in case.may_write} == {
        t: n for t, n in before.items() if t not in case.may_write}
    if case.code == 1:  # the failed scan: asked, then wrote no scans rows
        assert after["public.scans"] == before["public.scans"] == 0
