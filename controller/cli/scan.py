"""`scan` and `run`: the controller loop, live or over recorded candles."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from controller.cli.base import (
    Context,
    ExchangeOption,
    ReplayOption,
    SymbolsOption,
    connect,
    console,
    fail,
    parse_time,
)
from controller.config_base import ConfigError
from controller.data.embedded_db import EmbeddedDbError
from controller.data.shards import ShardSpec, parse_spec

if TYPE_CHECKING:
    from controller.scan.pipeline import CycleReport
    from controller.wiring import Wiring


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_cmd)
    app.command("run")(run_cmd)


def _wiring(ctx: Context, replay: Path | None, exchange: str | None, start: datetime | None,
            symbols: str | None, shard: ShardSpec | None = None, holder: str | None = None) -> Wiring:
    if ctx.secrets.database_url is not None or (ctx.config.database.embedded and not ctx.secrets.supabase_url):
        connect(ctx).close()  # the store's database, unreachable or malformed, is said now: before seconds of imports
    from controller import wiring as app_wiring  # the pipeline's imports (pandas, TA-Lib, ccxt) only when needed

    try:
        return app_wiring.build(ctx.config, ctx.secrets, replay=replay, exchange=exchange, start=start,
                                symbols=tuple(symbols.split(",")) if symbols else None, shard=shard,
                                holder=holder)
    except (ConfigError, EmbeddedDbError, FileNotFoundError) as exc:  # a bad recorded file is a ConfigError too
        raise fail(str(exc)) from None


def scan_cmd(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="run one scan and exit")] = True,
    replay: ReplayOption = None,
    until: Annotated[str | None, typer.Option(help="scan time (replay), ISO 8601")] = None,
    exchange: ExchangeOption = None,
    symbols: SymbolsOption = None,
) -> None:
    """Run one scan and print a table of decisions."""
    if replay is None and until is not None:
        raise fail("--until needs --replay: live scans happen now")
    wiring = _wiring(ctx.obj, replay, exchange, parse_time(until), symbols)
    try:
        report = wiring.scanner.scan()
    finally:
        wiring.store.close()
    _print_report(report)
    if report.outage:  # cron and supervisors must notice: no pair got candles
        raise typer.Exit(1)


def run_cmd(
    ctx: typer.Context,
    replay: ReplayOption = None,
    start: Annotated[str | None, typer.Option(help="first scan time (replay), ISO 8601")] = None,
    until: Annotated[str | None, typer.Option(help="last scan time (replay), ISO 8601")] = None,
    exchange: ExchangeOption = None,
    symbols: SymbolsOption = None,
    shard: Annotated[str | None, typer.Option(
        help="scan one shard of the universe: i/n (shard i of n) or auto/n (any free or lapsed shard, and "
             "every shard whose controller stopped renewing its lease); symbols go to shards by a stable hash")] = None,
    holder: Annotated[str | None, typer.Option(help="this controller's name on its shard leases "
                                                    "(default: host-pid)")] = None,
) -> None:
    """Scan the universe at every candle close until stopped (SIGTERM: after the current cycle)."""
    from controller.scan import pipeline

    try:
        spec = parse_spec(shard) if shard is not None else None
    except ValueError as exc:
        raise fail(str(exc)) from None
    if holder is not None and spec is None:
        raise fail("--holder needs --shard: only a sharded controller holds leases")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from controller.wiring import operations, shadow_evaluator

    end = parse_time(until)
    if replay is not None and end is None:
        raise fail("--until is required with --replay")
    wiring = _wiring(ctx.obj, replay, exchange, parse_time(start), symbols, spec, holder)
    step = wiring.base_timeframe_s()
    if wiring.leases is not None:
        lease_s = wiring.leases.lease_s
        if wiring.clock is None and lease_s >= step:
            console.print(f"[yellow]shard lease {lease_s:g} s is not shorter than the {step} s candle period: a "
                          "dead controller's shards are taken over a cycle late[/yellow]", soft_wrap=True)
        console.print(f"shard {spec.text() if spec else ''} as {wiring.leases.holder}, lease {lease_s:g} s")
        wiring.leases.start()
    ops = operations(wiring, ctx.obj.config, ctx.obj.secrets)
    try:
        evaluator = shadow_evaluator(wiring, ctx.obj.config, ctx.obj.secrets)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if evaluator is not None:
        evaluator.start()  # its own thread: a slow evaluation never delays a scan
    try:
        if wiring.clock is None:
            pipeline.run_live(wiring.scanner, step, stop, on_cycle=ops.on_cycle)
        else:
            reports = pipeline.run_replay(wiring.scanner, wiring.clock.advance, wiring.clock.now, end, step, stop,
                                          on_cycle=ops.on_cycle)
            emitted = sum(r.emitted for r in reports)
            console.print(f"replayed {len(reports)} scans up to {wiring.clock.now():%Y-%m-%d %H:%M}: "
                          f"{emitted} signal(s) emitted")
    finally:
        if evaluator is not None:
            evaluator.stop()
        if wiring.leases is not None:  # a clean stop frees its shards for the others at once
            wiring.leases.stop(release=True)
        ops.close()  # the final health report: how the run ended, even when it ended on an error
        wiring.store.close()
    console.print("stopped cleanly" if stop.is_set() else "done")


def _print_report(report: CycleReport) -> None:
    if report.skipped:
        console.print(f"scan at {report.at:%Y-%m-%d %H:%M} skipped: {report.skipped}")
        return
    regime = report.regime
    console.print(f"scan at {report.at:%Y-%m-%d %H:%M} on {report.exchange}: regime {regime.regime.value} "
                  f"({regime.reason})", soft_wrap=True)
    table = Table(title="decisions")
    for column in ("strategy", "symbol", "decision", "confidence", "reason"):
        table.add_column(column)
    for item in sorted(report.planned, key=lambda p: (p.decision.strategy, p.decision.symbol)):
        table.add_row(item.decision.strategy, item.decision.symbol, item.outcome,
                      f"{item.decision.confidence:.2f}", item.reason)
    console.print(table)
    for name, failure in sorted(report.failures.items()):
        if report.outage and name.startswith("data:"):
            continue  # said once below
        console.print(f"[red]failed[/red] {name}: {failure}")
    if report.outage:
        console.print(f"[red]{report.outage}[/red]", soft_wrap=True)
    console.print(f"{report.emitted} signal(s) emitted in {report.duration_s:.2f} s")
