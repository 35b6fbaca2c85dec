"""Market data without the network: replay over the recorded candles, gaps, symbols, failover and backfill
logic with in-memory fakes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ccxt
import pandas as pd
import pytest

from bridge.resilience import CallError, CircuitOpen, ErrorKind
from controller.data.market_data import (
    FRAME_COLUMNS,
    BackfillProgress,
    FailoverSource,
    ReplaySource,
    SimClock,
    backfill,
    candles_frame,
    ccxt_error_kind,
    find_gaps,
    floor_time,
    normalize_symbol,
    ohlcv_dir,
    timeframe_seconds,
    to_ccxt_symbol,
)
from controller.data.storage import CANDLE_COLUMNS

ETH_5M_FIRST = datetime(2018, 1, 10, 4, 55, tzinfo=UTC)  # first candle of bittrex_ETH-BTC_5m.csv
T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def at(minutes: int) -> datetime:
    return T0 + minutes * MINUTE


def series(*minutes: int) -> pd.Series:
    return pd.Series([at(m) for m in minutes], dtype="datetime64[us, UTC]")


@pytest.fixture(scope="module")
def replay_folder() -> Path:
    return ohlcv_dir()


# --- helpers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("tf", "seconds"), [("1m", 60), ("5m", 300), ("15m", 900), ("1h", 3600), ("4h", 14400),
                                             ("1d", 86400)])
def test_timeframe_seconds(tf: str, seconds: int) -> None:
    assert timeframe_seconds(tf) == seconds


@pytest.mark.parametrize("tf", ["", "m", "0m", "5", "1w", "1M", "1 h", "5min"])
def test_unknown_timeframes_are_refused(tf: str) -> None:
    with pytest.raises(ValueError, match="unknown timeframe"):
        timeframe_seconds(tf)


@pytest.mark.parametrize(("raw", "normal"), [("BTC-USDT", "BTC-USDT"), ("btc/usdt", "BTC-USDT"),
                                             ("BTC_USDT", "BTC-USDT"), ("BTC/USDT:USDT", "BTC-USDT"),
                                             (" eth-btc ", "ETH-BTC"), ("1000SHIB/USDT", "1000SHIB-USDT")])
def test_symbols_normalise_to_base_quote(raw: str, normal: str) -> None:
    assert normalize_symbol(raw) == normal


@pytest.mark.parametrize("raw", ["BTCUSDT", "BTC-USDT-PERP", "BTC/", "BT C/USDT", ""])
def test_symbols_that_are_not_a_pair_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid symbol"):
        normalize_symbol(raw)


def test_ccxt_symbols() -> None:
    assert to_ccxt_symbol("BTC-USDT") == "BTC/USDT"
    assert to_ccxt_symbol("eth_btc") == "ETH/BTC"


def test_candles_frame_sorts_drops_duplicates_and_types_columns() -> None:
    t = int(T0.timestamp() * 1000)
    frame = candles_frame([[t + 60_000, 2, 3, 1, 2.5, 10], [t, "1", "2", "0.5", "1.5", "5"],
                           [t + 60_000, 2, 3, 1, 2.6, 11]])

    assert list(frame.columns) == FRAME_COLUMNS
    assert frame["ts"].tolist() == [at(0), at(1)]
    assert frame["close"].tolist() == [1.5, 2.6]  # the later duplicate wins
    assert str(frame["ts"].dt.tz) == "UTC"
    assert candles_frame([]).empty and list(candles_frame([]).columns) == FRAME_COLUMNS


def test_floor_time_aligns_to_the_epoch() -> None:
    assert floor_time(datetime(2024, 1, 1, 5, 59, 59, tzinfo=UTC), "4h") == datetime(2024, 1, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize(("exc", "status", "kind"), [
    (ccxt.RequestTimeout("t"), None, ErrorKind.TIMEOUT),
    (ccxt.NetworkError("reset"), None, ErrorKind.CONNECTION),
    (ccxt.ExchangeNotAvailable("down"), None, ErrorKind.SERVER),
    (ccxt.OnMaintenance("maintenance"), None, ErrorKind.SERVER),
    (ccxt.ExchangeNotAvailable("bare 503"), 503, ErrorKind.SERVER),
    (ccxt.ExchangeNotAvailable("bare 400, which ccxt calls not available"), 400, ErrorKind.CLIENT),
    (ccxt.DDoSProtection("418"), 418, ErrorKind.RATE_LIMIT),
    (ccxt.RateLimitExceeded("429"), 429, ErrorKind.RATE_LIMIT),
    (ccxt.AuthenticationError("key"), None, ErrorKind.AUTH),
    (ccxt.PermissionDenied("nope"), None, ErrorKind.AUTH),
    (ccxt.BadSymbol("no such market"), None, ErrorKind.CLIENT),
    (ccxt.BadRequest("bad"), 400, ErrorKind.CLIENT),
    (ccxt.ExchangeError("other"), None, ErrorKind.CLIENT),
    (ccxt.BadResponse("garbage"), None, ErrorKind.MALFORMED),
    (ccxt.OperationFailed("-1001 internal error"), 503, ErrorKind.SERVER),
])
def test_ccxt_exceptions_map_to_error_kinds(exc: Exception, status: int | None, kind: ErrorKind) -> None:
    assert ccxt_error_kind(exc, status) == kind


# --- replay ----------------------------------------------------------------------------------------

def test_replay_reveals_each_candle_only_once_it_has_closed(replay_folder: Path) -> None:
    clock = SimClock(ETH_5M_FIRST + timedelta(minutes=4, seconds=59))
    source = ReplaySource(replay_folder, "bittrex", clock=clock)
    since = ETH_5M_FIRST - timedelta(hours=1)

    assert source.fetch_ohlcv("ETH-BTC", "5m", since).empty  # the first candle is still forming
    clock.advance(1)
    assert source.fetch_ohlcv("ETH-BTC", "5m", since)["ts"].tolist() == [ETH_5M_FIRST]
    clock.advance(4 * 60)
    assert len(source.fetch_ohlcv("ETH-BTC", "5m", since)) == 1
    clock.advance(60)
    frame = source.fetch_ohlcv("ETH-BTC", "5m", since)
    assert frame["ts"].tolist() == [ETH_5M_FIRST, ETH_5M_FIRST + timedelta(minutes=5)]
    assert frame["close"].iloc[0] == 0.0994766
    assert list(frame.columns) == FRAME_COLUMNS


def test_replay_windows_are_half_open_and_accept_other_symbol_spellings(replay_folder: Path) -> None:
    source = ReplaySource(replay_folder, "bittrex", clock=SimClock(datetime(2018, 2, 1, tzinfo=UTC)))
    since = datetime(2018, 1, 20, 12, tzinfo=UTC)

    frame = source.fetch_ohlcv("eth/btc", "1m", since, since + timedelta(minutes=10))

    assert frame["ts"].tolist() == [since + i * MINUTE for i in range(10)]
    assert frame["ts"].is_monotonic_increasing and frame["ts"].is_unique


def test_replay_lists_the_symbols_of_its_folder(replay_folder: Path) -> None:
    clock = SimClock(T0)
    bittrex = ReplaySource(replay_folder, "bittrex", clock=clock)
    everything = ReplaySource(replay_folder, clock=clock)

    assert bittrex.symbols() == ["ADA-BTC", "ETC-BTC", "ETH-BTC", "LTC-BTC", "XLM-BTC"]
    assert bittrex.symbols("1m") == ["ETH-BTC", "LTC-BTC"]
    assert bittrex.timeframes("ETH-BTC") == ["1m", "5m"]
    assert "BTC-USDT" in everything.symbols() and "BTC-USDT" not in bittrex.symbols()
    assert bittrex.span("ETH-BTC", "5m") == (ETH_5M_FIRST, datetime(2018, 1, 30, 4, 50, tzinfo=UTC))


def test_replay_of_an_unrecorded_symbol_is_a_client_error(replay_folder: Path) -> None:
    source = ReplaySource(replay_folder, "bittrex", clock=SimClock(T0))
    with pytest.raises(CallError) as failed:
        source.fetch_ohlcv("DOGE-BTC", "5m", T0)
    assert failed.value.kind is ErrorKind.CLIENT


def test_the_simulated_clock_refuses_naive_times_and_going_backwards() -> None:
    with pytest.raises(ValueError, match="naive"):
        SimClock(datetime(2024, 1, 1))  # naive on purpose
    clock = SimClock(T0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    clock.set(at(-10))
    assert clock.now() == at(-10)


# --- gaps ------------------------------------------------------------------------------------------

def test_no_gaps_in_a_complete_series() -> None:
    assert find_gaps(series(0, 1, 2, 3), "1m", at(0), at(4)) == []


def test_gaps_are_half_open_ranges_of_missing_candles() -> None:
    gaps = find_gaps(series(0, 1, 4, 5, 7), "1m", at(0), at(10))
    assert gaps == [(at(2), at(4)), (at(6), at(7)), (at(8), at(10))]


def test_an_empty_store_is_one_gap_from_the_first_aligned_candle() -> None:
    start = at(0) + timedelta(seconds=30)
    assert find_gaps(series(), "1m", start, at(5)) == [(at(1), at(5))]
    assert find_gaps(series(), "1h", at(0), at(0)) == []


def test_candles_outside_the_range_do_not_matter() -> None:
    assert find_gaps(series(-5, 0, 1, 2, 50), "1m", at(0), at(3)) == []


def test_gaps_in_the_recorded_ada_file_match_its_documentation(replay_folder: Path) -> None:
    source = ReplaySource(replay_folder, "bittrex", clock=SimClock(datetime(2018, 2, 1, tzinfo=UTC)))
    first, last = source.span("ADA-BTC", "5m")
    frame = source.fetch_ohlcv("ADA-BTC", "5m", first)

    gaps = find_gaps(frame["ts"], "5m", first, last + timedelta(minutes=5))

    assert len(gaps) == 5  # SOURCES.md: 5 gaps, 40 missing candles, the largest step 170 min
    assert sum((b - a) / timedelta(minutes=5) for a, b in gaps) == 40
    assert max(b - a for a, b in gaps) == timedelta(minutes=165)


# --- failover --------------------------------------------------------------------------------------

class FakeSource:
    """A source serving `price(minute)` closes for every minute, or raising what it is told to."""

    def __init__(self, name: str, price: Callable[[int], float] = lambda m: 100.0 + m) -> None:
        self.name = name
        self.price = price
        self.errors: list[CallError] = []
        self.is_available = True
        self.calls = 0

    def available(self) -> bool:
        return self.is_available

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: datetime,
                    until: datetime | None = None) -> pd.DataFrame:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        minutes = range(int((since - T0) / MINUTE), int(((until or at(10)) - T0) / MINUTE))
        ms = int(T0.timestamp() * 1000)
        return candles_frame([[ms + m * 60_000, 1, 1, 1, self.price(m), 1] for m in minutes])


def ten_minutes(source: FailoverSource) -> pd.DataFrame:
    return source.fetch_ohlcv("BTC-USDT", "1m", at(0), at(10))


def test_the_primary_serves_while_it_works() -> None:
    primary, backup = FakeSource("primary"), FakeSource("backup")
    source = FailoverSource(primary, backup)

    ten_minutes(source)

    assert (primary.calls, backup.calls) == (1, 0)
    assert source.serving == "primary"


def test_a_retryable_failure_of_the_primary_is_served_by_the_backup(caplog: pytest.LogCaptureFixture) -> None:
    primary, backup = FakeSource("primary"), FakeSource("backup", lambda m: 200.0)
    primary.errors.append(CallError(ErrorKind.TIMEOUT, "slow", endpoint="ohlcv"))
    source = FailoverSource(primary, backup)

    with caplog.at_level(logging.WARNING, "controller.data.market_data"):
        frame = ten_minutes(source)

    assert frame["close"].tolist() == [200.0] * 10
    assert source.serving == "backup" and source.failovers == 1
    record = next(r for r in caplog.records if r.getMessage() == "market data failing over to the backup source")
    assert record.primary == "primary" and record.backup == "backup" and record.symbol == "BTC-USDT"  # type: ignore[attr-defined]
    assert "timeout" in record.reason  # type: ignore[attr-defined]


def test_while_the_primary_breaker_is_open_it_is_not_asked_and_it_is_used_again_once_closed(
        caplog: pytest.LogCaptureFixture) -> None:
    primary, backup = FakeSource("primary"), FakeSource("backup")
    source = FailoverSource(primary, backup)
    primary.is_available = False

    ten_minutes(source)
    ten_minutes(source)
    assert (primary.calls, backup.calls) == (0, 2)
    assert source.failovers == 1  # one switch, however many fetches

    primary.is_available = True
    with caplog.at_level(logging.WARNING, "controller.data.market_data"):
        ten_minutes(source)
    assert source.serving == "primary" and primary.calls == 1
    assert any(r.getMessage() == "market data back on the primary source" for r in caplog.records)


def test_a_circuit_open_refusal_fails_over_too() -> None:
    primary, backup = FakeSource("primary"), FakeSource("backup")
    primary.errors.append(CircuitOpen("primary/ohlcv", 42))
    source = FailoverSource(primary, backup)
    ten_minutes(source)
    assert source.serving == "backup"


@pytest.mark.parametrize("kind", [ErrorKind.CLIENT, ErrorKind.AUTH])
def test_a_client_error_is_raised_not_hidden_behind_the_backup(kind: ErrorKind) -> None:
    primary, backup = FakeSource("primary"), FakeSource("backup")
    primary.errors.append(CallError(kind, "bad symbol"))
    source = FailoverSource(primary, backup)

    with pytest.raises(CallError) as failed:
        ten_minutes(source)

    assert failed.value.kind is kind
    assert backup.calls == 0


def test_when_both_fail_the_backup_error_is_raised() -> None:
    primary, backup = FakeSource("primary"), FakeSource("backup")
    primary.errors.append(CallError(ErrorKind.SERVER, "primary down"))
    backup.errors.append(CallError(ErrorKind.CONNECTION, "backup down"))
    with pytest.raises(CallError, match="backup down"):
        ten_minutes(FailoverSource(primary, backup))


def test_divergent_closes_are_counted_once_above_the_threshold(caplog: pytest.LogCaptureFixture) -> None:
    # The backup is 1 % off on even minutes and 0.1 % off on odd ones.
    primary = FakeSource("primary", lambda m: 100.0)
    backup = FakeSource("backup", lambda m: 101.0 if m % 2 == 0 else 100.1)
    source = FailoverSource(primary, backup, divergence_pct=0.5)
    ten_minutes(source)  # primary: minutes 0-9
    primary.is_available = False

    with caplog.at_level(logging.WARNING, "controller.data.market_data"):
        source.fetch_ohlcv("BTC-USDT", "1m", at(5), at(15))  # backup: 5-14, overlapping 5-9

    assert source.compared == 5
    assert source.divergences == 2  # minutes 6 and 8
    record = next(r for r in caplog.records if r.getMessage() == "market data sources diverge")
    assert record.candles == 2 and record.diff_pct == pytest.approx(1.0)  # type: ignore[attr-defined]

    source.fetch_ohlcv("BTC-USDT", "1m", at(5), at(15))  # the same candles again: already compared
    assert (source.compared, source.divergences) == (5, 2)

    ten_minutes(source)  # backup 0-9: 0-4 are new to compare
    assert (source.compared, source.divergences) == (10, 2 + 3)  # minutes 0, 2, 4
    primary.is_available = True
    source.fetch_ohlcv("BTC-USDT", "1m", at(0), at(15))  # primary 0-14: 10-14 are new to compare
    assert (source.compared, source.divergences) == (15, 2 + 3 + 3)  # minutes 10, 12, 14
    assert source.health()["divergences"] == 8


# --- backfill --------------------------------------------------------------------------------------

class MemoryStore:
    """The candle part of the Store port, in memory."""

    def __init__(self) -> None:
        self.frame = pd.DataFrame(columns=CANDLE_COLUMNS)
        self.writes: list[int] = []

    def write_candles(self, candles: pd.DataFrame) -> int:
        self.frame = pd.concat([self.frame, candles[CANDLE_COLUMNS]]) if len(self.frame) else candles[CANDLE_COLUMNS]
        self.writes.append(len(candles))
        return len(candles)

    def _rows(self, exchange: str, symbol: str, timeframe: str) -> pd.DataFrame:
        f = self.frame
        return f[(f["exchange"] == exchange) & (f["symbol"] == symbol) & (f["timeframe"] == timeframe)]

    def read_candles(self, exchange: str, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        rows = self._rows(exchange, symbol, timeframe)
        return rows[(rows["ts"] >= start) & (rows["ts"] < end)].sort_values("ts")

    def last_candle_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None:
        rows = self._rows(exchange, symbol, timeframe)
        return None if rows.empty else rows["ts"].max().to_pydatetime()


def test_backfill_fetches_only_what_the_store_lacks_page_by_page() -> None:
    store = MemoryStore()
    source = FakeSource("fake")
    seeded = source.fetch_ohlcv("BTC-USDT", "1m", at(3), at(6))
    store.write_candles(seeded.assign(exchange="ex", symbol="BTC-USDT", timeframe="1m"))
    events: list[BackfillProgress] = []

    written = backfill(store, source, "ex", ["btc/usdt"], "1m", at(0), at(10), progress=events.append,
                       page_candles=2)

    assert written == {"BTC-USDT": 7}
    assert store.writes == [3, 2, 1, 2, 2]  # the seed, then the gap 0-3 in pages of 2, then 6-10
    assert sorted(store.frame["ts"]) == [at(m) for m in range(10)]
    assert [(e.slots_done, e.rows_written) for e in events] == [(0, 0), (2, 2), (3, 3), (5, 5), (7, 7)]
    assert all(e.slots_total == 7 for e in events)

    assert backfill(store, source, "ex", ["BTC-USDT"], "1m", at(0), at(10)) == {"BTC-USDT": 0}
    assert len(store.writes) == 5


def test_backfill_over_a_hole_at_the_source_writes_nothing_for_it() -> None:
    store = MemoryStore()
    source = FakeSource("fake")
    real_fetch = source.fetch_ohlcv

    def with_hole(symbol: str, timeframe: str, since: datetime, until: datetime | None = None) -> pd.DataFrame:
        frame = real_fetch(symbol, timeframe, since, until)
        return frame[(frame["ts"] < at(4)) | (frame["ts"] >= at(7))].reset_index(drop=True)

    source.fetch_ohlcv = with_hole  # type: ignore[method-assign]
    assert backfill(store, source, "ex", ["BTC-USDT"], "1m", at(0), at(10)) == {"BTC-USDT": 7}
    assert backfill(store, source, "ex", ["BTC-USDT"], "1m", at(0), at(10)) == {"BTC-USDT": 0}


def test_replay_builds_a_timeframe_that_is_not_recorded_from_a_finer_one() -> None:
    from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir

    clock = SimClock(datetime(2018, 1, 25, 12, 7, tzinfo=UTC))
    source = ReplaySource(ohlcv_dir(), "bittrex", clock=clock)
    five = source.fetch_ohlcv("ETH-BTC", "5m", datetime(2018, 1, 25, 11, 0, tzinfo=UTC))
    fifteen = source.fetch_ohlcv("ETH-BTC", "15m", datetime(2018, 1, 25, 11, 0, tzinfo=UTC))

    # 11:00, 11:15, 11:30, 11:45 have closed by 12:07; the 12:00 candle has not
    assert [t.strftime("%H:%M") for t in fifteen["ts"]] == ["11:00", "11:15", "11:30", "11:45"]
    first = five[five["ts"] < datetime(2018, 1, 25, 11, 15, tzinfo=UTC)]
    assert fifteen["open"].iloc[0] == first["open"].iloc[0]
    assert fifteen["high"].iloc[0] == first["high"].max() and fifteen["low"].iloc[0] == first["low"].min()
    assert fifteen["close"].iloc[0] == first["close"].iloc[-1]
    assert fifteen["volume"].iloc[0] == pytest.approx(first["volume"].sum())


def test_resampling_leaves_out_a_bucket_with_a_missing_candle() -> None:
    from controller.data.market_data import candles_frame, resample

    start = int(datetime(2018, 1, 1, tzinfo=UTC).timestamp() * 1000)
    rows = [[start + i * 300_000, 1, 2, 0.5, 1.5, 10] for i in range(6) if i != 4]  # 00:20 missing
    out = resample(candles_frame(rows), "5m", "15m")
    assert [t.strftime("%H:%M") for t in out["ts"]] == ["00:00"]


def test_built_candles_say_how_many_source_candles_each_holds(replay_folder: Path) -> None:
    clock = SimClock(datetime(2018, 1, 25, 12, 7, tzinfo=UTC))
    source = ReplaySource(replay_folder, "bittrex", clock=clock)
    fifteen = source.fetch_ohlcv("ETH-BTC", "15m", datetime(2018, 1, 25, 11, 0, tzinfo=UTC))
    assert fifteen["source_candles"].tolist() == [3, 3, 3, 3]  # built from 5m: three each, none missing
    recorded = source.fetch_ohlcv("ETH-BTC", "5m", datetime(2018, 1, 25, 11, 0, tzinfo=UTC))
    assert "source_candles" not in recorded.columns  # recorded as such, not built


def test_replay_names_the_exchanges_of_its_files(replay_folder: Path) -> None:
    clock = SimClock(datetime(2018, 1, 25, tzinfo=UTC))
    assert ReplaySource(replay_folder, None, clock=clock).exchanges() == ["binanceusdm", "bittrex"]
    assert ReplaySource(replay_folder, "bittrex", clock=clock).exchanges() == ["bittrex"]
