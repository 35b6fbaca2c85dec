"""The recovery plan of seed 004, phase by phase, offline on recorded candles: `make demo` (`python -m offline.demo`).

    python -m offline.demo [--data DIR] [--exchange X] [--symbols A,B] [--start T] [--hours H] [--phases 0-4]
                           [--quick] [--report FILE.html]

0. storage: a month of old candles is loaded, retention runs, the storage report shows what it freed;
1. rules: the controller replays the recorded candles and emits signals into Postgres; the Hummingbot signal
   executor claims them on Hummingbot's real Clock and MockPaperExchange (Binance-like fees of 0.1 %), whose
   book follows the replayed closes, and trades them;
2. validation (seed 004 §2.1): the phase-2 flags (`profile: validation`), so the scan itself runs one
   strategy with small positions (`loop.validation`), the replay's pairs as its top pairs, replayed on until
   50 trades of this phase have closed (or its cap, or the data's end);
3. ML: trained on the candles before its window only, promoted or refused by the gate, then the window
   replayed with ML scoring (boosted and control arms), and 4. shadows: the evaluator beside the replay
   (a pass every few replayed hours, so outcomes resolve on the later candles), its leaderboard, a
   recommendation applied with `shadow.apply` and the rollback monitor (offline/phases.py).
Each phase ends with its success criteria (`python -m controller phase check N`); the run ends with every
checklist and an HTML report (`python -m controller report`).

It runs in its own database (`trading_demo` on the embedded server, created afresh each run, or the
DATABASE_URL given), so it never touches the data of `python -m controller run`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bridge.path import Candle, Mode, Point, market_path
from bridge.queue_client import PostgresQueue
from controller.cli.phase import checklist
from controller.config import PROJECT_ROOT, ControllerConfig, load_config, load_model, load_secrets
from controller.config_base import ConfigError
from controller.data import db, flags
from controller.data.market_data import SimClock, ohlcv_dir, timeframe_seconds
from controller.data.migrate import migrate
from controller.data.storage.postgres import PostgresStore
from controller.ops import logs
from controller.ops.phase_check import Check, PhaseResult, check
from controller.ops.report import build_html, read_report
from controller.ops.retention import human_bytes, run_retention, storage_report
from controller.scan.pipeline import CycleReport, Scanner
from controller.scan.signals import SizingParams
from controller.scan.strategy_params import StrategiesConfig, load_strategies
from ml.scoring import MlScorer
from offline import phases as ml_and_shadow
from offline.dataset import DatasetError, DatasetSource, Selection, load, parse_start, select
from offline.harness import BINANCE_FEES, Harness, PaperExchange, executor_config, start, stop
from shadow.apply import ActiveParams

DEMO_DB = "trading_demo"
STEP_S = 300  # the replay advances one 5-minute candle per scan
BOOK_SPREAD_PCT = 0.02  # the paper book's levels: 0.02 % apart, so a 0.04 % spread around the mid
BOOK_VOLUME = 1e9 / 1e4
BOOK_WIDTH = 0.01  # levels out to 1 % of the mid each side: a market exit never walks past them
PATH_STEP_PCT = 0.1  # the paper book moves along a candle's path at most this far (percent) per tick
PHASE1_TARGET_TRADES = 10  # the phase checklists' figures (controller.ops.phase_check)
PHASE2_TARGET_TRADES = 50
CORE_PAIRS = 5  # the default run's pairs for phases 1, 3 and 4 (the longest records)
PHASE2_PAIRS = 15  # the default run's validation universe: every pair recorded over the same stretch, up to this
console = Console(width=140)


def default_data() -> Path:
    """The shared history recordings (`$OHLCV_HISTORY_DIR`, else `shared/data/ohlcv-history` beside the
    project) where present, else the shared recordings (`ohlcv_dir()`). The history holds 20 days of up to 20
    Bittrex pairs recorded together (2017-10-25 to 11-14), with earlier windows of the same pairs for ML to
    learn from; the shared folder's five pairs trade too rarely in their last days for phase 1's ten trades."""
    history = Path(os.environ.get("OHLCV_HISTORY_DIR", PROJECT_ROOT.parent / "shared" / "data" / "ohlcv-history"))
    return history if history.is_dir() else ohlcv_dir()


# --- the options ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """What the user asked for, checked against the data."""

    selection: Selection  # every pair the run replays (phase 2's validation universe)
    core: tuple[str, ...]  # the pairs phases 1, 3 and 4 scan
    phases: tuple[int, ...]
    phase1_hours: float
    phase2_max_hours: float
    phase3_hours: float
    phase4_hours: float
    old_candle_days: int
    report: Path


def parse_phases(text: str) -> tuple[int, ...]:
    """'0-4' -> (0, 1, 2, 3, 4); '1,2' -> (1, 2); '3' -> (3,)."""
    try:
        if "-" in text:
            low, high = (int(p) for p in text.split("-", 1))
            phases = tuple(range(low, high + 1))
        else:
            phases = tuple(sorted({int(p) for p in text.split(",")}))
    except ValueError:
        raise DatasetError(f"--phases: expected a range like 0-4 or a list like 1,2, got {text!r}") from None
    if not phases or any(p not in range(5) for p in phases):
        raise DatasetError(f"--phases: phases are 0 to 4, got {text!r}")
    return phases


def make_plan(args: argparse.Namespace) -> Plan:
    phases = parse_phases(args.phases)
    if args.hours is not None and args.hours <= 0:
        raise DatasetError(f"--hours must be positive, got {args.hours:g}")
    phase1 = args.hours if args.hours is not None else (8.0 if args.quick else 36.0)
    symbols = [s for s in args.symbols.split(",") if s] if args.symbols else None
    wide = PHASE2_PAIRS if symbols is None and 2 in phases and not args.quick else CORE_PAIRS
    # a cap: phase 2 stops at 50 trades (on 15 pairs about two days; five pairs close about 14 in 36 h)
    phase2 = 8.0 if args.quick else 48.0 if wide != CORE_PAIRS else 36.0
    phase3 = 3.0 if args.quick else 8.0  # the window ML scores
    # phase 4 replays on while the evaluator runs: long enough for outcomes to reach their exits, a
    # recommendation to be applied and trades to close after it for the rollback monitor
    phase4 = 6.0 if args.quick else 24.0
    replayed = phase1 * (1 in phases) + phase2 * (2 in phases) + phase3 * (3 in phases) + phase4 * (4 in phases)
    # Without --symbols, phase 2 (the validation profile: one strategy, many small positions) trades every pair
    # recorded over the same stretch (up to PHASE2_PAIRS) so that 50 trades close within its cap; the other
    # phases scan the CORE_PAIRS longest records. With --symbols, every phase scans those.
    start = parse_start(args.start)
    if start is None and {3, 4} & set(phases):
        # ML learns from the candles before its window: replay the last hours of the data, train on the rest
        # (the end of the stretch recorded without a hole: windows recorded months later are not replayed)
        last = select(Path(args.data), args.exchange, symbols, None, None, max_symbols=wide).stretch_end
        assert last is not None
        start = pd.Timestamp(last - timedelta(hours=replayed)).floor("5min").to_pydatetime()
    selection = select(Path(args.data), args.exchange, symbols, start, replayed or phase1, max_symbols=wide)
    core = selection.symbols
    if len(selection.symbols) <= CORE_PAIRS:
        phase2 = min(phase2, 36.0)  # the folder had no more pairs: the five-pair cap (the window ends later, unused)
    if wide != CORE_PAIRS:
        longest = select(Path(args.data), args.exchange, None, start, replayed or phase1).symbols
        core = tuple(s for s in selection.symbols if s in longest)
    return Plan(selection, core, phases, phase1, phase2, phase3, phase4, 7 if args.quick else 31,
                Path(args.report))


# --- the shared world of one run -----------------------------------------------------------------------

@dataclass
class Demo:
    url: str
    config: ControllerConfig
    plan: Plan
    specs: flags.FlagsFile
    clock: SimClock
    source: DatasetSource
    store: PostgresStore
    harness: Harness | None = None
    emitted: int = 0
    results: dict[int, PhaseResult | str] = field(default_factory=dict)
    recorded_until: dict[str, pd.Timestamp] = field(default_factory=dict)  # per pair, the last candle `record` wrote
    seconds: dict[str, float] = field(default_factory=dict)
    path_mode: Mode = "adaptive"  # how the paper book orders each candle's insides (`bridge.path`)

    @property
    def selection(self) -> Selection:
        return self.plan.selection

    @property
    def core(self) -> tuple[str, ...]:
        return self.plan.core

    def conn(self) -> psycopg.Connection:
        return psycopg.connect(self.url)

    def set_phase(self, phase: int) -> None:
        with self.conn() as conn:
            flags.apply_phase(conn, self.specs, phase, "demo")

    def finish_phase(self, phase: int) -> None:
        with self.conn() as conn:
            result = check(conn, [phase])[0]
        self.results[phase] = result
        console.print(checklist(result), highlight=False)

    def trades(self) -> int:
        with self.conn() as conn:
            return conn.execute("select count(*) from trades").fetchone()[0]


class DemoBusy(Exception):
    """Another demo run holds the demo database."""


def _lock(url: str, timeout_s: int) -> psycopg.Connection:
    """A session lock on the server of `url`, held by the returned connection for the whole run, so a second
    demo started meanwhile stops with one line instead of dropping the first one's database under it."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=timeout_s)
    if not conn.execute("select pg_try_advisory_lock(hashtext('offline.demo'))").fetchone()[0]:
        conn.close()
        raise DemoBusy("another offline demo is running on this database server (it uses the demo database); "
                       "wait for it to finish, or give this one its own database with DATABASE_URL")
    return conn


def demo_database(config: ControllerConfig) -> tuple[str, psycopg.Connection]:
    """A fresh `trading_demo` database on the embedded server (or the DATABASE_URL given), migrated; and the
    connection holding the demo's lock (close it at the end of the run). A malformed or unreachable
    DATABASE_URL raises ConfigError with one line, before anything is written."""
    secrets = load_secrets()
    timeout_s = config.database.connect_timeout_s
    if secrets.database_url is not None:
        url = db.database_url(config.database, secrets)
        db.check_reachable(url, timeout_s)
        lock = _lock(url, timeout_s)
        console.print("[yellow]DATABASE_URL is set: the demo writes its signals and trades into that database[/]")
    else:
        server = db.embedded(config.database).start()
        lock = _lock(server.url_for("postgres"), timeout_s)
        with psycopg.connect(server.url_for("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(DEMO_DB)))
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DEMO_DB)))
            # a throwaway database: a commit need not wait for its WAL flush (a crash loses the last few
            # commits of a demo, never their consistency); the replay commits after every scan and claim
            conn.execute(sql.SQL("alter database {} set synchronous_commit = off").format(sql.Identifier(DEMO_DB)))
        url = server.url_for(DEMO_DB)
    with psycopg.connect(url) as conn:
        migrate(conn)
    return url, lock


# --- phase 0: storage ----------------------------------------------------------------------------------

def old_candles(demo: Demo, days: int, now: datetime) -> pd.DataFrame:
    """`days` of the first pair's recorded candles, tiled and re-stamped to end 200 days before `now`:
    past the 5m tier's 180-day limit, so retention must drop or archive them."""
    selection = demo.selection
    series = next(s for (sym, tf), s in demo.source.series.items()
                  if sym == demo.core[0] and tf == selection.timeframe)
    recorded = load(series)
    step = pd.Timedelta(selection.timeframe)
    count = int(pd.Timedelta(days=days) / step)
    repeats = -(-count // len(recorded))
    frame = pd.concat([recorded] * repeats, ignore_index=True).iloc[:count].copy()
    end = pd.Timestamp(now - timedelta(days=200)).floor(step)
    frame["ts"] = [end - step * (count - 1 - i) for i in range(count)]
    return frame.assign(exchange=selection.exchange, symbol=demo.core[0], timeframe=selection.timeframe)


async def phase0(demo: Demo) -> None:
    demo.set_phase(0)
    with demo.conn() as conn:
        now = conn.execute("select now()").fetchone()[0]
    written = demo.store.write_candles(old_candles(demo, demo.plan.old_candle_days, now))
    with demo.conn() as conn:
        before = {t.table_name: t for t in storage_report(conn)}
        report = run_retention(conn)
        after = {t.table_name: t for t in storage_report(conn)}
        expired = conn.execute(
            "select count(*) from candles c join candle_retention_tiers() t using (timeframe)"
            " where c.ts < now() - t.delete_after").fetchone()[0]
    moved = sum(r.rows for r in report if r.action in ("moved", "deleted"))
    dropped = sum(r.rows for r in report if r.action == "partitions_dropped")
    table = Table(title="phase 0: storage before and after retention (candles loaded 200 days old)")
    for column in ("table", "rows before", "size before", "rows after", "size after"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name in ("candles", "candles_archive", "scans", "scans_daily", "signals"):
        if name in before:
            b, a = before[name], after[name]
            table.add_row(name, f"{b.rows:,}", human_bytes(b.total_bytes), f"{a.rows:,}", human_bytes(a.total_bytes))
    console.print(table)
    ok_loaded = written > 0
    ok_bounded = expired == 0 and after["candles"].rows < before["candles"].rows
    result = PhaseResult(0, "storage bounded", (
        Check("a month of old candles loaded", ok_loaded, f"{written:,} candles of {demo.core[0]} "
                                                           f"{demo.selection.timeframe}, 200+ days old"),
        Check("retention moved or dropped them", ok_bounded,
               f"candles {before['candles'].rows:,} -> {after['candles'].rows:,} rows; {moved:,} rows moved or "
               f"deleted, {dropped} partitions dropped; {expired} candles left past their tier's limit"),
        Check("storage reported per table", bool(after),
               f"{len(after)} tables, {human_bytes(sum(t.total_bytes for t in after.values()))} in all"),
    ))
    demo.results[0] = result
    console.print(checklist(result), highlight=False)


# --- phases 1 and 2: the replay ----------------------------------------------------------------------------

def fee_exchange(demo: Demo) -> PaperExchange:
    """Hummingbot's paper exchange charging Binance's spot fees (0.1 %, the buy fee taken from the bought coin),
    funded in the selection's quote currency only: the executor sells what a position holds net of that fee."""
    exchange = PaperExchange(trade_fee_schema=BINANCE_FEES)
    exchange.set_balance(demo.selection.quote, demo.selection.balance)
    for symbol in demo.selection.symbols:
        exchange.set_balance(symbol.split("-")[0], 0)
    return exchange


def follow(demo: Demo, now: datetime) -> None:
    """Put each pair's paper book at the last replayed close (a tight book: spread 0.04 %)."""
    assert demo.harness is not None
    for symbol in demo.selection.symbols:
        candles = demo.source.fetch_ohlcv(symbol, demo.selection.timeframe, now - timedelta(minutes=30), now)
        if not candles.empty:
            mid = float(candles["close"].iloc[-1])
            demo.harness.book(symbol, mid, spread_step=mid * BOOK_SPREAD_PCT / 100, volume=BOOK_VOLUME,
                              width=BOOK_WIDTH)


def candle_paths(demo: Demo, now: datetime) -> dict[str, list[Point]]:
    """Each pair's market path over the candles that closed in the last step (the selection's 5m or 1m:
    five 1m candles walk five paths), its times relative to the step's start."""
    start = now - timedelta(seconds=STEP_S)
    tf_s = float(timeframe_seconds(demo.selection.timeframe))
    out = {}
    for symbol in demo.selection.symbols:
        candles = demo.source.fetch_ohlcv(symbol, demo.selection.timeframe, start, now)
        if candles.empty:
            continue
        bars = [Candle(ts.timestamp() - start.timestamp(), tf_s, o, h, lo, c) for ts, o, h, lo, c in zip(
            candles["ts"], candles["open"].astype(float), candles["high"].astype(float),
            candles["low"].astype(float), candles["close"].astype(float), strict=True)]
        out[symbol] = list(market_path(bars, mode=demo.path_mode).points)
    return out


def record(demo: Demo, symbols: tuple[str, ...], now: datetime) -> None:
    """Store the replayed candles of `symbols` that closed by `now` (the selection's 5m or 1m). The scan stores
    only the candles it reads: phase 2's scans read DCA's 15m candles, and phases 1, 3 and 4 do not scan the
    validation-only pairs; the shadow evaluator resolves outcomes on 1m/5m candles, so without these the
    outcomes of phase 2's candidates would stay pending."""
    timeframe, frames = demo.selection.timeframe, []
    for symbol in symbols:
        last = demo.recorded_until.get(symbol)
        since = last + pd.Timedelta(timeframe.replace("m", "min")) if last is not None else now - timedelta(hours=1)
        candles = demo.source.fetch_ohlcv(symbol, timeframe, since, now)
        if not candles.empty:
            demo.recorded_until[symbol] = candles["ts"].iloc[-1]
            frames.append(candles.assign(exchange=demo.selection.exchange, symbol=symbol, timeframe=timeframe))
    if frames:
        demo.store.write_candles(pd.concat(frames, ignore_index=True))


def demo_config(demo: Demo, sizing: SizingParams) -> ControllerConfig:
    """The controller config with the selection's sizing. Recordings without the regime's BTC market (the 2018
    Bittrex files) leave the regime unknown: the demo acts as CAUTION there instead of blocking every entry."""
    return demo.config.model_copy(update={
        "sizing": sizing, "regime": demo.config.regime.model_copy(update={"on_missing": "caution"})})


def scanner_for(demo: Demo, strategies: StrategiesConfig, config: ControllerConfig,
                symbols: tuple[str, ...] | None = None) -> Scanner:
    harness = demo.harness
    assert harness is not None
    # Signals expire in the executor's time: here that is the paper clock, which runs ahead of the wall clock.
    return Scanner(config=config, strategy_config=strategies, store=demo.store, source=demo.source,
                   exchange=demo.selection.exchange, symbols=symbols or demo.core, clock=demo.clock.now,
                   wall_clock=lambda: datetime.fromtimestamp(harness.now, UTC), flag_defaults=demo.store.flag_values(),
                   # as `controller run`: an applied recommendation trades (its lookup on the store's pool: a
                   # connection per scan and strategy cost more than the query)
                   params_source=ActiveParams(demo.store.pool.connection))


async def replay(demo: Demo, scanner: Scanner, until: datetime, done: Callable[[], bool] = lambda: False,
                 label: str = "", scan_every_s: int = STEP_S, recorded: tuple[str, ...] | None = None) -> int:
    """Trade one 5-minute candle at a time until `until` or `done()`: the executor's clock runs through the
    candle's five minutes while each pair's paper book walks that candle's market path (open, the extreme
    nearer the open, the other extreme, close: `bridge.path`), then the scan runs at its close (at each close
    of `scan_every_s`: the loop scans at the closes of the shortest timeframe it runs) and the executor claims
    what it emitted on a book at that close. `recorded`: the pairs whose candles `record` stores (default:
    every pair of the selection); returns the scans made."""
    harness = demo.harness
    assert harness is not None
    scans, timing = 0, demo.seconds
    # every pair's replayed candles are stored (the scan stores only the timeframes it reads): the shadow
    # replay and calibration walk the same finest path the paper book walked, not the scan's 15m candles
    unscanned = recorded if recorded is not None else demo.selection.symbols
    while demo.clock.now() < until and not done():
        demo.clock.advance(STEP_S)
        t0 = time.monotonic()
        await advance(harness, STEP_S, busy=False, paths=candle_paths(demo, demo.clock.now()))
        t1 = time.monotonic()
        if demo.clock.now().timestamp() % scan_every_s == 0:
            report = scanner.scan()
            scans += 1
        else:
            report = CycleReport(at=demo.clock.now())
        t2 = time.monotonic()
        demo.emitted += report.emitted
        if unscanned and demo.clock.now().timestamp() % 3600 == 0:
            record(demo, unscanned, demo.clock.now())  # an hour's candles in one write
        if report.emitted:
            # let the executor claim what was just emitted, on the book at this close, before its clock moves on
            try:
                await harness.until(lambda total=demo.emitted: harness.strategy.worker.stats["claimed"] >= total,
                                    10, tick=False)
            except AssertionError:  # a busy executor: its signals may expire, which the funnel then shows
                console.print(f"  [yellow]the executor has not claimed every signal after 10 s at "
                              f"{demo.clock.now():%Y-%m-%d %H:%M}; going on[/]")
        t3 = time.monotonic()
        timing["execute"] = timing.get("execute", 0.0) + t1 - t0
        timing["scan"] = timing.get("scan", 0.0) + t2 - t1
        timing["claim"] = timing.get("claim", 0.0) + t3 - t2
        if demo.clock.now().timestamp() % (4 * 3600) == 0:
            console.print(f"  {label}replayed to {demo.clock.now():%Y-%m-%d %H:%M}: {demo.emitted} signals, "
                          f"{harness.strategy.worker.stats['claimed']} claimed, "
                          f"{len(harness.strategy.positions)} open positions, {demo.trades()} trades closed")
    if unscanned:
        record(demo, unscanned, demo.clock.now())  # the rest, before a shadow pass reads them
    return scans


def in_flight(harness: Harness) -> bool:
    """Whether the executor is between a claim and its outcome: claimed signals not yet taken, orders not yet
    filled, close requests not yet acted on, acks and reports not yet delivered."""
    strategy = harness.strategy
    worker = strategy.worker
    return bool(strategy.pending) or not worker.claimed.empty() or not worker.close_requests.empty() \
        or not worker.restored.empty() or len(strategy.outbox) > 0


async def advance(harness: Harness, seconds: float, busy: bool,
                  paths: dict[str, list[Point]] | None = None) -> None:
    """Move Hummingbot's clock `seconds` on. It ticks every `tick_size` either way (backtest_til runs each tick's
    on_tick, order checks and fills); while the executor has work in flight each tick is followed by a moment of
    real time for its queue thread, as `Harness.step` does; when it has none (positions resting on their
    exits, or none open), the ticks run back to back: the thread has nothing to hand over between them.
    With `paths`, the books walk them on the way (`Harness.walk`)."""
    if paths is not None:
        pause = 0.0005 if busy or in_flight(harness) else 0.0
        await harness.walk(paths, seconds, real_pause=pause, spread_pct=BOOK_SPREAD_PCT, volume=BOOK_VOLUME,
                           width=BOOK_WIDTH, max_step_pct=PATH_STEP_PCT)
        return
    if busy or in_flight(harness):
        await harness.step(seconds, real_pause=0.0005)
        return
    harness.now += seconds
    harness.clock.backtest_til(harness.now)
    await asyncio.sleep(0)


async def phase1(demo: Demo) -> None:
    demo.set_phase(1)
    strategies = load_strategies(demo.config.resolve(demo.config.loop.strategies_file),
                                 demo.config.resolve(demo.config.loop.tiers_file))
    config = demo_config(demo, demo.selection.sizing())
    until = min(demo.clock.now() + timedelta(hours=demo.plan.phase1_hours), demo.selection.end)
    console.print(f"phase 1: rules -> Hummingbot paper trades from {demo.clock.now():%Y-%m-%d %H:%M} until "
                  f"{PHASE1_TARGET_TRADES} trades have closed (its checklist's figure; at most "
                  f"{demo.plan.phase1_hours:g} h), {_sizes(demo.selection, 1.0)}")
    scans = await _with_harness(demo, lambda: replay(demo, scanner_for(demo, strategies, config), until,
                                                     closed(demo, PHASE1_TARGET_TRADES)))
    console.print(f"  {scans} scans, {demo.emitted} signals emitted, {demo.trades()} trades closed")
    demo.finish_phase(1)


def closed(demo: Demo, target: int) -> Callable[[], bool]:
    """Whether `target` trades have closed since now (the count costs a query: looked at every 12 candles)."""
    before = demo.trades()
    calls = {"n": 0}

    def enough() -> bool:
        calls["n"] += 1
        return calls["n"] % 12 == 0 and demo.trades() - before >= target

    return enough


def validation_config(demo: Demo) -> ControllerConfig:
    """Phase 2 runs on the flag a user sets (`profile: validation`, which the phase-2 flags carry): the scan
    itself narrows to the profile's strategies (DCA), scales sizes by its size factor and caps open positions
    (`loop.validation` in conf/controller.yml). One setting differs, as a user replaying a recording would set it:
    the profile's "top pairs" are the replay's own pairs (the config lists BTC and ETH, of which a BTC-quoted
    recording holds one pair or none)."""
    config = demo_config(demo, demo.selection.sizing())
    bases = tuple(dict.fromkeys(s.split("-")[0] for s in demo.selection.symbols))
    profile = config.loop.validation.model_copy(update={"bases": bases})
    return config.model_copy(update={"loop": config.loop.model_copy(update={"validation": profile})})


async def phase2(demo: Demo) -> None:
    demo.set_phase(2)
    with demo.conn() as conn:
        profile_flag = flags.live_values(conn, demo.specs)["profile"]
    config = validation_config(demo)
    profile = config.loop.validation
    before = demo.trades()
    until = min(demo.clock.now() + timedelta(hours=demo.plan.phase2_max_hours), demo.selection.end)
    console.print(f"phase 2: profile={profile_flag} ({', '.join(profile.strategies)} only, on "
                  f"{', '.join(demo.selection.symbols)}, sizes x{profile.size_factor:g}, at most "
                  f"{profile.max_open_total} open, entries under confidence {profile.min_confidence:g} skipped) "
                  f"until {PHASE2_TARGET_TRADES} trades of this phase (at most {demo.plan.phase2_max_hours:g} h), "
                  f"{_sizes(demo.selection, profile.size_factor)}")
    # the profile runs one strategy: the loop scans at the closes of its timeframe (DCA's 15m), while the paper
    # book still follows every 5-minute close
    every = min(timeframe_seconds(s.timeframe) for n, s in _strategies(demo).items() if n in profile.strategies)
    scans = await _with_harness(demo, lambda: replay(
        demo, scanner_for(demo, _strategies(demo), config, demo.selection.symbols), until,
        closed(demo, PHASE2_TARGET_TRADES), "validation: ", scan_every_s=every, recorded=demo.selection.symbols))
    console.print(f"  {scans} scans (one per {every // 60} min candle) to {demo.clock.now():%Y-%m-%d %H:%M}, "
                  f"{demo.trades() - before} trades "
                  f"closed in this phase, {demo.trades()} in all")
    demo.finish_phase(2)


def _strategies(demo: Demo) -> StrategiesConfig:
    return load_strategies(demo.config.resolve(demo.config.loop.strategies_file),
                           demo.config.resolve(demo.config.loop.tiers_file))


async def _with_harness(demo: Demo, body: Callable[[], Awaitable[int]]) -> int:
    """Start the executor the first time (phases 1 and 2 share one bot and one paper wallet), run `body`."""
    if demo.harness is None:
        outbox = Path(tempfile.mkdtemp(prefix="demo-outbox-")) / "outbox.jsonl"
        executor = executor_config(outbox, exchange=demo.selection.exchange,
                                   trading_pairs=list(demo.selection.symbols), consumer="demo-bot",
                                   max_open_positions=50, max_open_per_pair=3, stability_window_s=5,
                                   # as a live bot (and Hummingbot's PositionExecutor): the take profit rests as
                                   # a limit sell at its level and fills there when the book crosses it; the
                                   # stop loss, trailing stop and time limit stay market exits that can slip
                                   take_profit_order_type="limit",
                                   # the scan's signals wake it at once (LISTEN): the poll is a fallback, and a
                                   # fast one costs the 2-core machine three queries every 20 ms
                                   claim_interval_s=0.1, heartbeat_interval_s=2)
        demo.harness = start(executor, PostgresQueue(demo.url), exchange=fee_exchange(demo), books={}, tick_size=5.0)
        follow(demo, demo.clock.now())
    scans = await body()
    await demo.harness.drained(timeout_s=60)
    return scans


def _sizes(selection: Selection, share: float) -> str:
    quote = selection.quote
    return f"{selection.amount(share):g} {quote} a trade, paper balance {selection.balance:g} {quote}"


# --- phases 3 and 4: the ML and shadow packages (offline/phases.py) ----------------------------------------

async def replay_scored(demo: Demo, hours: float, label: str, scorer: MlScorer) -> int:
    """Replay `hours` more with the rules' strategies, the scan scoring with `scorer` (when ml.enabled)."""
    strategies = load_strategies(demo.config.resolve(demo.config.loop.strategies_file),
                                 demo.config.resolve(demo.config.loop.tiers_file))
    config = demo_config(demo, demo.selection.sizing())
    until = min(demo.clock.now() + timedelta(hours=hours), demo.selection.end)

    async def body() -> int:
        scanner = scanner_for(demo, strategies, config)
        scanner.scorer = scorer
        return await replay(demo, scanner, until, label=label)

    scans = await _with_harness(demo, body)
    console.print(f"  {scans} scans to {demo.clock.now():%Y-%m-%d %H:%M}, {demo.emitted} signals in all, "
                  f"{demo.trades()} trades closed")
    return scans


async def phase3(demo: Demo) -> None:
    """ML trained on the earlier part of the data only (walk-forward), promoted or refused, then scoring."""
    demo.set_phase(3)
    await ml_and_shadow.run_phase3(demo, demo.plan.phase3_hours, lambda h, label, s: replay_scored(demo, h, label, s),
                            console)
    demo.finish_phase(3)


async def phase4(demo: Demo) -> None:
    """Shadows over the same replay, the leaderboard, a recommendation applied, a rollback when it fires."""
    demo.set_phase(4)
    harness_now = lambda: datetime.fromtimestamp(demo.harness.now if demo.harness else time.time(), UTC)  # noqa: E731
    await ml_and_shadow.run_phase4(demo, demo.plan.phase4_hours,
                                   lambda h, label, s: replay_scored(demo, h, label, s), console, harness_now)
    demo.finish_phase(4)


PHASES: dict[int, Callable[[Demo], Awaitable[None]]] = {0: phase0, 1: phase1, 2: phase2, 3: phase3, 4: phase4}


# --- the end: every checklist and the report ---------------------------------------------------------------

def print_tables(demo: Demo) -> None:
    """The signal funnel and the P&L per strategy, from the dashboard views."""
    with demo.conn() as conn:
        funnel = conn.execute(
            "select strategy, sum(emitted), sum(claimed), sum(ordered), sum(filled), sum(closed), sum(rejected),"
            " sum(expired), sum(open) from dashboard_signal_funnel group by strategy order by strategy").fetchall()
        exits = conn.execute(
            "select strategy, sum(emitted), sum(claimed), sum(executed), sum(rejected), sum(expired), sum(open)"
            " from dashboard_exit_signals group by strategy order by strategy").fetchall()
        performance = conn.execute("select strategy, trades, wins, win_rate_pct, pnl_quote, avg_pnl_pct, fees_quote"
                                   " from dashboard_strategy_performance order by strategy").fetchall()
    if not funnel and not exits:
        return
    # the view's stages only narrow: each counts the entries that passed it and every stage before
    table = Table(title="entry signal funnel (dashboard_signal_funnel)")
    for column in ("strategy", "emitted", "claimed", "ordered", "filled", "closed", "rejected", "expired", "open"):
        table.add_column(column)
    for row in funnel:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    if exits:
        table = Table(title="exit signals, counted apart (dashboard_exit_signals)")
        for column in ("strategy", "emitted", "claimed", "executed", "rejected", "expired", "open"):
            table.add_column(column)
        for row in exits:
            table.add_row(*(str(v) for v in row))
        console.print(table)
    quote = demo.selection.quote
    table = Table(title="closed trades: P&L per strategy (dashboard_strategy_performance)")
    for column in ("strategy", "trades", "wins", "win rate %", f"P&L ({quote})", "avg P&L %", f"fees ({quote})"):
        table.add_column(column)
    for strategy, count, wins, win_rate, pnl, avg_pct, fees in performance:
        table.add_row(strategy, str(count), str(wins), str(win_rate), f"{pnl:+.8g}", f"{avg_pct:+.2f}", f"{fees:.8g}")
    console.print(table)


def finish(demo: Demo) -> None:
    demo.store.close()
    print_tables(demo)
    console.rule("success criteria over the whole run (python -m controller phase check all)")
    with demo.conn() as conn:
        final = {r.phase: r for r in check(conn, [1, 2, 3, 4])}
        capital = {demo.selection.quote: demo.selection.balance}
        page = build_html(read_report(conn, capital, "the demo's paper balance"),
                          title="Offline demo: seed 004's recovery plan",
                          generated_at=datetime.now(UTC))
    if isinstance(demo.results.get(0), PhaseResult):
        console.print(checklist(demo.results[0]), highlight=False)  # phase 0 is judged by the run, not the tables
    for phase, result in final.items():
        console.print(checklist(result), highlight=False)
        if isinstance(note := demo.results.get(phase), str):
            console.print(f"  {note}")
    demo.plan.report.write_text(page, encoding="utf-8")
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in demo.seconds.items())
    console.print(f"time: {timing}")
    if demo.harness is not None:
        console.print(f"paper book: each candle walked along its path (bridge.path, {demo.path_mode}), at most "
                      f"{PATH_STEP_PCT:g} % a tick (largest tick seen {demo.harness.max_step_pct:.3f} %); wide "
                      f"candles added {demo.harness.stretched_s / 3600:.1f} h to the executor's clock")
    console.print(f"report: {demo.plan.report.resolve()}", highlight=False, soft_wrap=True)


async def close_open_positions(demo: Demo) -> None:
    """The replay has ended: ask the bot to exit what it still holds at market (reason manual, as `python -m
    controller close --all` does), so the run ends with no position open and every trade's fees and net P&L
    on the books."""
    if demo.harness is None:
        return
    with demo.conn() as conn:
        flagged = conn.execute("select * from request_close(null, 'offline demo: end of the replay')").fetchall()
    if not flagged:
        return

    def none_open() -> bool:
        with demo.conn() as conn:
            return conn.execute("select count(*) from signals where status = 'executing'").fetchone()[0] == 0

    await demo.harness.until(none_open, timeout_s=120)
    await demo.harness.drained(timeout_s=60)
    console.print(f"end of the replay: {len(flagged)} open position(s) closed at market (reason manual)")


async def run_phases(demo: Demo) -> None:
    try:
        for phase in demo.plan.phases:
            console.rule(f"phase {phase}")
            began = time.monotonic()
            await PHASES[phase](demo)
            demo.seconds[f"phase {phase}"] = time.monotonic() - began
        await close_open_positions(demo)
    finally:
        if demo.harness is not None:
            stop(demo.harness)  # inside the loop: Hummingbot schedules its network stop on it


def build_parser() -> argparse.ArgumentParser:
    """The demo's command line (the tests parse the documented commands with it)."""
    parser = argparse.ArgumentParser(prog="python -m offline.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(default_data()),
                        help="folder of recorded candles (default: %(default)s)")
    parser.add_argument("--exchange", help="exchange of the recorded files (default: the one with most pairs)")
    parser.add_argument("--symbols", help="comma-separated pairs, e.g. ETH-BTC,LTC-BTC (default: up to 5 pairs "
                                          "of one quote recorded over the same time)")
    parser.add_argument("--start", help="replay start, ISO 8601 (default: a day after the pairs' data begins)")
    parser.add_argument("--hours", type=float, help="at most this many hours of phase 1; it stops once 10 trades "
                                                      "closed (default 36, --quick 8)")
    parser.add_argument("--phases", default="0-4", help="which phases, e.g. 0-4, 1,2 (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="short windows (a few minutes in all)")
    parser.add_argument("--report", default="demo-report.html", help="HTML report to write (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.monotonic()
    try:
        plan = make_plan(args)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not plan.report.resolve().parent.is_dir():
        print(f"error: --report: folder {plan.report.resolve().parent} does not exist", file=sys.stderr)
        return 2
    logs.configure("WARNING")
    logging.getLogger("controller.scan.pipeline").setLevel(logging.ERROR)  # per-symbol data notes would drown it
    try:
        config = load_config()
        url, lock = demo_database(config)
    except (DemoBusy, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    specs = load_model(flags.FlagsFile, config.resolve(config.flags.file))
    with psycopg.connect(url) as conn:
        flags.sync(conn, specs, "demo")
    selection = plan.selection
    clock = SimClock(selection.start)
    demo = Demo(url, config, plan, specs, clock, DatasetSource(selection, clock=clock), PostgresStore(url))
    console.print(f"offline demo on {selection.folder}: {selection.exchange} {', '.join(selection.symbols)} "
                  f"({selection.timeframe} candles, quoted in {selection.quote}) from {selection.start:%Y-%m-%d %H:%M}"
                  f" UTC; phases {', '.join(map(str, plan.phases))}")
    if plan.core != selection.symbols:
        console.print(f"phases 1, 3 and 4 scan the {len(plan.core)} longest records ({', '.join(plan.core)}); "
                      f"phase 2's validation profile trades all {len(selection.symbols)} pairs")
    try:
        asyncio.run(run_phases(demo))
    finally:
        demo.seconds["total"] = time.monotonic() - started
        try:
            finish(demo)
        finally:
            lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
