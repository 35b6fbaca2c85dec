"""`storage` and `verify` on a real Postgres: their numbers agree with SQL counted independently."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import typer
from psycopg.types.json import Jsonb
from rich.console import Console

from controller.cli.base import Context
from controller.cli.ops import storage_command, verify_command
from controller.config import ControllerConfig, Secrets
from controller.ops.retention import storage_report
from controller.ops.verify import verify

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=24)


def context(url: str) -> Context:
    return Context(ControllerConfig(), Secrets(DATABASE_URL=url))


def output_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=220, color_system=None), buffer


# --- storage ---------------------------------------------------------------------------------------

STORAGE_SEED = """
select create_candle_partitions('2025-06-01', '2025-06-30');
-- ten days of 1m candles for two pairs: seven of them inside the growth window
insert into candles
select 'binance', s, '1m', ts, 1, 1, 1, 1, 1
  from unnest(array['BTC-USDT', 'ETH-USDT']) s,
       generate_series('2025-06-05 12:00'::timestamptz, '2025-06-15 11:59', '1 minute') ts;
insert into scans (candle_ts, scanned_at, strategy, exchange, symbol, timeframe, decision, reason)
select ts, ts, 'DCA', 'binance', 'BTC-USDT', '15m', 'skip', 'rsi 60 above 56'
  from generate_series('2025-05-16 12:00'::timestamptz, '2025-06-15 11:59', '15 minutes') ts;
"""


def test_storage_report_agrees_with_the_database(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute(STORAGE_SEED)
        conn.commit()

        report = {t.table_name: t for t in storage_report(conn, now=NOW)}

        dashboard = dict(conn.execute("select table_name, total_bytes from dashboard_storage").fetchall())
        assert {name: t.total_bytes for name, t in report.items()} == dashboard
        for name, t in report.items():
            assert t.rows == conn.execute(f"select count(*) from {name}").fetchone()[0], name
        candles, scans = report["candles"], report["scans"]
        assert (candles.rows, candles.time_column, candles.rows_last_7d) == (2 * 10 * 1440, "ts", 2 * 7 * 1440)
        assert candles.total_bytes == conn.execute(
            "select sum(pg_total_relation_size(relid)) from pg_partition_tree('candles')").fetchone()[0]
        assert (scans.rows, scans.rows_last_7d) == (30 * 96, 7 * 96)
        assert scans.growth_bytes_per_day == pytest.approx(96 * scans.total_bytes / scans.rows)
        assert scans.projected_bytes(90) == pytest.approx(scans.total_bytes + 90 * scans.growth_bytes_per_day)
        assert report["candles_archive"].growth_bytes_per_day is None  # fed by retention, not by time
        assert report["signals"].rows_last_7d == 0


def test_storage_command_warns_about_tables_above_the_size_and_still_succeeds(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute(STORAGE_SEED)
    console, out = output_console()

    storage_command(context(migrated_db), warn_gb=0.002, console=console)  # 2 MB: candles are above it

    text = out.getvalue()
    assert "warning: candles is" in text and "above the 0.002 GB warning size" in text
    assert "warning: flags" not in text

    console, out = output_console()
    storage_command(context(migrated_db), warn_gb=50, console=console)
    assert "warning:" not in out.getvalue()
    assert "every table is below the 50 GB warning size" in out.getvalue()


# --- verify ----------------------------------------------------------------------------------------

def add_signal(conn: psycopg.Connection, key: str, status: str, created: timedelta, symbol: str,
               **extra: Any) -> str:
    """Insert a signal created `created` before NOW; its id is a readable uuid ending in `key`."""
    signal_id = f"00000000-0000-0000-0000-{key:0>12}"
    row = {"id": signal_id, "created_at": NOW - created, "expires_at": NOW - created + timedelta(minutes=5),
           "strategy": "DCA", "exchange": "binance", "symbol": symbol, "side": "buy", "price": 100,
           "quote_amount": 50, "take_profit_pct": 3, "confidence": 0.7, "status": status, **extra}
    if status not in ("new", "expired"):
        row.setdefault("claimed_by", "bot-1")
        row.setdefault("claimed_at", NOW - created + timedelta(minutes=1))
    columns = ", ".join(row)
    conn.execute(f"insert into signals ({columns}) values ({', '.join(['%s'] * len(row))})", list(row.values()))
    return signal_id


def report_event(conn: psycopg.Connection, **event: Any) -> None:
    payload = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in event.items()}
    conn.execute("select report_order_event(%s)", (Jsonb(payload),))


def trade(conn: psycopg.Connection, signal_id: str, symbol: str, opened: datetime, closed: datetime,
          pnl_quote: float) -> None:
    """An entry and an exit order, each filled, and the closed position: what the executor reports."""
    for purpose, side, at in (("entry", "buy", opened), ("exit", "sell", closed)):
        order_id = f"{signal_id[-4:]}-{purpose}"
        common = {"signal_id": signal_id, "client_order_id": order_id, "exchange": "binance", "symbol": symbol,
                  "side": side, "purpose": purpose}
        report_event(conn, type="order_created", ts=at, order_type="market", price=100, amount=0.5, **common)
        report_event(conn, type="order_filled", ts=at, exchange_trade_id=f"{order_id}-t1", price=100, amount=0.5,
                     fee_quote=0.05, **common)
        report_event(conn, type="order_completed", ts=at, **common)
    report_event(conn, type="position_closed", ts=closed, signal_id=signal_id, exchange="binance", symbol=symbol,
                 side="buy", amount=0.5, entry_price=100, exit_price=100 + pnl_quote * 2, pnl_quote=pnl_quote,
                 pnl_pct=pnl_quote * 2, exit_reason="take_profit" if pnl_quote > 0 else "stop_loss",
                 opened_at=opened, closed_at=closed)


@pytest.fixture
def funnel_db(migrated_db: str) -> dict[str, str]:
    """A realistic day: two trades, rejections, an expiry, one healthy position, and two stuck signals."""
    ids: dict[str, str] = {}
    with psycopg.connect(migrated_db) as conn:
        hours = timedelta(hours=1)
        ids["win"] = add_signal(conn, "a1", "executing", 20 * hours, "BTC-USDT", executing_at=NOW - 20 * hours)
        trade(conn, ids["win"], "BTC-USDT", NOW - 20 * hours, NOW - 18 * hours, 5.0)
        ids["loss"] = add_signal(conn, "a2", "executing", 16 * hours, "ETH-USDT", executing_at=NOW - 16 * hours)
        trade(conn, ids["loss"], "ETH-USDT", NOW - 16 * hours, NOW - 15 * hours, -2.0)
        ids["spread"] = add_signal(conn, "b1", "rejected", 10 * hours, "SOL-USDT", reject_reason="spread too wide",
                                   finished_at=NOW - 10 * hours)
        ids["spread2"] = add_signal(conn, "b2", "rejected", 9 * hours, "SOL-USDT", reject_reason="spread too wide",
                                    finished_at=NOW - 9 * hours)
        ids["balance"] = add_signal(conn, "b3", "rejected", 8 * hours, "XRP-USDT",
                                    reject_reason="insufficient balance", finished_at=NOW - 8 * hours)
        ids["expired"] = add_signal(conn, "c1", "expired", 7 * hours, "ADA-USDT", finished_at=NOW - 7 * hours)
        ids["stuck_claimed"] = add_signal(conn, "d1", "claimed", 3 * hours, "DOGE-USDT",
                                          expires_at=NOW + hours, lease_until=NOW - 2 * hours)
        ids["stuck_executing"] = add_signal(conn, "d2", "executing", 2 * hours, "LTC-USDT",
                                            executing_at=NOW - 2 * hours + timedelta(minutes=1))
        ids["healthy"] = add_signal(conn, "e1", "executing", timedelta(minutes=30), "BTC-USDT",
                                    strategy="SWING", executing_at=NOW - timedelta(minutes=29), time_limit_s=3600)
        report_event(conn, type="order_created", ts=NOW - timedelta(minutes=28), signal_id=ids["healthy"],
                     client_order_id="e1-entry", exchange="binance", symbol="BTC-USDT", side="buy", purpose="entry",
                     order_type="market", amount=0.5)
        report_event(conn, type="order_filled", ts=NOW - timedelta(minutes=28), signal_id=ids["healthy"],
                     client_order_id="e1-entry", exchange="binance", symbol="BTC-USDT", side="buy", purpose="entry",
                     exchange_trade_id="e1-t1", price=100, amount=0.5)
        report_event(conn, type="order_completed", ts=NOW - timedelta(minutes=28), signal_id=ids["healthy"],
                     client_order_id="e1-entry", exchange="binance", symbol="BTC-USDT", side="buy", purpose="entry")
        ids["fresh"] = add_signal(conn, "f1", "new", timedelta(minutes=1), "ETH-USDT", strategy="SWING")
        # three days old: in neither the funnel nor the P&L of the last 24 hours
        ids["old"] = add_signal(conn, "01d", "executing", timedelta(days=3), "BNB-USDT",
                                executing_at=NOW - timedelta(days=3))
        trade(conn, ids["old"], "BNB-USDT", NOW - timedelta(days=3), NOW - timedelta(days=2), 7.0)
    return {"url": migrated_db, **ids}


# Entry signals: each stage within the one before (claimed, an entry order, an entry fill, a trade row).
FUNNEL_SQL = """
    select count(*),
           count(*) filter (where c),
           count(*) filter (where c and o),
           count(*) filter (where c and o and f),
           count(*) filter (where c and o and f and t),
           count(*) filter (where status = 'rejected'),
           count(*) filter (where status = 'expired'),
           count(*) filter (where status in ('new', 'claimed', 'executing'))
      from (select s.status, s.claimed_at is not null as c,
                   exists (select 1 from orders o where o.signal_id = s.id and o.purpose = 'entry') as o,
                   exists (select 1 from fills f join orders o using (client_order_id)
                            where f.signal_id = s.id and o.purpose = 'entry') as f,
                   exists (select 1 from trades t where t.signal_id = s.id) as t
              from signals s where kind = 'entry' and created_at >= %(start)s and created_at < %(end)s) stages
"""


def test_verify_reports_the_funnel_the_pnl_and_exactly_the_stuck_signals(funnel_db: dict[str, str]) -> None:
    with psycopg.connect(funnel_db["url"]) as conn:
        report = verify(conn, WINDOW, now=NOW)
        window = {"start": NOW - WINDOW, "end": NOW}
        counted = conn.execute(FUNNEL_SQL, window).fetchone()
        trades, wins, pnl_quote = conn.execute(
            "select count(*), count(*) filter (where pnl_quote > 0), sum(pnl_quote) from trades"
            " where closed_at >= %(start)s and closed_at < %(end)s", window).fetchone()
        reasons = dict(conn.execute("select reject_reason, count(*) from signals where status = 'rejected'"
                                    " and created_at >= %(start)s group by 1", window).fetchall())

    f = report.funnel
    assert (f.emitted, f.claimed, f.ordered, f.filled, f.closed, f.rejected, f.expired, f.open) == counted
    assert counted == (10, 8, 3, 3, 2, 3, 1, 4)
    assert f.rejected_by_reason == reasons == {"spread too wide": 2, "insufficient balance": 1}
    assert (report.pnl.trades, report.pnl.wins, report.pnl.by_quote["USDT"]) == (trades, wins, pnl_quote) == (
        2, 1, Decimal(3))
    assert report.pnl.win_rate == 0.5
    assert [(s.signal_id, s.problem) for s in report.stuck] == [
        (funnel_db["stuck_claimed"], "claimed, lease past due"),
        (funnel_db["stuck_executing"], "executing without an order"),
    ]
    assert report.exit_code == 1


def test_verify_command_prints_the_stuck_ids_and_exits_1(funnel_db: dict[str, str]) -> None:
    console, out = output_console()

    with pytest.raises(typer.Exit) as exited:
        verify_command(context(funnel_db["url"]), "24h", console=console, now=NOW)

    assert exited.value.exit_code == 1
    text = out.getvalue()
    assert funnel_db["stuck_claimed"] in text and funnel_db["stuck_executing"] in text
    assert funnel_db["healthy"] not in text
    assert "spread too wide" in text and "win rate 50%" in text
    assert "P&L +3.00 USDT" in text and "(quote)" not in text  # the amount in its named currency


def test_verify_command_exits_0_when_nothing_is_stuck_and_2_for_a_bad_window(migrated_db: str) -> None:
    console, out = output_console()
    verify_command(context(migrated_db), "7d", console=console, now=NOW)
    assert "nothing stuck" in out.getvalue()

    with pytest.raises(typer.Exit) as exited:
        verify_command(context(migrated_db), "24 hours", console=console)
    assert exited.value.exit_code == 2
