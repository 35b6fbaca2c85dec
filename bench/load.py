"""Load benchmark: K controller shards, E executors and dashboard readers on one Postgres, for a bounded run.

Everything runs on this machine (loopback), each part in its own process:
- the database: a throwaway embedded Postgres (or TEST_DATABASE_URL), migrated; `--pgbouncer URL` sends every
  part but the market writer through a pooler in transaction mode (the executors then poll: no LISTEN there);
- the market: one candle per symbol per simulated minute, written by the store's COPY path. Prices are
  synthetic: each symbol walks on log returns drawn from the recorded candles (OHLCV_DIR), with a seeded
  generator, after `--history` minutes written up front so the indicators have their lookback;
- K controllers (`--shards`): the real `Scanner` with the three shipped strategies (their parameters, on 1m
  candles so every simulated minute is a cycle), reading candles from Postgres, each holding the lease of its
  shard (`controller.data.shard_leases`) and scanning only that shard's symbols;
- E executors (`--executors`): the real `QueueWorker` and `PostgresQueue` of the Hummingbot script (claim,
  outbox, ack, order events; LISTEN when direct). A claimed entry is acked executing, its entry order created,
  filled and completed; `--hold-s` later its exit order and the closed position are reported and it is acked
  closed. A claimed exit signal closes its entry the same way at once;
- dashboard readers (`--readers`): every `dashboard_*` view, each `--read-every-s`;
- retention: `run_retention` once, half-way.

Printed: p50/p95/p99 of emit, claim, ack and report (each call's round trip, as its caller sees it), of the
dashboard reads, signals emitted / claimed exactly once / lost / doubled, each shard's scan cycle, database
size and CPU before and after. Goals: 0 lost, 0 doubled, p95 claim <= 10 ms, p95 report <= 20 ms, every
cycle within its candle period. The ratios compare the loaded calls with the same calls on the idle
database, measured first in the same run. Last line of output: one JSON object with every figure.

Defaults finish in a few minutes on 2 cores; the issue's run:
    python bench/load.py --symbols 1000 --executors 10 --minutes 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import queue as queue_mod
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import psycopg
from _support import OHLCV_DIR, migrated_database, postgres_server

from tests.support.pgbouncer import EXECUTOR_LOGIN, pgbouncer

TIMEFRAME = "1m"
EXCHANGE = "bench"
LOOKBACK = 120  # candles the indicators get (the loop's minimum is 60)


# --- the market ------------------------------------------------------------------------------------------


def bench_symbols(n: int) -> list[str]:
    return [f"B{i:04d}-USDT" for i in range(n)]


def recorded_returns() -> tuple[np.ndarray, np.ndarray]:
    """Close-to-close log returns and volumes of every recorded file: what the synthetic walks draw from."""
    returns, volumes = [], []
    for path in sorted(OHLCV_DIR.glob("*.csv")):
        raw = pd.read_csv(path)
        close = raw["close"].to_numpy(dtype=float)
        returns.append(np.diff(np.log(close[close > 0])))
        volumes.append(raw["volume"].to_numpy(dtype=float))
    if not returns:
        raise SystemExit(f"{OHLCV_DIR}: no recorded candles (*.csv) to draw returns from; set OHLCV_DIR")
    pooled = np.concatenate(returns)
    return pooled[np.isfinite(pooled)], np.concatenate(volumes)


def synthetic_closes(symbols: int, minutes: int, seed: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """closes[minute, symbol] and volumes alike: random walks on recorded returns (bootstrapped), each return
    times `scale`: the shipped strategies are tuned on 15m-1h bars, whose moves are ~4-8x a minute's."""
    rng = np.random.default_rng(seed)
    returns, volumes = recorded_returns()
    draws = rng.choice(returns, size=(minutes, symbols)) * scale
    start = rng.uniform(0.5, 500.0, size=symbols)
    closes = start * np.exp(np.cumsum(draws, axis=0))
    return closes, rng.choice(volumes, size=(minutes, symbols))


def candle_rows(symbols: list[str], closes: np.ndarray, volumes: np.ndarray, first: int, last: int,
                origin: datetime) -> pd.DataFrame:
    """The candles of minutes first..last-1 (index into closes) stamped from `origin`."""
    frames = []
    for m in range(first, last):
        close = closes[m]
        open_ = closes[m - 1] if m > 0 else close
        spread = np.abs(close - open_) * 0.5 + close * 0.0005
        frames.append(pd.DataFrame({
            "exchange": EXCHANGE, "symbol": symbols, "timeframe": TIMEFRAME,
            "ts": pd.Timestamp(origin + timedelta(minutes=m)), "open": open_, "high": np.maximum(open_, close) + spread,
            "low": np.maximum(np.minimum(open_, close) - spread, close * 0.5), "close": close, "volume": volumes[m]}))
    return pd.concat(frames, ignore_index=True)


def market(url: str, symbols: list[str], closes: np.ndarray, volumes: np.ndarray, history: int, minutes: int,
           minute_s: float, start: datetime, published: Any, out: Any) -> None:
    """Write minute m's candles at t0 + m x minute_s, then publish m + 1 (the controllers scan after it)."""
    from controller.data.storage.postgres import PostgresStore

    store = PostgresStore(url)
    origin = start - timedelta(minutes=history)
    t0 = time.monotonic()
    copy_ms = []
    for m in range(minutes):
        time.sleep(max(0.0, t0 + m * minute_s - time.monotonic()))
        rows = candle_rows(symbols, closes, volumes, history + m, history + m + 1, origin)
        started = time.perf_counter()
        store.write_candles(rows)
        copy_ms.append((time.perf_counter() - started) * 1000)
        published.value = m + 1
    store.close()
    out.put(("market", {"copy_ms": copy_ms, "rows_per_minute": len(symbols)}))


# --- the controllers --------------------------------------------------------------------------------------


class DbSource:
    """Market data from the candles table: the shard's symbols in one query per cycle, sliced per symbol."""

    name = "postgres"

    def __init__(self, url: str, symbols: list[str]) -> None:
        self.url = url
        self.symbols = symbols
        self._cache: tuple[datetime, datetime, dict[str, pd.DataFrame]] | None = None

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: datetime, until: datetime | None = None
                    ) -> pd.DataFrame:
        until = until or datetime.now(UTC)
        if self._cache is None or self._cache[:2] != (since, until):
            with psycopg.connect(self.url, prepare_threshold=None) as conn:
                rows = conn.execute(
                    "select symbol, ts, open, high, low, close, volume from candles where exchange = %s"
                    " and timeframe = %s and symbol = any(%s) and ts >= %s and ts < %s order by symbol, ts",
                    (EXCHANGE, timeframe, self.symbols, since, until)).fetchall()
            frame = pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume"])
            for column in ("open", "high", "low", "close", "volume"):
                frame[column] = frame[column].astype(float)
            frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
            self._cache = (since, until, {str(s): f.drop(columns="symbol").reset_index(drop=True)
                                          for s, f in frame.groupby("symbol")})
        empty = pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume"])
        return self._cache[2].get(symbol, empty)


class TimedStore:
    """The real store; emit_signal's round trip noted."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.emit_ms: list[float] = []

    def emit_signal(self, signal: Any, as_of: datetime | None = None) -> Any:
        started = time.perf_counter()
        try:
            return self._store.emit_signal(signal, as_of)
        finally:
            self.emit_ms.append((time.perf_counter() - started) * 1000)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def controller(url: str, shard: int, shards: int, symbols: list[str], minutes: int, start: datetime,
               published: Any, ready: Any, out: Any) -> None:
    """One shard: scan at each published minute, as the live loop does at each candle close."""
    from controller.config import PROJECT_ROOT as ROOT
    from controller.config import ControllerConfig, LoopConfig, load_model
    from controller.data import flags
    from controller.data.shard_leases import ShardLeases
    from controller.data.shards import ShardSpec, symbols_of
    from controller.data.storage.postgres import PostgresStore
    from controller.scan.pipeline import Scanner
    from controller.scan.regime import RegimeParams
    from controller.scan.signals import QuoteSizing, SizingParams
    from controller.scan.strategy_params import load_strategies

    strategies = load_strategies()
    # all three on (the shipped file leaves SWING off until validated), all on the market's 1m candles
    strategies = strategies.model_copy(update={n: s.model_copy(update={"timeframe": TIMEFRAME, "enabled": True})
                                               for n, s in strategies.items()})
    many = len(symbols) * 3
    config = ControllerConfig(
        loop=LoopConfig(lookback_candles=LOOKBACK, strategy_timeout_s=120.0),
        regime=RegimeParams(on_missing="caution"),  # no BTC market among the synthetic symbols
        sizing=SizingParams(quotes={"USDT": QuoteSizing(amount=10.0, balance=10.0 * many * 4)},
                            max_open_total=many, max_open_per_strategy=many, max_open_per_symbol=3))
    specs = load_model(flags.FlagsFile, ROOT / "conf" / "flags.yml")
    store = TimedStore(PostgresStore(url))
    leases = ShardLeases(lambda: psycopg.connect(url, prepare_threshold=None), ShardSpec(shards, shard),
                         f"bench-{shard}", 30.0)
    mine = list(symbols_of(symbols, [shard], shards))
    clock = {"now": start}
    scanner = Scanner(config=config, strategy_config=strategies, store=store, source=DbSource(url, mine),
                      exchange=EXCHANGE, symbols=tuple(symbols), clock=lambda: clock["now"],
                      flag_defaults={n: s.default for n, s in specs.flags.items()}, shards=leases)
    leases.start()
    with ready.get_lock():
        ready.value += 1
    cycles = []
    seen = 0
    while seen < minutes:
        while published.value <= seen:
            time.sleep(0.005)
        seen = published.value
        clock["now"] = start + timedelta(minutes=seen)  # minute seen - 1 has closed
        report = scanner.scan()
        cycles.append({"duration_s": report.duration_s, "emitted": report.emitted, "symbols": report.scanned_symbols,
                       "skipped": report.skipped, "failures": len(report.failures)})
    leases.stop()
    store.close()
    out.put((f"controller-{shard}", {"cycles": cycles, "emit_ms": store.emit_ms, "symbols": len(mine)}))


# --- the executors ----------------------------------------------------------------------------------------


class TimedQueue:
    """The real queue client; each call's round trip noted by name."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.ms: dict[str, list[float]] = {"claim": [], "ack": [], "report": []}

    def _timed(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.ms[name].append((time.perf_counter() - started) * 1000)

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("claim", lambda: self._client.claim(*args, **kwargs))

    def ack(self, *args: Any, **kwargs: Any) -> Any:
        return self._timed("ack", lambda: self._client.ack(*args, **kwargs))

    def report_payload(self, payload: Mapping[str, Any]) -> Any:
        return self._timed("report", lambda: self._client.report_payload(payload))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def order_events(signal: Any, consumer: str, purpose: str, n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    side = "buy" if purpose == "entry" else "sell"
    price = float(signal.price)
    amount = float(signal.quote_amount) / price
    order = {"signal_id": str(signal.id), "consumer": consumer, "exchange": signal.exchange, "symbol": signal.symbol,
             "client_order_id": f"{side}-{signal.id.hex[:16]}-{n}", "side": side, "purpose": purpose,
             "order_type": "market"}
    return [{**order, "type": "order_created", "ts": now, "price": price, "amount": amount},
            {**order, "type": "order_filled", "ts": now, "exchange_trade_id": f"t{n}", "price": price,
             "amount": amount, "fee_quote": price * amount * 0.001},
            {**order, "type": "order_completed", "ts": now}]


def executor(url: str, consumer: str, listen: bool, hold_s: float, stop: Any, ready: Any, out: Any) -> None:
    """The real worker thread claims and delivers; this loop plays the script's part on each claimed signal."""
    from bridge.queue_client import PostgresQueue
    from executor.config import SignalExecutorConfig
    from executor.outbox import Outbox
    from executor.worker import QueueWorker

    folder = Path(tempfile.mkdtemp(prefix="bench-load-"))
    config = SignalExecutorConfig(connector="binance_paper_trade", queue_transport="postgres", consumer=consumer,
                                  outbox_path=str(folder / "outbox.{consumer}.jsonl"), queue_listen=listen,
                                  max_open_positions=100_000, max_open_per_pair=100_000)
    client = TimedQueue(PostgresQueue(url))
    outbox = Outbox(folder / f"outbox.{consumer}.jsonl")
    worker = QueueWorker(client, outbox, config, {EXCHANGE: None})
    worker.ready.set()
    worker.start()
    with ready.get_lock():
        ready.value += 1
    open_positions: dict[uuid.UUID, tuple[Any, float]] = {}
    received: list[str] = []
    claim_lag_s: list[float] = []
    n = 0

    def close(signal: Any) -> None:
        nonlocal n
        n += 1
        for event in order_events(signal, consumer, "exit", n):
            outbox.append("report", {"event": event})
        price = float(signal.price)
        outbox.append("report", {"event": {
            "type": "position_closed", "signal_id": str(signal.id), "consumer": consumer, "ts": datetime.now(UTC)
            .isoformat(), "exchange": signal.exchange, "symbol": signal.symbol, "side": "buy",
            "amount": float(signal.quote_amount) / price, "entry_price": price, "exit_price": price,
            "fees_quote": float(signal.quote_amount) * 0.002, "pnl_quote": -float(signal.quote_amount) * 0.002,
            "pnl_pct": -0.2, "exit_reason": "time_limit", "opened_at": datetime.now(UTC).isoformat(),
            "closed_at": datetime.now(UTC).isoformat()}})
        outbox.append("ack", {"signal_id": str(signal.id), "consumer": consumer, "status": "closed", "reason": None})
        worker.slots.release(1)

    while not stop.is_set() or not worker.claimed.empty():
        try:
            signal = worker.claimed.get(timeout=0.05)
        except queue_mod.Empty:
            signal = None
        if signal is not None:
            received.append(str(signal.id))
            claim_lag_s.append((datetime.now(UTC) - signal.created_at).total_seconds())
            outbox.append("ack", {"signal_id": str(signal.id), "consumer": consumer, "status": "executing",
                                  "reason": None})
            if signal.kind == "exit":
                entry = open_positions.pop(signal.entry_signal_id, None)
                if entry is not None:
                    close(entry[0])
                outbox.append("ack", {"signal_id": str(signal.id), "consumer": consumer, "status": "closed",
                                      "reason": None})
                worker.slots.release(1)
            else:
                n += 1
                for event in order_events(signal, consumer, "entry", n):
                    outbox.append("report", {"event": event})
                open_positions[signal.id] = (signal, time.monotonic() + hold_s)
            worker.wake()
        now = time.monotonic()
        for signal_id, (entry, due) in list(open_positions.items()):
            if due <= now:
                del open_positions[signal_id]
                close(entry)
                worker.wake()
    deadline = time.monotonic() + 30
    while len(outbox) and time.monotonic() < deadline:  # what was written is delivered before the end
        worker.wake()
        time.sleep(0.05)
    worker.stop()
    worker.join()
    out.put((consumer, {"received": received, "claim_lag_s": claim_lag_s, "ms": client.ms,
                        "undelivered": len(outbox), "stats": dict(worker.stats)}))


# --- the dashboard ----------------------------------------------------------------------------------------


def reader(url: str, every_s: float, stop: Any, out: Any, name: str) -> None:
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        views = [r[0] for r in conn.execute(
            "select viewname from pg_views where schemaname = 'public' and viewname like 'dashboard\\_%' order by 1")]
        ms: dict[str, list[float]] = {v: [] for v in views}
        while not stop.wait(every_s):
            for view in views:
                started = time.perf_counter()
                conn.execute(f"select * from {view} limit 500").fetchall()
                ms[view].append((time.perf_counter() - started) * 1000)
    out.put((name, {"ms": ms}))


# --- the pooler -------------------------------------------------------------------------------------------

def executor_url(url: str, pooled: bool) -> str:
    """Direct: the superuser URL (the client sets role executor per call). Pooled: the same role, logged in as
    a member of it, so that nothing of one bot's session reaches another client's transaction."""
    return str(psycopg.conninfo.make_conninfo(url, user=EXECUTOR_LOGIN)) if pooled else url


# --- the run ----------------------------------------------------------------------------------------------


def quantiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"n": len(values), "p50": values[0] if values else 0.0, "p95": values[0] if values else 0.0,
                "p99": values[0] if values else 0.0}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"n": len(values), "p50": round(cuts[49], 2), "p95": round(cuts[94], 2), "p99": round(cuts[98], 2)}


def db_figures(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        size = conn.execute("select pg_database_size(current_database())").fetchone()[0]
        data_dir = conn.execute("show data_directory").fetchone()[0]
    cpu = None
    pid_file = Path(data_dir) / "postmaster.pid"
    if pid_file.exists():  # a local server: CPU seconds of the postmaster, its live backends and the ended ones
        root = psutil.Process(int(pid_file.read_text().split()[0]))
        own = root.cpu_times()
        cpu = own.user + own.system + own.children_user + own.children_system
        for proc in root.children(recursive=True):
            try:
                times = proc.cpu_times()
                cpu += times.user + times.system
            except psutil.NoSuchProcess:
                continue
    return {"size_bytes": size, "cpu_s": cpu}


def idle_baseline(url: str, bots_url: str, consumer: str, times: int = 200) -> dict[str, float]:
    """The same calls on the idle database: emit, claim, ack, report, one after another."""
    from bridge.queue_client import PostgresQueue
    from bridge.schemas import NewSignal, OrderEvent
    from controller.data.storage.postgres import PostgresStore

    store, client = PostgresStore(url), PostgresQueue(bots_url)
    ms: dict[str, list[float]] = {"emit": [], "claim": [], "ack": [], "report": []}
    for i in range(times):
        sig = NewSignal(strategy="baseline", exchange="idle", symbol=f"I{i:04d}-USDT", side="buy", price=1.0,
                        quote_amount=10.0, take_profit_pct=2.0, confidence=0.5,
                        expires_at=datetime.now(UTC) + timedelta(minutes=5))
        for name, call in (
                ("emit", lambda s=sig: store.emit_signal(s)),
                ("claim", lambda: client.claim(consumer, 1, 60, {"idle": None})),
        ):
            started = time.perf_counter()
            result = call()
            ms[name].append((time.perf_counter() - started) * 1000)
        [claimed] = result
        started = time.perf_counter()
        client.ack(claimed.id, consumer, "executing")
        ms["ack"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        client.report(OrderEvent(type="order_created", signal_id=claimed.id, ts=datetime.now(UTC), consumer=consumer,
                                 client_order_id=f"idle-{i}", exchange="idle", symbol=claimed.symbol, side="buy",
                                 purpose="entry", order_type="market", price=1, amount=10))
        ms["report"].append((time.perf_counter() - started) * 1000)
    store.close()
    client.close()
    with psycopg.connect(url) as conn:  # the baseline's rows do not count in the load's figures
        conn.execute("delete from orders where exchange = 'idle'")
        conn.execute("delete from signals where exchange = 'idle'")
    return {k: quantiles(v)["p95"] for k, v in ms.items()}


def run(args: argparse.Namespace, direct_url: str) -> dict[str, Any]:
    url = args.pooler_url or direct_url  # the pooler's URL names the same database
    bots_url = executor_url(url, args.pooler_url is not None)
    with psycopg.connect(direct_url, autocommit=True) as conn:
        if not conn.execute("select 1 from pg_roles where rolname = %s", (EXECUTOR_LOGIN,)).fetchone():
            conn.execute(f"create role {EXECUTOR_LOGIN} login in role executor")
    symbols = bench_symbols(args.symbols)
    closes, volumes = synthetic_closes(args.symbols, args.history + args.minutes, args.seed, args.scale)
    from controller.data.storage.postgres import PostgresStore

    store = PostgresStore(direct_url)
    started = time.perf_counter()
    # the market runs from the current minute: its candles are hot for retention, which then has only what a
    # live database holds to do, and nothing the scans need is moved away under them
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    store.write_candles(candle_rows(symbols, closes, volumes, 0, args.history, start - timedelta(minutes=args.history)))
    history_s = time.perf_counter() - started
    store.close()
    baseline = idle_baseline(url, bots_url, "bench-idle")

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    published = ctx.Value("i", 0)
    ready = ctx.Value("i", 0)
    stop = ctx.Event()
    listen = args.pooler_url is None and not args.no_listen  # no LISTEN through a transaction pooler
    parts = [ctx.Process(target=market, args=(direct_url, symbols, closes, volumes, args.history, args.minutes,
                                              args.minute_s, start, published, out), name="market")]
    parts += [ctx.Process(target=controller, name=f"controller-{k}",
                          args=(url, k, args.shards, symbols, args.minutes, start, published, ready, out))
              for k in range(args.shards)]
    executors = [ctx.Process(target=executor, args=(bots_url, f"bot-{e}", listen, args.hold_s, stop, ready,
                                                out), name=f"bot-{e}")
                 for e in range(args.executors)]
    readers = [ctx.Process(target=reader, args=(url, args.read_every_s, stop, out, f"reader-{r}"), name=f"reader-{r}")
               for r in range(args.readers)]
    for process in executors + readers + parts[1:]:
        process.start()
    started_by = time.monotonic() + args.timeout_s
    while ready.value < args.shards + args.executors:  # every part has imported and connected: then the clock runs
        if time.monotonic() > started_by or not all(p.is_alive() for p in executors + parts[1:]):
            raise SystemExit("bench/load.py: a controller or executor did not start")
        time.sleep(0.1)
    before = db_figures(direct_url)
    wall = time.monotonic()
    parts[0].start()
    retention_ms = None
    retention_at = wall + args.minutes * args.minute_s / 2
    deadline = wall + args.minutes * args.minute_s + args.timeout_s
    results: dict[str, Any] = {}
    while any(p.is_alive() for p in parts) and time.monotonic() < deadline:
        if retention_ms is None and time.monotonic() >= retention_at:
            from controller.ops.retention import run_retention

            with psycopg.connect(url, prepare_threshold=None) as conn:
                t = time.perf_counter()
                run_retention(conn)
                retention_ms = (time.perf_counter() - t) * 1000
        try:
            name, value = out.get(timeout=0.2)
            results[name] = value
        except queue_mod.Empty:
            pass
    # the queue drains: nothing claimable left (or the bound runs out), then the executors stop
    drain_until = time.monotonic() + args.timeout_s
    while time.monotonic() < drain_until:
        with psycopg.connect(direct_url) as conn:
            waiting = conn.execute("select count(*) from signals where status = 'new' and expires_at > now()"
                                   ).fetchone()[0]
        if waiting == 0:
            break
        time.sleep(0.2)
    time.sleep(args.hold_s + 1)  # the last positions close and report
    stop.set()
    everyone = parts + executors + readers
    while len(results) < len(everyone) and time.monotonic() < drain_until + 60:
        try:
            name, value = out.get(timeout=0.5)
            results[name] = value
        except queue_mod.Empty:
            if not any(p.is_alive() for p in everyone):
                break
    for process in everyone:
        process.join(10)
        if process.is_alive():
            process.kill()
    elapsed = time.monotonic() - wall
    after = db_figures(direct_url)
    missing = [p.name for p in everyone if p.name not in results]
    if missing:
        raise SystemExit(f"bench/load.py: no result from {', '.join(missing)} (crashed or past the time bound)")

    with psycopg.connect(direct_url) as conn:
        emitted, claimed_once, claimed_more, never = conn.execute(
            "select count(*), count(*) filter (where claim_count = 1), count(*) filter (where claim_count > 1),"
            " count(*) filter (where claim_count = 0) from signals where exchange = %s", (EXCHANGE,)).fetchone()
        statuses = dict(conn.execute("select status, count(*) from signals where exchange = %s group by 1",
                                     (EXCHANGE,)).fetchall())
        doubled_candles = conn.execute(
            "select count(*) from (select 1 from signals where exchange = %s group by strategy, symbol, timeframe_s,"
            " candle_ts, kind having count(*) > 1) d", (EXCHANGE,)).fetchone()[0]
        orders = conn.execute("select count(*) from orders where exchange = %s", (EXCHANGE,)).fetchone()[0]
    bots = [results[p.name] for p in executors]
    received = Counter(s for bot in bots for s in bot["received"])
    doubled = sum(1 for c in received.values() if c > 1) + claimed_more
    controllers = [results[p.name] for p in parts if p.name.startswith("controller")]
    ms = {"emit": [x for c in controllers for x in c["emit_ms"]],
          **{k: [x for b in bots for x in b["ms"][k]] for k in ("claim", "ack", "report")}}
    reads = [x for r in readers for xs in results[r.name]["ms"].values() for x in xs]
    per_view = {}
    for r in readers:
        for view, xs in results[r.name]["ms"].items():
            per_view.setdefault(view, []).extend(xs)
    figures: dict[str, Any] = {
        "benchmark": "load", "transport": "pgbouncer-transaction" if args.pooler_url else "direct", "listen": listen,
        "symbols": args.symbols, "strategies": 3, "shards": args.shards, "executors": args.executors,
        "readers": args.readers, "minutes": args.minutes, "minute_s": args.minute_s, "cores": psutil.cpu_count(),
        "elapsed_s": round(elapsed, 1), "history_rows": args.symbols * args.history,
        "history_copy_rows_per_s": round(args.symbols * args.history / history_s),
        "candle_copy_ms": quantiles(results["market"]["copy_ms"]),
        "latency_ms": {k: quantiles(v) for k, v in ms.items()},
        "idle_p95_ms": baseline,
        "dashboard_read_ms": quantiles(reads),
        "dashboard_read_p95_ms_by_view": {v: quantiles(xs)["p95"] for v, xs in per_view.items()},
        "claim_lag_s": quantiles([x for b in bots for x in b["claim_lag_s"]]),
        "signals": {"emitted": emitted, "claimed_exactly_once": claimed_once, "lost": never,
                    "doubled": doubled, "doubled_decision_candles": doubled_candles, "statuses": statuses,
                    "orders": orders, "undelivered_events": sum(b["undelivered"] for b in bots)},
        "scan_cycle_s": {f"shard_{k}": {"symbols": c["symbols"], **quantiles([x["duration_s"] for x in c["cycles"]]),
                                        "max": round(max(x["duration_s"] for x in c["cycles"]), 3),
                                        "skipped": sum(1 for x in c["cycles"] if x["skipped"])}
                         for k, c in enumerate(controllers)},
        "retention_ms": round(retention_ms, 1) if retention_ms is not None else None,
        "db_size_bytes": {"before": before["size_bytes"], "after": after["size_bytes"]},
        "db_cpu_s": round(after["cpu_s"] - before["cpu_s"], 1) if before["cpu_s"] is not None else None,
    }
    lat = figures["latency_ms"]
    figures["db_cpu_share_of_machine"] = (round(figures["db_cpu_s"] / (elapsed * psutil.cpu_count()), 3)
                                          if figures["db_cpu_s"] is not None else None)
    figures["ratio_p95_loaded_vs_idle"] = {k: round(lat[k]["p95"] / baseline[k], 2) if baseline[k] else None
                                           for k in ("emit", "claim", "ack", "report")}
    slowest = max(v["max"] for v in figures["scan_cycle_s"].values())
    figures["goals"] = {"lost_0": never == 0, "doubled_0": doubled == 0, "p95_claim_le_10ms": lat["claim"]["p95"] <= 10,
                        "p95_report_le_20ms": lat["report"]["p95"] <= 20,
                        "every_cycle_within_period": slowest < 60.0,
                        "every_cycle_within_compressed_minute": slowest < args.minute_s}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=200, help="symbols in the universe (issue: 1000)")
    parser.add_argument("--shards", type=int, default=2, help="controller processes, one shard each")
    parser.add_argument("--executors", type=int, default=4, help="executor processes (issue: 10)")
    parser.add_argument("--readers", type=int, default=2, help="dashboard reader processes")
    parser.add_argument("--minutes", type=int, default=5, help="simulated minutes (issue: 10)")
    parser.add_argument("--minute-s", type=float, default=10.0, help="wall seconds per simulated minute")
    parser.add_argument("--history", type=int, default=150, help="minutes of candles written before the run")
    parser.add_argument("--hold-s", type=float, default=3.0, help="wall seconds a position stays open")
    parser.add_argument("--read-every-s", type=float, default=3.0, help="each reader's pause between passes")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="bound on waiting past the last minute")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=6.0, help="synthetic returns x this (bar-sized moves)")
    parser.add_argument("--no-listen", action="store_true", help="executors poll even on the direct transport")
    parser.add_argument("--pooler", action="store_true", help="controllers, bots and readers through pgbouncer in "
                        "transaction mode (started here; the market's COPY stays direct)")
    args = parser.parse_args()
    for name in ("symbols", "shards", "executors", "minutes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.symbols > 5000 or args.minutes > 60 or args.executors > 50 or args.shards > 16:
        parser.error("bounded: at most 5000 symbols, 60 minutes, 50 executors, 16 shards")
    if args.history < LOOKBACK:
        parser.error(f"--history must be at least {LOOKBACK} (the indicators' lookback)")
    with contextlib.ExitStack() as stack:
        admin_url = stack.enter_context(postgres_server())
        url = stack.enter_context(migrated_database(admin_url))
        try:
            args.pooler_url = stack.enter_context(pgbouncer(url)) if args.pooler else None
        except RuntimeError as exc:
            raise SystemExit(f"bench/load.py --pooler: {exc}") from None
        figures = run(args, url)
    lat, sig = figures["latency_ms"], figures["signals"]
    for name in ("emit", "claim", "ack", "report"):
        q = lat[name]
        print(f"{name:7s} n={q['n']:6d}  p50 {q['p50']:7.2f} ms  p95 {q['p95']:7.2f} ms  p99 {q['p99']:7.2f} ms"
              f"  (idle p95 {figures['idle_p95_ms'][name]:.2f} ms)")
    d = figures["dashboard_read_ms"]
    print(f"dashboard reads n={d['n']}  p50 {d['p50']:.1f} ms  p95 {d['p95']:.1f} ms  p99 {d['p99']:.1f} ms")
    print(f"signals: emitted {sig['emitted']}, claimed exactly once {sig['claimed_exactly_once']}, lost {sig['lost']}, "
          f"doubled {sig['doubled']} (statuses {sig['statuses']})")
    for shard, c in figures["scan_cycle_s"].items():
        print(f"{shard}: {c['symbols']} symbols x 3 strategies, cycle p50 {c['p50']:.2f} s, max {c['max']:.2f} s")
    size = figures["db_size_bytes"]
    print(f"database {size['before'] / 1e6:.0f} MB -> {size['after'] / 1e6:.0f} MB, CPU {figures['db_cpu_s']} s "
          f"({figures['db_cpu_share_of_machine']} of the machine) over {figures['elapsed_s']} s; retention "
          f"{figures['retention_ms']} ms; goals {figures['goals']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
