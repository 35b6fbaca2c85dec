"""Phase 1, end to end and offline: `make demo` (`python -m offline.demo`).

The controller scans recorded candles (replayed, simulated time) and emits signals into Postgres; the
Hummingbot signal executor claims them inside Hummingbot's real Clock on MockPaperExchange, whose order
book follows the replayed closes, trades them and reports every event; at the end the signal funnel and
the closed trades with P&L per strategy are read back from the database views.

It runs in its own database (`trading_demo` on the embedded server, created afresh each run), so it never
touches the data of `python -m controller run`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bridge.queue_client import PostgresQueue
from controller.config import ControllerConfig, load_config, load_model, load_secrets
from controller.data import db, flags
from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir
from controller.data.migrate import migrate
from controller.data.storage.postgres import PostgresStore
from controller.ops import logs
from controller.scan.pipeline import Scanner
from controller.scan.signals import QuoteSizing, SizingParams
from controller.scan.strategy_params import load_strategies
from offline.harness import Harness, executor_config, start, stop

DEMO_DB = "trading_demo"
EXCHANGE = "bittrex"
SYMBOLS = ("ADA-BTC", "ETC-BTC", "ETH-BTC", "LTC-BTC", "XLM-BTC")
STEP_S = 300  # the replay advances one 5-minute candle per scan
console = Console(width=140)


def demo_database(config: ControllerConfig) -> str:
    """A fresh `trading_demo` database on the embedded server (or the DATABASE_URL given), migrated, phase 1."""
    secrets = load_secrets()
    if secrets.database_url is not None:
        url = secrets.database_url.get_secret_value()
        console.print("[yellow]DATABASE_URL is set: the demo writes its signals and trades into that database[/]")
    else:
        server = db.embedded(config.database).start()
        with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DEMO_DB)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DEMO_DB)))
        url = server.url_for(DEMO_DB)
    specs = load_model(flags.FlagsFile, config.resolve(config.flags.file))
    with psycopg.connect(url) as conn:
        migrate(conn)
        flags.sync(conn, specs, "demo")
        flags.apply_phase(conn, specs, 1, "demo")
    return url


def close_at(source: ReplaySource, symbol: str, now: datetime) -> float | None:
    candles = source.fetch_ohlcv(symbol, "5m", now - timedelta(minutes=30), now)
    return float(candles["close"].iloc[-1]) if not candles.empty else None


def follow(harness: Harness, source: ReplaySource, now: datetime) -> None:
    """Move each pair's paper book to the last replayed close (a tight book: spread 0.04%)."""
    for symbol in SYMBOLS:
        if (mid := close_at(source, symbol, now)) is not None:
            harness.book(symbol, mid, spread_step=mid * 0.0002, volume=1e9 / 1e4)


async def run(url: str, config: ControllerConfig, start_at: datetime, hours: float) -> dict[str, float]:
    # Quotes are in BTC on this data: small sizes, a 0.5 BTC paper balance. The 2018 Bittrex files hold no
    # BTC market, so the regime is unknown: the demo acts as CAUTION instead of blocking every entry.
    config = config.model_copy(update={
        "sizing": SizingParams(quotes={"BTC": QuoteSizing(amount=0.002, balance=0.5)}, max_balance_share=0.5),
        "regime": config.regime.model_copy(update={"on_missing": "caution"})})
    store = PostgresStore(url)
    clock = SimClock(start_at)
    source = ReplaySource(ohlcv_dir(), EXCHANGE, clock=clock)
    outbox = Path(tempfile.mkdtemp(prefix="demo-outbox-")) / "outbox.jsonl"
    executor = executor_config(outbox, exchange=EXCHANGE, trading_pairs=list(SYMBOLS), consumer="demo-bot",
                               max_open_positions=20, max_open_per_pair=3, stability_window_s=5,
                               claim_interval_s=0.02, heartbeat_interval_s=2)
    harness = start(executor, PostgresQueue(url), balances={"BTC": 0.5, **{s.split("-")[0]: 0 for s in SYMBOLS}},
                    books={}, tick_size=5.0)
    follow(harness, source, clock.now())
    # Signals expire in the executor's time: here that is the paper clock, which runs ahead of the wall clock.
    scanner = Scanner(config=config, strategy_config=load_strategies(config.resolve(config.loop.strategies_file),
                                                                     config.resolve(config.loop.tiers_file)),
                      store=store, source=source, exchange=EXCHANGE, symbols=SYMBOLS, clock=clock.now,
                      wall_clock=lambda: datetime.fromtimestamp(harness.now, UTC),
                      flag_defaults=store.flag_values())
    end = start_at + timedelta(hours=hours)
    started, scans, emitted = time.monotonic(), 0, 0
    try:
        while clock.now() < end:
            clock.advance(STEP_S)
            report = scanner.scan()
            scans += 1
            emitted += report.emitted
            follow(harness, source, clock.now())
            if report.emitted:
                # let the executor claim what was just emitted before its clock moves on
                await harness.until(lambda total=emitted: harness.strategy.worker.stats["claimed"] >= total, 5,
                                    tick=False)
            await harness.step(STEP_S, real_pause=0.0005)
            if scans % 48 == 0:
                console.print(f"  replayed to {clock.now():%Y-%m-%d %H:%M}: {emitted} signals, "
                              f"{harness.strategy.worker.stats['claimed']} claimed, "
                              f"{len(harness.strategy.positions)} open positions")
        await harness.drained(timeout_s=60)
    finally:
        stop(harness)
        store.close()
    return {"scans": scans, "emitted": emitted, "seconds": time.monotonic() - started}


def report(url: str) -> None:
    with psycopg.connect(url) as conn:
        funnel = conn.execute(
            "select strategy, sum(emitted), sum(claimed), sum(ordered), sum(filled), sum(closed), sum(rejected),"
            " sum(expired), sum(open) from dashboard_signal_funnel group by strategy order by strategy").fetchall()
        rejections = conn.execute("select strategy, reason, sum(signals) from dashboard_signal_rejections"
                                  " group by 1, 2 order by 3 desc limit 10").fetchall()
        performance = conn.execute("select strategy, trades, wins, win_rate_pct, pnl_quote, avg_pnl_pct, fees_quote"
                                   " from dashboard_strategy_performance order by strategy").fetchall()
        trades = conn.execute(
            "select s.strategy, t.symbol, t.exit_reason, t.entry_price, t.exit_price, t.pnl_quote, t.pnl_pct"
            " from trades t join signals s on s.id = t.signal_id order by t.closed_at").fetchall()
    table = Table(title="signal funnel (dashboard_signal_funnel)")
    for column in ("strategy", "emitted", "claimed", "ordered", "filled", "closed", "rejected", "expired", "open"):
        table.add_column(column)
    for row in funnel:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    if rejections:
        table = Table(title="rejections by reason (dashboard_signal_rejections)")
        for column in ("strategy", "reason", "signals"):
            table.add_column(column)
        for row in rejections:
            table.add_row(*(str(v) for v in row))
        console.print(table)
    table = Table(title="closed trades: P&L per strategy (dashboard_strategy_performance)")
    for column in ("strategy", "trades", "wins", "win rate %", "P&L (BTC)", "avg P&L %", "fees (BTC)"):
        table.add_column(column)
    for strategy, count, wins, win_rate, pnl, avg_pct, fees in performance:
        table.add_row(strategy, str(count), str(wins), str(win_rate), f"{pnl:+.8f}", f"{avg_pct:+.2f}", f"{fees:.8f}")
    console.print(table)
    table = Table(title=f"closed trades ({len(trades)})")
    for column in ("strategy", "pair", "exit", "entry", "exit price", "P&L (BTC)", "P&L %"):
        table.add_column(column)
    for strategy, symbol, reason, entry, exit_price, pnl, pnl_pct in trades[-15:]:
        table.add_row(strategy, symbol, reason, f"{entry:.8f}", f"{exit_price:.8f}", f"{pnl:+.8f}", f"{pnl_pct:+.2f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2018-01-11T00:00:00+00:00", help="replay start (ISO 8601)")
    parser.add_argument("--hours", type=float, default=48, help="how much recorded time to replay")
    args = parser.parse_args()
    config = load_config()
    logs.configure("WARNING")
    logging.getLogger("controller.scan.pipeline").setLevel(logging.ERROR)  # per-symbol data notes would drown the demo
    url = demo_database(config)
    start_at = datetime.fromisoformat(args.start).astimezone(UTC)
    console.print(f"phase 1 offline: replaying {args.hours:g} h of {EXCHANGE} candles from {start_at:%Y-%m-%d %H:%M} "
                  f"for {', '.join(SYMBOLS)}; executor on Hummingbot's Clock and MockPaperExchange")
    figures = asyncio.run(run(url, config, start_at, args.hours))
    console.print(f"{figures['scans']} scans, {figures['emitted']} signals emitted, in {figures['seconds']:.0f} s")
    report(url)


if __name__ == "__main__":
    main()
