"""CcxtSource against a local stand-in for Binance spot's public REST API, with faults on demand.

The stand-in (standard library `http.server` on 127.0.0.1) serves `GET /api/v3/exchangeInfo` and
`GET /api/v3/klines` from recorded candles, under a path prefix per venue so that one server plays
both the primary and the backup exchange. Real ccxt code builds the requests and parses the replies;
time is simulated (the caller's clock and sleep), so retries cost no real waiting. Only the timeout
test waits for real, a few hundred milliseconds.

The last test backfills a real Postgres from a ReplaySource over the recorded files.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import ccxt
import pandas as pd
import pytest
import typer
from rich.console import Console

from bridge.resilience import BreakerState, CallError, CircuitOpen, ErrorKind, ResilientCaller, RetryPolicy, TokenBucket
from controller.cli.base import Context
from controller.cli.data import backfill_command
from controller.config import ControllerConfig, Secrets
from controller.data.market_data import (
    BackfillProgress,
    CcxtSource,
    FailoverSource,
    ReplaySource,
    SimClock,
    backfill,
    ohlcv_dir,
)
from controller.data.storage import CANDLE_COLUMNS
from controller.data.storage.postgres import PostgresStore

RECORDED = "binanceusdm_BTC-USDT_5m.csv"  # served as Binance spot BTCUSDT
NOW = datetime(2023, 1, 3, 0, 0, tzinfo=UTC)  # the recorded file starts 2023-01-02 16:45
STEP = timedelta(minutes=5)
HANG_LIMIT_S = 2.0  # the longest a "hang" fault keeps a server thread busy


class FakeClock:
    """Monotonic seconds that move only when something sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.t += seconds

    def wall(self) -> float:
        return NOW.timestamp() + self.t


@dataclass
class Fault:
    kind: str  # hang, 400, 429, 500, 503, malformed
    retry_after: str | None = None


@dataclass
class Venue:
    scale: float = 1.0  # multiplies every price, so two venues can disagree
    faults: deque[Fault] = field(default_factory=deque)


class FakeBinance:
    """Binance spot's exchangeInfo and klines for BTCUSDT under `/<venue>/api/v3/`, with injectable faults."""

    def __init__(self, candles: pd.DataFrame) -> None:
        self.rows = candles
        self.venues: dict[str, Venue] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (venue, endpoint, query)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeBinance:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def url(self, venue: str) -> str:
        self.venues.setdefault(venue, Venue())
        return f"http://127.0.0.1:{self.server.server_address[1]}/{venue}"

    def inject(self, venue: str, *faults: Fault) -> None:
        with self.lock:
            self.venues.setdefault(venue, Venue()).faults.extend(faults)

    def klines_requests(self, venue: str) -> list[dict[str, str]]:
        return [q for v, endpoint, q in self.requests if v == venue and endpoint == "klines"]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                match = re.fullmatch(r"/(\w+)/api/v3/(\w+)", url.path)
                if not match or match[1] not in fake.venues:
                    return self.reply(404, {"code": -1, "msg": "not found"})
                venue, endpoint = match[1], match[2]
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with fake.lock:
                    fake.requests.append((venue, endpoint, query))
                    fault = fake.venues[venue].faults.popleft() if endpoint == "klines" and fake.venues[venue].faults \
                        else None
                if fault is not None:
                    return self.fail(fault)
                if endpoint == "exchangeInfo":
                    return self.reply(200, exchange_info())
                if endpoint == "klines":
                    return self.klines(query, fake.venues[venue].scale)
                return self.reply(404, {"code": -1, "msg": "not found"})

            def klines(self, query: dict[str, str], scale: float) -> None:
                if query.get("symbol") != "BTCUSDT":
                    return self.reply(400, {"code": -1121, "msg": "Invalid symbol."})
                if query.get("interval") != "5m":
                    return self.reply(400, {"code": -1120, "msg": "Invalid interval."})
                rows = fake.rows
                if "startTime" in query:
                    rows = rows[rows["timestamp"] >= int(query["startTime"])]
                if "endTime" in query:
                    rows = rows[rows["timestamp"] <= int(query["endTime"])]
                rows = rows.head(min(int(query.get("limit", 500)), 1000))
                self.reply(200, [[int(r.timestamp), *(f"{v * scale:.8f}" for v in (r.open, r.high, r.low, r.close)),
                                  f"{r.volume:.8f}", int(r.timestamp) + 299_999, "0", 1, "0", "0", "0"]
                                 for r in rows.itertuples()])

            def fail(self, fault: Fault) -> None:
                if fault.kind == "hang":
                    fake.stopping.wait(HANG_LIMIT_S)  # past the client's timeout; never past the server's stop
                    return self.reply(200, [])
                if fault.kind == "malformed":
                    return self.reply(200, '[[1672704000000,"16700.1","16710.0"', raw=True)
                if fault.kind == "429":
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                    return self.reply(429, {"code": -1003, "msg": "Too many requests."}, headers)
                if fault.kind == "400":
                    return self.reply(400, {"code": -1100, "msg": "Illegal characters found in a parameter."})
                return self.reply(int(fault.kind), "<html>upstream trouble</html>", raw=True)

            def reply(self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bool = False) -> None:
                data = (body if raw else json.dumps(body)).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json;charset=UTF-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler


def exchange_info() -> dict[str, Any]:
    return {"timezone": "UTC", "serverTime": int(NOW.timestamp() * 1000), "rateLimits": [], "exchangeFilters": [],
            "symbols": [{"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "baseAssetPrecision": 8,
                         "quoteAsset": "USDT", "quotePrecision": 8, "quoteAssetPrecision": 8,
                         "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True,
                         "isMarginTradingAllowed": False, "permissions": [], "permissionSets": [["SPOT"]],
                         "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00",
                                      "tickSize": "0.01"},
                                     {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00",
                                      "stepSize": "0.00001"}]}]}


def binance_at(base_url: str, timeout_ms: int = 3000) -> ccxt.binance:
    """A ccxt binance whose every API root points at `base_url`; only spot markets are loaded."""
    exchange = ccxt.binance({"enableRateLimit": False, "timeout": timeout_ms})
    exchange.options["fetchMarkets"] = {"types": ["spot"]}  # the stand-in speaks no futures API
    exchange.urls["api"] = {name: re.sub(r"^https://[^/]+", base_url, root)
                            for name, root in exchange.urls["api"].items()}
    return exchange


@pytest.fixture(scope="module")
def recorded() -> pd.DataFrame:
    return pd.read_csv(ohlcv_dir() / RECORDED)


@pytest.fixture
def server(recorded: pd.DataFrame) -> Iterator[FakeBinance]:
    with FakeBinance(recorded) as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_source(server: FakeBinance, clock: FakeClock, venue: str = "main", *, tries: int = 5,
                rng: float = 1.0, page_limit: int | None = None, limiter: bool = False,
                timeout_ms: int = 3000) -> CcxtSource:
    """A source on `venue` with simulated time. Without `limiter`, a bucket too large to ever wait, so the
    recorded sleeps are the retries' alone; with it, CcxtSource sets one from binance's rateLimit."""
    bucket = None if limiter else TokenBucket(1e6, burst=1e6, clock=clock.monotonic, sleep=clock.sleep)
    caller = ResilientCaller("binance", limiter=bucket, retry=RetryPolicy(base_s=1.0, cap_s=60.0, tries=tries),
                             clock=clock.monotonic, sleep=clock.sleep, rng=lambda: rng, wall_clock=clock.wall)
    source = CcxtSource("binance", caller=caller, page_limit=page_limit,
                        exchange=binance_at(server.url(venue), timeout_ms), now=lambda: NOW)
    source.name = f"binance-{venue}"
    return source


def last_hour(source: CcxtSource) -> pd.DataFrame:
    return source.fetch_ohlcv("BTC-USDT", "5m", NOW - timedelta(hours=1))


def test_fetches_closed_candles_loading_markets_lazily_from_the_server(server: FakeBinance, clock: FakeClock,
                                                                       recorded: pd.DataFrame) -> None:
    source = make_source(server, clock)
    assert server.requests == []  # constructing a source touches no network

    frame = last_hour(source)

    assert [endpoint for _, endpoint, _ in server.requests] == ["exchangeInfo", "klines"]
    assert len(frame) == 12
    assert frame["ts"].iloc[0] == NOW - timedelta(hours=1)
    assert frame["ts"].iloc[-1] == NOW - STEP  # closed exactly at NOW; the candle opening at NOW is still forming
    expected = recorded[recorded["timestamp"] >= int((NOW - timedelta(hours=1)).timestamp() * 1000)].head(12)
    assert frame["close"].tolist() == pytest.approx(expected["close"].tolist())
    assert source.exchange.enableRateLimit is False


def test_pagination_fetches_across_pages_spaced_by_the_exchange_rate_limit(server: FakeBinance,
                                                                           clock: FakeClock) -> None:
    source = make_source(server, clock, page_limit=10, limiter=True)

    frame = source.fetch_ohlcv("BTC-USDT", "5m", NOW - 35 * STEP, NOW - 2 * STEP)

    assert len(frame) == 33
    assert frame["ts"].is_monotonic_increasing and frame["ts"].is_unique
    starts = [int(q["startTime"]) for q in server.klines_requests("main")]
    first = int((NOW - 35 * STEP).timestamp() * 1000)
    assert starts == [first + i * 10 * 300_000 for i in range(4)]
    assert all(q["limit"] == "10" for q in server.klines_requests("main"))
    # binance publishes rateLimit = 50 ms: after the markets call every request waited for its token.
    assert source.caller.limiter is not None and source.caller.limiter.rate_per_s == pytest.approx(20.0)
    assert clock.sleeps == pytest.approx([0.05] * 4)


def test_server_errors_are_retried_with_exponential_backoff(server: FakeBinance, clock: FakeClock) -> None:
    source = make_source(server, clock, rng=1.0)
    server.inject("main", Fault("500"), Fault("503"), Fault("malformed"))

    frame = last_hour(source)

    assert len(frame) == 12
    assert len(server.klines_requests("main")) == 4
    assert clock.sleeps == [1.0, 2.0, 4.0]  # base * 2**attempt, with the jitter drawn at its top
    stats = source.health()["endpoints"]["ohlcv"]
    assert stats["failures"] == {"malformed": 1, "server": 2}
    assert stats["retries"] == 3 and stats["successes"] == 1 and stats["calls"] == 4


def test_a_429_waits_as_long_as_retry_after_says(server: FakeBinance, clock: FakeClock) -> None:
    source = make_source(server, clock, rng=0.0)  # no jitter of our own: the wait is the server's alone
    server.inject("main", Fault("429", retry_after="7"))

    frame = last_hour(source)

    assert len(frame) == 12
    assert clock.sleeps == [7.0]
    assert len(server.klines_requests("main")) == 2
    stats = source.health()["endpoints"]["ohlcv"]
    assert stats["rate_limit_hits"] == 1
    assert stats["last_error"]["kind"] == "rate_limit"


def test_a_4xx_is_not_retried(server: FakeBinance, clock: FakeClock) -> None:
    source = make_source(server, clock)
    server.inject("main", Fault("400"))

    with pytest.raises(CallError) as failed:
        last_hour(source)

    assert failed.value.kind is ErrorKind.CLIENT
    assert failed.value.status == 400
    assert len(server.klines_requests("main")) == 1
    assert clock.sleeps == []
    assert source.caller.breaker("ohlcv").state is BreakerState.CLOSED


def test_an_unknown_symbol_is_a_client_error_without_a_request(server: FakeBinance, clock: FakeClock) -> None:
    source = make_source(server, clock)

    with pytest.raises(CallError) as failed:
        source.fetch_ohlcv("DOGE-EUR", "5m", NOW - timedelta(hours=1))

    assert failed.value.kind is ErrorKind.CLIENT
    assert server.klines_requests("main") == []


def test_malformed_json_is_classified_malformed(server: FakeBinance, clock: FakeClock) -> None:
    # ccxt alone would swallow the unparsable body and return no candles, ending pagination early.
    source = make_source(server, clock, tries=1)
    server.inject("main", Fault("malformed"))

    with pytest.raises(CallError) as failed:
        last_hour(source)

    assert failed.value.kind is ErrorKind.MALFORMED
    assert failed.value.status == 200


def test_a_server_slower_than_the_timeout_is_a_timeout(server: FakeBinance, clock: FakeClock) -> None:
    source = make_source(server, clock, tries=2, timeout_ms=150)
    last_hour(source)  # markets loaded: only klines hang below
    server.inject("main", Fault("hang"), Fault("hang"))

    with pytest.raises(CallError) as failed:
        last_hour(source)

    assert failed.value.kind is ErrorKind.TIMEOUT
    assert clock.sleeps == [1.0]  # one retry, then the last error


def test_a_refused_connection_is_a_connection_error(clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nothing listens there
    caller = ResilientCaller("binance", retry=RetryPolicy(base_s=1.0, cap_s=60.0, tries=2), clock=clock.monotonic,
                             sleep=clock.sleep, rng=lambda: 1.0)
    source = CcxtSource("binance", caller=caller, exchange=binance_at(f"http://127.0.0.1:{port}/main"),
                        now=lambda: NOW)

    with pytest.raises(CallError) as failed:
        last_hour(source)

    assert failed.value.kind is ErrorKind.CONNECTION
    assert failed.value.endpoint == "markets"
    assert caller.health()["endpoints"]["markets"]["failures"] == {"connection": 2}


def test_the_breaker_opens_after_five_failures_and_stops_hitting_the_server(server: FakeBinance,
                                                                             clock: FakeClock) -> None:
    source = make_source(server, clock, tries=1)
    server.inject("main", *[Fault("500")] * 5)

    for _ in range(5):
        with pytest.raises(CallError) as failed:
            last_hour(source)
        assert failed.value.kind is ErrorKind.SERVER
    for _ in range(3):
        with pytest.raises(CircuitOpen):
            last_hour(source)

    assert len(server.klines_requests("main")) == 5
    assert source.available() is False
    health = source.health()["endpoints"]["ohlcv"]
    assert health["breaker"]["state"] == "open"
    assert health["refused"] == 3


def test_failover_to_the_backup_while_open_and_back_after_the_probe(server: FakeBinance, clock: FakeClock) -> None:
    primary = make_source(server, clock, "main")
    backup = make_source(server, FakeClock(), "backup")
    server.venues["backup"].scale = 1.01  # 1 % off: above the 0.5 % divergence threshold
    source = FailoverSource(primary, backup, divergence_pct=0.5)

    first = last_hour(source)
    assert source.serving == "binance-main"

    server.inject("main", *[Fault("500")] * 5)  # five tries, five failures: the breaker opens
    during = last_hour(source)
    assert source.serving == "binance-backup"
    assert during["close"].tolist() == pytest.approx((first["close"] * 1.01).tolist())
    assert source.divergences == 12  # every candle both venues served differs by 1 %

    hits = len(server.klines_requests("main"))
    last_hour(source)  # while open: straight to the backup, the primary is not even asked
    assert len(server.klines_requests("main")) == hits
    assert source.failovers == 1

    clock.t += 120  # the probe is due
    after = last_hour(source)
    assert source.serving == "binance-main"
    assert after["close"].tolist() == pytest.approx(first["close"].tolist())
    assert primary.caller.breaker("ohlcv").state is BreakerState.CLOSED
    assert source.divergences == 12  # candles already compared are not counted again
    assert source.health()["primary"]["endpoints"]["ohlcv"]["breaker"]["times_opened"] == 1


def test_a_client_error_does_not_fail_over(server: FakeBinance, clock: FakeClock) -> None:
    source = FailoverSource(make_source(server, clock, "main"), make_source(server, FakeClock(), "backup"))
    server.inject("main", Fault("400"))

    with pytest.raises(CallError) as failed:
        last_hour(source)

    assert failed.value.kind is ErrorKind.CLIENT
    assert server.klines_requests("backup") == []


# --- backfill into a real Postgres -----------------------------------------------------------------

def test_backfill_from_replay_fills_the_gaps_and_a_second_run_writes_nothing(migrated_db: str) -> None:
    start, end = datetime(2018, 1, 14, tzinfo=UTC), datetime(2018, 1, 17, tzinfo=UTC)
    replay = ReplaySource(ohlcv_dir(), "bittrex", clock=SimClock(end))
    symbols = ["ETH-BTC", "ADA-BTC"]  # ADA-BTC misses 40 candles at the source itself, on 2018-01-15
    expected = {s: replay.fetch_ohlcv(s, "5m", start, end) for s in symbols}
    assert len(expected["ETH-BTC"]) == 864 and len(expected["ADA-BTC"]) == 824

    store = PostgresStore(migrated_db)
    try:
        # The store already holds two stretches of ETH-BTC: backfill must fill around and between them.
        eth = expected["ETH-BTC"].assign(exchange="bittrex", symbol="ETH-BTC", timeframe="5m")[CANDLE_COLUMNS]
        store.write_candles(pd.concat([eth.iloc[100:200], eth.iloc[400:500]]))
        events: list[BackfillProgress] = []

        written = backfill(store, replay, "bittrex", symbols, "5m", start, end, progress=events.append,
                           page_candles=288)

        assert written == {"ETH-BTC": 864 - 200, "ADA-BTC": 824}
        for symbol in symbols:
            stored = store.read_candles("bittrex", symbol, "5m", start, end)
            assert stored["ts"].tolist() == expected[symbol]["ts"].tolist()
            assert stored["close"].tolist() == expected[symbol]["close"].tolist()
        final = {e.symbol: e for e in events}
        assert final["ADA-BTC"].slots_done == final["ADA-BTC"].slots_total == 864
        assert final["ETH-BTC"].slots_total == 664
        assert len([e for e in events if e.symbol == "ADA-BTC"]) == 1 + 3  # the start, then one per page

        assert backfill(store, replay, "bittrex", symbols, "5m", start, end) == {"ETH-BTC": 0, "ADA-BTC": 0}
    finally:
        store.close()


def test_the_backfill_command_replays_recorded_days_with_a_progress_bar(migrated_db: str) -> None:
    ctx = Context(ControllerConfig(), Secrets(DATABASE_URL=migrated_db))
    out = io.StringIO()
    console = Console(file=out, width=160, force_terminal=False)

    written = backfill_command(ctx, "bittrex", ["eth-btc", "LTC-BTC"], "5m", 2, ohlcv_dir(), console=console)

    assert written == {"ETH-BTC": 576, "LTC-BTC": 576}  # the last two recorded days, 288 candles a day
    assert "bittrex ETH-BTC 5m: 576 candle(s) written" in out.getvalue()
    store = PostgresStore(migrated_db)
    try:
        assert store.last_candle_time("bittrex", "ETH-BTC", "5m") == datetime(2018, 1, 30, 4, 50, tzinfo=UTC)
    finally:
        store.close()
    again = backfill_command(ctx, "bittrex", ["ETH-BTC", "LTC-BTC"], "5m", 2, ohlcv_dir(), console=console)
    assert again == {"ETH-BTC": 0, "LTC-BTC": 0}


def test_the_backfill_command_names_what_the_replay_folder_lacks(capsys: pytest.CaptureFixture[str]) -> None:
    ctx = Context(ControllerConfig(), Secrets(DATABASE_URL="postgresql://nobody@127.0.0.1:1/never_opened"))
    with pytest.raises(typer.Exit) as exited:
        backfill_command(ctx, "bittrex", ["DOGE-BTC"], "5m", 1, ohlcv_dir())
    assert exited.value.exit_code == 2
    assert "no 5m candles of bittrex for DOGE-BTC" in capsys.readouterr().err
