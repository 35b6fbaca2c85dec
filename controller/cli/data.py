"""`python -m controller backfill`: fill the candle store from an exchange's public API or recorded files.

`backfill --exchange X --symbols A,B --timeframe 1m --days N [--replay DIR]`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bridge.redaction import redact
from bridge.resilience import CallError
from controller.cli.base import Context, ReplayOption, fail
from controller.config_base import ConfigError

if TYPE_CHECKING:
    from controller.data.market_data import BackfillProgress, MarketDataSource, ReplaySource


def register(app: typer.Typer) -> None:
    app.command("backfill")(backfill_cmd)


def backfill_cmd(
    ctx: typer.Context,
    exchange: Annotated[str, typer.Option(help="ccxt exchange id (or the recorded files' exchange with --replay)")],
    symbols: Annotated[str, typer.Option(help="comma-separated pairs, e.g. BTC-USDT,ETH-USDT")],
    timeframe: Annotated[str, typer.Option(help="candle timeframe, e.g. 1m")] = "1m",
    days: Annotated[int, typer.Option(min=1, max=3650, help="how many days back from now (or the data's end)")] = 7,
    replay: ReplayOption = None,
) -> None:
    """Fetch missing candles into the store, with a progress bar."""
    backfill_command(ctx.obj, exchange, [s.strip() for s in symbols.split(",") if s.strip()], timeframe, days, replay)


def _replay_source(folder: Path, exchange: str, symbols: list[str], timeframe: str) -> tuple[ReplaySource, datetime]:
    """The replay source and the end of its data: recorded files end in the past, so "now" is their end."""
    from controller.data.market_data import ReplaySource, SimClock, timeframe_seconds, utc_now

    try:
        source = ReplaySource(folder, exchange, clock=SimClock(utc_now()))
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    missing = [s for s in symbols if s not in source.symbols(timeframe)]
    if missing:
        held = ", ".join(source.symbols(timeframe)) or "none"
        raise fail(f"{folder} holds no {timeframe} candles of {exchange} for {', '.join(missing)} (it has: {held})")
    end = max(source.span(s, timeframe)[1] for s in symbols) + timedelta(seconds=timeframe_seconds(timeframe))
    source.clock.set(end)
    return source, end


def backfill_command(ctx_obj: Context, exchange: str, symbols: list[str], timeframe: str, days: int,
                     replay: Path | None = None, *, console: Console | None = None) -> dict[str, int]:
    """Backfill the last `days` of `timeframe` candles for `symbols`, showing progress; return rows written.

    Live, the window ends at the open of the candle now forming; with `replay`, at the end of the
    recorded files. Only candles missing from the store are fetched, so a second run writes nothing.
    """
    # imported here, not at the top: market data pulls pandas and ccxt, which `--help` or `migrate` never need
    from controller.data.market_data import (
        CcxtSource,
        backfill,
        floor_time,
        normalize_symbol,
        timeframe_seconds,
        utc_now,
    )
    from controller.data.storage import open_store

    console = console or Console()
    try:
        timeframe_seconds(timeframe)
        wanted = list(dict.fromkeys(normalize_symbol(s) for s in symbols if s.strip()))
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not wanted:
        raise fail("no symbols given: --symbols BTC-USDT,ETH-USDT")
    if days < 1:
        raise fail(f"--days must be at least 1, got {days}")

    source: MarketDataSource
    if replay is not None:
        source, end = _replay_source(replay, exchange, wanted, timeframe)
    else:
        try:
            source = CcxtSource(exchange)
        except ValueError as exc:
            raise fail(str(exc)) from None
        end = floor_time(utc_now(), timeframe)
    start = end - timedelta(days=days)

    try:
        store = open_store(ctx_obj.config.database, ctx_obj.secrets)
    except ConfigError as exc:
        raise fail(str(exc)) from None

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rows]} rows written"), TimeElapsedColumn(), TimeRemainingColumn())
    written: dict[str, int] = {}
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            tasks: dict[str, int] = {}

            def on_page(event: BackfillProgress) -> None:
                if event.symbol not in tasks:
                    tasks[event.symbol] = bar.add_task(f"{exchange} {event.symbol} {timeframe}",
                                                       total=max(event.slots_total, 1), rows=0)
                bar.update(tasks[event.symbol], completed=event.slots_done if event.slots_total else 1,
                           rows=event.rows_written)

            console.print(f"backfilling {exchange} {timeframe} from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC"
                          f" ({source.name})", highlight=False)
            written = backfill(store, source, exchange, wanted, timeframe, start, end, progress=on_page)
    except CallError as exc:
        raise fail(f"backfill stopped: {redact(str(exc))}", code=1) from None
    finally:
        store.close()
    for symbol, rows in written.items():
        console.print(f"{exchange} {symbol} {timeframe}: {rows} candle(s) written", highlight=False)
    return written
