"""Any folder of recorded candles, as the demo replays it.

Files are `<exchange>_<BASE-QUOTE>_<timeframe>[_<date>].csv` (header `timestamp,open,high,low,close,volume`,
timestamp = open time in ms UTC). Several files of one pair and timeframe (windows recorded at different
times, the `_<date>` suffix) are merged into one series with its gaps left as they are. `select` turns the
user's options into a `Selection` or raises `DatasetError` with one line that says what to change.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from controller.data.market_data import (
    PRICE_COLUMNS,
    CandleFileError,
    RecordedFile,
    ReplaySource,
    SimClock,
    epoch_ms,
    normalize_symbol,
    read_candles_csv,
    timeframe_seconds,
    ts_epoch_ms,
    window,
)
from controller.scan.signals import QuoteSizing, SizingParams

FILE_NAME = re.compile(r"^(?P<exchange>[A-Za-z0-9]+)_(?P<symbol>[A-Z0-9]+-[A-Z0-9]+)_(?P<timeframe>\d+[mhd])"
                       r"(?:_(?P<date>\d{8}))?\.csv$")
# The replay needs candles at least this fine: the strategies' shortest timeframe (CHANNEL on 5m).
FINEST_NEEDED = "5m"
# Quote units worth about 50 USD (the seed's $50 a trade) and a paper balance of 200 of them, per quote.
USD_QUOTES = ("USD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "EUR")
# A longer hole than this between two candles of a pair separates two recordings (Bittrex left gaps of up to an
# hour in quiet markets; recordings of the same pair made months apart are separate stretches).
MAX_GAP = timedelta(hours=6)
QUOTE_UNIT = {**{q: 50.0 for q in USD_QUOTES}, "BTC": 0.002, "ETH": 0.03, "BNB": 0.2}


class DatasetError(Exception):
    """A one-line explanation of why the options do not fit the folder."""


@dataclass(frozen=True)
class Series:
    exchange: str
    symbol: str
    timeframe: str
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Selection:
    folder: Path
    exchange: str
    symbols: tuple[str, ...]
    timeframe: str  # the finest recorded for every symbol (1m or 5m)
    start: datetime
    end: datetime
    quote: str
    # where the recording of every pair is first interrupted after `start` (a gap of MAX_GAP or more, e.g.
    # between two windows recorded months apart), else `end`: the data a replay can run on without a hole
    stretch_end: datetime | None = None

    def amount(self, share: float = 1.0) -> float:
        """The seed's $50 a trade in this quote currency, times `share`."""
        return QUOTE_UNIT[self.quote] * share

    @property
    def balance(self) -> float:
        """The seed's $10k paper balance in this quote currency."""
        return QUOTE_UNIT[self.quote] * 200

    def sizing(self, share: float = 1.0, **overrides: float | int) -> SizingParams:
        """Seed sizing (at most half the balance deployed) in this quote currency, `share` of $50 a trade."""
        quotes = {self.quote: QuoteSizing(amount=self.amount(share), balance=self.balance)}
        return SizingParams(quotes=quotes, max_balance_share=0.5, **overrides)


def catalog(folder: Path) -> list[Series]:
    """Every (exchange, pair, timeframe) recorded in `folder`, its windows together."""
    if not folder.is_dir():
        raise DatasetError(f"no such folder: {folder}")
    grouped: dict[tuple[str, str, str], list[Path]] = {}
    for path in sorted(folder.glob("*.csv")):
        if match := FILE_NAME.match(path.name):
            grouped.setdefault((match["exchange"], match["symbol"], match["timeframe"]), []).append(path)
    if not grouped:
        raise DatasetError(f"no recorded candles in {folder}: expected files named "
                           "<exchange>_<BASE-QUOTE>_<timeframe>[_<date>].csv, e.g. binance_BTC-USDT_5m.csv")
    return [Series(e, s, tf, tuple(paths)) for (e, s, tf), paths in sorted(grouped.items())]


def load(series: Series) -> pd.DataFrame:
    """The series' candles, every window merged (a candle recorded twice keeps the later file's values)."""
    frames = []
    for path in series.paths:
        try:
            frames.append(read_candles_csv(path))
        except CandleFileError as exc:
            raise DatasetError(str(exc)) from None
    merged = pd.concat(frames, ignore_index=True)
    if merged.empty:
        raise DatasetError(f"{', '.join(p.name for p in series.paths)}: no candles")
    frame = merged.rename(columns={"timestamp": "ts"})[["ts", *PRICE_COLUMNS]]
    frame[PRICE_COLUMNS] = frame[PRICE_COLUMNS].astype("float64")
    frame["ts"] = pd.to_datetime(frame["ts"].astype("int64"), unit="ms", utc=True).dt.as_unit("us")
    frame = frame.drop_duplicates("ts", keep="last").sort_values("ts", kind="stable")
    return frame.reset_index(drop=True)


def _quote(symbol: str) -> str:
    return symbol.split("-")[1]


def select(folder: Path, exchange: str | None = None, symbols: Sequence[str] | None = None,
           start: datetime | None = None, hours: float | None = None, max_symbols: int = 5) -> Selection:
    """Check the options against the folder; default to the exchange and quote with the most pairs."""
    found = [s for s in catalog(folder) if timeframe_seconds(s.timeframe) <= timeframe_seconds(FINEST_NEEDED)]
    if not found:
        raise DatasetError(f"{folder} has no 1m or 5m candles: the strategies need {FINEST_NEEDED} or finer")
    exchanges = sorted({s.exchange for s in found})
    if exchange is None:
        exchange = max(exchanges, key=lambda e: (len({s.symbol for s in found if s.exchange == e}), e))
    elif exchange not in exchanges:
        raise DatasetError(f"no {FINEST_NEEDED}-or-finer candles for exchange {exchange!r} in {folder}; "
                           f"it has: {', '.join(exchanges)}")
    mine = [s for s in found if s.exchange == exchange]
    finest = {}  # per pair, the series the replay reads: 5m where recorded, else 1m (resampled by the source)
    for item in sorted(mine, key=lambda s: timeframe_seconds(s.timeframe)):
        finest[item.symbol] = item
    frames = {symbol: load(item) for symbol, item in finest.items()}
    spans = {symbol: (f["ts"].iloc[0].to_pydatetime(), f["ts"].iloc[-1].to_pydatetime())
             for symbol, f in frames.items()}
    if symbols:
        wanted = [normalize_symbol(s) for s in symbols]
        if missing := [s for s in wanted if s not in finest]:
            raise DatasetError(f"no recorded file for {', '.join(missing)} on {exchange} in {folder}; "
                               f"it has: {', '.join(sorted(finest))}")
        quotes = sorted({_quote(s) for s in wanted})
        if len(quotes) > 1:
            raise DatasetError(f"--symbols mixes quote currencies ({', '.join(quotes)}): the paper balance is in "
                               "one quote, pick pairs of one")
    else:
        wanted = _default_symbols(spans, start, max_symbols)
    quote = _quote(wanted[0])
    if quote not in QUOTE_UNIT:
        raise DatasetError(f"no position size known for quote currency {quote} (known: {', '.join(QUOTE_UNIT)})")
    timeframe = max((finest[s].timeframe for s in wanted), key=timeframe_seconds)
    first = max(spans[s][0] for s in wanted)
    last = min(spans[s][1] for s in wanted)
    # a day of history for the indicators, then on the 5-minute grid the replay steps on
    begin = start or pd.Timestamp(first + timedelta(hours=24)).ceil(FINEST_NEEDED.replace("m", "min")).to_pydatetime()
    finish = min(begin + timedelta(hours=hours), last) if hours else last
    outside = [s for s in wanted if begin >= finish or not _covers(frames[s], begin, finish)]
    if outside:
        raise DatasetError(f"the window {begin:%Y-%m-%d %H:%M} to {finish:%Y-%m-%d %H:%M} UTC is outside the data "
                           f"of {', '.join(outside)} (recorded: "
                           + "; ".join(f"{s} {spans[s][0]:%Y-%m-%d %H:%M} to {spans[s][1]:%Y-%m-%d %H:%M}"
                                       for s in outside) + ")")
    stretch = min(_stretch_end(frames[s], begin) for s in wanted)
    return Selection(folder, exchange, tuple(wanted), timeframe, begin, finish, quote, max(stretch, begin))


def _stretch_end(frame: pd.DataFrame, moment: datetime) -> datetime:
    """The last candle before the first hole of MAX_GAP or more after `moment` (the recording's end if none)."""
    after = frame["ts"][frame["ts"] >= pd.Timestamp(moment)]
    if after.empty:
        return moment
    holes = after.diff() >= pd.Timedelta(MAX_GAP)
    if holes.any():
        return after[holes.shift(-1, fill_value=False)].iloc[0].to_pydatetime()
    return after.iloc[-1].to_pydatetime()


def _default_symbols(spans: dict[str, tuple[datetime, datetime]], start: datetime | None,
                     max_symbols: int) -> list[str]:
    """The pairs of one quote recorded over one common time: the time (a day after some pair's first candle,
    or `start`) that the most pairs of the most common quote cover, longest records first."""
    by_quote: dict[str, list[str]] = {}
    for symbol in spans:
        by_quote.setdefault(_quote(symbol), []).append(symbol)
    pool = max(by_quote.values(), key=len)
    moments = [start] if start else [spans[s][0] + timedelta(hours=24) for s in pool]

    def covering(moment: datetime) -> list[str]:
        return [s for s in pool if spans[s][0] <= moment - timedelta(hours=24) and moment < spans[s][1]]

    best = max(moments, key=lambda m: (len(covering(m)), m))
    chosen = sorted(covering(best), key=lambda s: spans[s][0] - spans[s][1])[:max_symbols]
    if not chosen:
        raise DatasetError(f"no pair is recorded from a day before {best:%Y-%m-%d %H:%M} UTC: pass --start "
                           "inside the data")
    return sorted(chosen)


def _covers(frame: pd.DataFrame, begin: datetime, end: datetime) -> bool:
    """Whether the window holds candles for at least a tenth of its length (windows of a pair have gaps)."""
    inside = frame["ts"][(frame["ts"] >= pd.Timestamp(begin)) & (frame["ts"] < pd.Timestamp(end))]
    if len(inside) < 2:
        return False
    step = frame["ts"].diff().median()
    return len(inside) * step >= (end - begin) / 10


class DatasetSource(ReplaySource):
    """`ReplaySource` over a selection: one series per pair and timeframe, its windows merged."""

    def __init__(self, selection: Selection, *, clock: SimClock) -> None:
        self.series = {(s.symbol, s.timeframe): s for s in catalog(selection.folder)
                       if s.exchange == selection.exchange and s.symbol in selection.symbols}
        super().__init__(selection.folder, selection.exchange, clock=clock)
        self._open_ms: dict[int, np.ndarray | None] = {}  # id of a cached frame -> its sorted open times (ms)

    def _scan(self) -> list[RecordedFile]:
        return [RecordedFile(s.exchange, s.symbol, s.timeframe, s.paths[0]) for s in self.series.values()]

    def _load(self, recorded: RecordedFile) -> pd.DataFrame:
        with self._lock:
            if recorded.path not in self._cache:
                self._cache[recorded.path] = load(self.series[(recorded.symbol, recorded.timeframe)])
            return self._cache[recorded.path]

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: datetime,
                    until: datetime | None = None) -> pd.DataFrame:
        """`window` of the series, found by binary search on its sorted open times (converted once per series)
        instead of comparing every candle on each call: the replay asks each pair's window every scan."""
        frame = self._candles(symbol, timeframe)
        key = id(frame)
        with self._lock:
            ms = self._open_ms.get(key)
        if ms is None:
            ms = frame_ms(frame)
            with self._lock:
                self._open_ms[key] = ms
        if ms is None or len(ms) == 0:  # unsorted or empty: the plain filter
            return window(frame, timeframe, since, until, self.clock.now())
        high = epoch_ms(until) if until is not None else None
        closed_by = epoch_ms(self.clock.now()) - timeframe_seconds(timeframe) * 1000  # opened by then = closed by now
        high = closed_by + 1 if high is None else min(high, closed_by + 1)
        lo, hi = np.searchsorted(ms, epoch_ms(since), "left"), np.searchsorted(ms, high, "left")
        return frame.iloc[lo:max(lo, hi)].reset_index(drop=True)


def frame_ms(frame: pd.DataFrame) -> np.ndarray | None:
    """The open times of `frame` in ms, or None when they are not strictly increasing."""
    ms = ts_epoch_ms(frame["ts"])
    return ms if len(ms) < 2 or bool(np.all(np.diff(ms) > 0)) else None


def parse_start(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise DatasetError(f"--start: not an ISO 8601 time: {text!r} (e.g. 2018-01-12T00:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
