"""Market data: one interface for candle sources, failover between two of them, gap detection and backfill.

Every source returns the same frame: columns `ts` (tz-aware UTC, candle open time), open, high, low, close,
volume; ascending, no duplicate times, and only candles that have closed (never the one still forming).
Symbols are `BASE-QUOTE` (`BTC-USDT`) everywhere on our side; only `CcxtSource` speaks ccxt's `BTC/USDT`.

- `CcxtSource`: an exchange's public OHLCV endpoint through ccxt (no API keys, ever), every HTTP call
  through a `ResilientCaller` (rate limiter, circuit breaker per endpoint, retries).
- `ReplaySource`: recorded CSV files, revealed candle by candle as an injected `SimClock` advances.
- `FailoverSource`: a primary and a backup, with divergence checks where both have served a candle.

Time windows are half-open on the candle open time: `since <= ts < until`.
"""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from bridge.resilience import CallError, ErrorKind, ResilientCaller, TokenBucket, parse_retry_after
from controller.config_base import PROJECT_ROOT, ConfigError
from controller.data.storage.port import CANDLE_COLUMNS, Store

if TYPE_CHECKING:
    import ccxt

logger = logging.getLogger(__name__)

FRAME_COLUMNS = ["ts", "open", "high", "low", "close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close", "volume"]
OHLCV_DIR_ENV = "OHLCV_DIR"

_TIMEFRAME = re.compile(r"^(\d+)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def ohlcv_dir() -> Path:
    """The folder of recorded candles: `$OHLCV_DIR`, else `shared/data/ohlcv` beside the project."""
    override = os.environ.get(OHLCV_DIR_ENV)
    return Path(override) if override else PROJECT_ROOT.parent / "shared" / "data" / "ohlcv"


def timeframe_seconds(timeframe: str) -> int:
    """Seconds in a timeframe such as '1m', '5m', '15m', '1h', '4h', '1d'."""
    match = _TIMEFRAME.match(timeframe)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"unknown timeframe {timeframe!r}: expected a number and m, h or d, e.g. 1m, 4h, 1d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def normalize_symbol(symbol: str) -> str:
    """`BASE-QUOTE` from `BTC-USDT`, `btc/usdt`, `BTC_USDT` or ccxt's swap form `BTC/USDT:USDT`."""
    pair = symbol.strip().upper().split(":", 1)[0]
    parts = re.split(r"[-/_]", pair)
    if len(parts) != 2 or not all(re.fullmatch(r"[A-Z0-9]+", p) for p in parts):
        raise ValueError(f"invalid symbol {symbol!r}: expected BASE-QUOTE, e.g. BTC-USDT")
    return f"{parts[0]}-{parts[1]}"


def to_ccxt_symbol(symbol: str) -> str:
    """ccxt's spot form `BTC/USDT` of a symbol."""
    return normalize_symbol(symbol).replace("-", "/")


def as_utc(when: datetime) -> datetime:
    """`when` in UTC; naive datetimes are refused, since guessing their zone shifts candles by hours."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: pass a timezone-aware one (UTC)")
    return when.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def floor_time(when: datetime, timeframe: str) -> datetime:
    """The open time of the candle that contains `when` (candles are aligned to the Unix epoch)."""
    step = timeframe_seconds(timeframe)
    seconds = int(as_utc(when).timestamp())
    return datetime.fromtimestamp(seconds - seconds % step, UTC)


def epoch_ms(when: datetime) -> int:
    return int(as_utc(when).timestamp() * 1000)


def ts_epoch_ms(ts: pd.Series) -> np.ndarray:
    if ts.empty:
        return np.empty(0, dtype=np.int64)
    return pd.to_datetime(ts, utc=True).dt.as_unit("ms").astype("int64").to_numpy()


def empty_frame() -> pd.DataFrame:
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in FRAME_COLUMNS})
    frame["ts"] = pd.Series(dtype="datetime64[us, UTC]")
    return frame


def candles_frame(rows: Iterable[Sequence[Any]]) -> pd.DataFrame:
    """The standard frame from `[open_time_ms, open, high, low, close, volume]` rows: sorted, last duplicate wins."""
    data = [list(r[:6]) for r in rows]
    if not data:
        return empty_frame()
    return _tidy(pd.DataFrame(data, columns=FRAME_COLUMNS))


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """Types, order and uniqueness of a frame whose `ts` holds open times in epoch milliseconds."""
    frame = frame[FRAME_COLUMNS].copy()
    frame[PRICE_COLUMNS] = frame[PRICE_COLUMNS].astype("float64")
    frame["ts"] = pd.to_datetime(frame["ts"].astype("int64"), unit="ms", utc=True).dt.as_unit("us")
    frame = frame.drop_duplicates("ts", keep="last").sort_values("ts", kind="stable")
    return frame.reset_index(drop=True)


def window(frame: pd.DataFrame, timeframe: str, since: datetime, until: datetime | None,
           now: datetime | None) -> pd.DataFrame:
    """The candles of `frame` with `since <= ts < until` that have closed by `now` (open + timeframe <= now)."""
    ts = ts_epoch_ms(frame["ts"])
    keep = ts >= epoch_ms(since)
    if until is not None:
        keep &= ts < epoch_ms(until)
    if now is not None:
        keep &= ts + timeframe_seconds(timeframe) * 1000 <= epoch_ms(now)
    return frame.loc[keep].reset_index(drop=True)


def resample(frame: pd.DataFrame, from_timeframe: str, to_timeframe: str) -> pd.DataFrame:
    """Candles of `to_timeframe` built from `from_timeframe` ones (epoch-aligned buckets: open first, high max,
    low min, close last, volume sum). A bucket missing any of its candles is left out rather than guessed, so a
    gap in the source shows as a missing built candle. Built candles carry `source_candles`: how many source
    candles each holds."""
    base_s, target_s = timeframe_seconds(from_timeframe), timeframe_seconds(to_timeframe)
    if target_s % base_s:
        raise ValueError(f"{to_timeframe} is not a multiple of {from_timeframe}")
    if frame.empty:
        return empty_frame()
    ms = ts_epoch_ms(frame["ts"])
    bucket = ms - ms % (target_s * 1000)
    grouped = frame.assign(bucket=bucket).groupby("bucket", sort=True)
    out = grouped.agg(open=("open", "first"), high=("high", "max"), low=("low", "min"), close=("close", "last"),
                      volume=("volume", "sum"), count=("close", "size")).reset_index()
    out = out[out["count"] == target_s // base_s]
    built = _tidy(out.rename(columns={"bucket": "ts"}))
    return built.assign(source_candles=np.full(len(built), target_s // base_s, dtype=np.int64))


class MarketDataSource(Protocol):
    """Where candles come from. Raises CallError when a fetch fails."""

    name: str

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: datetime,
                    until: datetime | None = None) -> pd.DataFrame:
        """Closed candles of `symbol` (BASE-QUOTE) with `since <= ts < until` (until: up to now)."""
        ...


def _available(source: MarketDataSource) -> bool:
    """Whether the source would take a call now (False while its circuit breaker is open)."""
    check = getattr(source, "available", None)
    return bool(check()) if callable(check) else True


# --- replay ----------------------------------------------------------------------------------------

class SimClock:
    """Simulated time for replays and tests: it moves only when told to."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by `seconds`; return the new time."""
        if seconds < 0:
            raise ValueError("a simulated clock does not go backwards: use set()")
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, when: datetime) -> None:
        self._now = as_utc(when)


_RECORDED_FILE = re.compile(
    r"^(?P<exchange>[A-Za-z0-9]+)_(?P<symbol>[A-Z0-9]+-[A-Z0-9]+)_(?P<timeframe>\d+[mhd])\.csv$")
# A window recorded on a date (`…_5m_20180107.csv`): the demo merges those (offline/dataset.py); a replay skips them.
_DATED_FILE = re.compile(r"^[A-Za-z0-9]+_[A-Z0-9]+-[A-Z0-9]+_\d+[mhd]_\d{8}\.csv$")
CANDLE_HEADER = ("timestamp", *PRICE_COLUMNS)


class CandleFileError(ConfigError):
    """A recorded candle file that cannot be read; the message names the file, and the line and column. Bad
    input the user fixes, as a bad config file is: the commands that catch ConfigError say it in one line."""


def read_candles_csv(path: Path) -> pd.DataFrame:
    """A recorded candle file's rows (columns `timestamp` in ms and the prices), checked: a missing column, a
    row of the wrong width, an empty or non-numeric value is a `CandleFileError` naming the file, line and column,
    never a parser's traceback or a silently empty frame."""
    try:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise CandleFileError(f"{path}: cannot be read as text: {exc}") from None
    if not header:
        raise CandleFileError(f"{path}: empty file, expected the header {','.join(CANDLE_HEADER)}")
    columns = [c.strip() for c in header]
    missing = [c for c in CANDLE_HEADER if c not in columns]
    if missing:
        raise CandleFileError(f"{path}: line 1: the header lacks {', '.join(missing)} (it has {','.join(columns)}; "
                              f"expected {','.join(CANDLE_HEADER)})")
    try:
        raw = pd.read_csv(path, usecols=list(CANDLE_HEADER), skipinitialspace=True,
                          dtype={"timestamp": "int64", **dict.fromkeys(PRICE_COLUMNS, "float64")})
    except (ValueError, pd.errors.ParserError) as exc:
        raise _first_bad_cell(path, columns) or CandleFileError(f"{path}: {str(exc).splitlines()[0]}") from None
    if raw[PRICE_COLUMNS].isna().to_numpy().any():
        raise _first_bad_cell(path, columns) or CandleFileError(f"{path}: a price or volume is empty")
    return raw


def _first_bad_cell(path: Path, columns: list[str]) -> CandleFileError | None:
    """The first row (1-based line, header = line 1) whose width or a value is wrong, said as the user reads it."""
    index = {name: columns.index(name) for name in CANDLE_HEADER}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if line == 1 or not row:
                continue
            if len(row) != len(columns):
                return CandleFileError(f"{path}: line {line}: {len(row)} fields, the header has {len(columns)}")
            for name, i in index.items():
                text = row[i].strip()
                if name == "timestamp":
                    if not re.fullmatch(r"-?\d+", text):
                        return CandleFileError(f"{path}: line {line}, column timestamp: {text!r} is not a time in "
                                               "milliseconds since 1970 (an integer)")
                    continue
                try:
                    value = float(text)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    return CandleFileError(f"{path}: line {line}, column {name}: {text!r} is not a number")
    return None


@dataclass(frozen=True)
class RecordedFile:
    exchange: str
    symbol: str
    timeframe: str
    path: Path


class ReplaySource:
    """Recorded candles from `<exchange>_<BASE-QUOTE>_<timeframe>.csv` files (header
    `timestamp,open,high,low,close,volume`, timestamp = open time in ms UTC), revealed as `clock` advances:
    a candle is returned only once it has closed by `clock.now()`.
    """

    def __init__(self, folder: Path, exchange: str | None = None, *, clock: SimClock) -> None:
        self.folder = Path(folder)
        self.exchange = exchange
        self.clock = clock
        self.name = f"replay:{exchange}" if exchange else "replay"
        if not self.folder.is_dir():
            raise FileNotFoundError(f"recorded candles folder not found: {self.folder}")
        self.files = [f for f in self._scan() if exchange is None or f.exchange == exchange]
        self._cache: dict[Path, pd.DataFrame] = {}
        self._resampled: dict[tuple[str, str], pd.DataFrame] = {}
        self._lock = threading.Lock()

    def _scan(self) -> list[RecordedFile]:
        found = []
        for path in sorted(self.folder.glob("*.csv")):
            match = _RECORDED_FILE.match(path.name)
            if match:
                found.append(RecordedFile(match["exchange"], match["symbol"], match["timeframe"], path))
            elif not _DATED_FILE.match(path.name):
                raise CandleFileError(f"{path}: not a candle file name: expected <exchange>_<BASE-QUOTE>_<timeframe>"
                                      ".csv, e.g. binance_BTC-USDT_5m.csv (move other files out of the folder)")
        return found

    def check(self, symbols: Sequence[str]) -> None:
        """Read every file of these symbols now (`CandleFileError` on the first bad one), so a scan fails before
        it writes anything rather than halfway."""
        wanted = {normalize_symbol(s) for s in symbols}
        for recorded in self.files:
            if recorded.symbol in wanted:
                self._load(recorded)

    def exchanges(self) -> list[str]:
        """The exchanges the folder's files were recorded on (their names' first part)."""
        return sorted({f.exchange for f in self.files})

    def symbols(self, timeframe: str | None = None) -> list[str]:
        """The symbols the folder holds (for this source's exchange, and timeframe if given)."""
        return sorted({f.symbol for f in self.files if timeframe is None or f.timeframe == timeframe})

    def timeframes(self, symbol: str) -> list[str]:
        sym = normalize_symbol(symbol)
        return sorted({f.timeframe for f in self.files if f.symbol == sym}, key=timeframe_seconds)

    def span(self, symbol: str, timeframe: str) -> tuple[datetime, datetime]:
        """Open times of the first and last recorded candle, whatever the clock says."""
        frame = self._load(self._file(symbol, timeframe))
        if frame.empty:
            raise CallError(ErrorKind.CLIENT, f"no candles recorded for {symbol} {timeframe}", endpoint=self.name)
        return frame["ts"].iloc[0].to_pydatetime(), frame["ts"].iloc[-1].to_pydatetime()

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: datetime,
                    until: datetime | None = None) -> pd.DataFrame:
        return window(self._candles(symbol, timeframe), timeframe, since, until, self.clock.now())

    def _candles(self, symbol: str, timeframe: str) -> pd.DataFrame:
        """The recorded candles of a timeframe; a timeframe not recorded is built from a finer one that divides
        it, as an exchange would serve it live (recordings hold 1m and 5m; strategies also ask 15m and 1h)."""
        sym = normalize_symbol(symbol)
        if any(f.symbol == sym and f.timeframe == timeframe for f in self.files):
            return self._load(self._file(symbol, timeframe))
        target = timeframe_seconds(timeframe)
        finer = [tf for tf in self.timeframes(sym) if timeframe_seconds(tf) < target
                 and target % timeframe_seconds(tf) == 0]
        if not finer:
            return self._load(self._file(symbol, timeframe))  # raises: nothing to build it from
        base = max(finer, key=timeframe_seconds)
        key = (sym, timeframe)
        with self._lock:
            cached = self._resampled.get(key)
        if cached is None:
            cached = resample(self._load(self._file(symbol, base)), base, timeframe)
            with self._lock:
                self._resampled[key] = cached
        return cached

    def _file(self, symbol: str, timeframe: str) -> RecordedFile:
        sym = normalize_symbol(symbol)
        matches = [f for f in self.files if f.symbol == sym and f.timeframe == timeframe]
        if not matches:
            raise CallError(ErrorKind.CLIENT, f"no recorded candles for {sym} {timeframe} in {self.folder.name}",
                            endpoint=self.name)
        if len(matches) > 1:
            exchanges = ", ".join(f.exchange for f in matches)
            raise CallError(ErrorKind.CLIENT, f"{sym} {timeframe} is recorded for several exchanges ({exchanges}):"
                            " pass exchange=", endpoint=self.name)
        return matches[0]

    def _load(self, recorded: RecordedFile) -> pd.DataFrame:
        with self._lock:
            if recorded.path not in self._cache:
                raw = read_candles_csv(recorded.path)
                self._cache[recorded.path] = _tidy(raw.rename(columns={"timestamp": "ts"}))
            return self._cache[recorded.path]


# --- ccxt --------------------------------------------------------------------------------------------

OHLCV_ENDPOINT = "ohlcv"
MARKETS_ENDPOINT = "markets"
DEFAULT_PAGE_LIMIT = 500


def ccxt_error_kind(exc: Exception, status: int | None = None) -> ErrorKind:
    """The kind of a ccxt exception; `status` is the HTTP status of the response, when there was one.

    The status decides when present, because ccxt's generic mapping calls a bare HTTP 400 or 404
    ExchangeNotAvailable (which would make a bad request look like an outage).
    """
    import ccxt

    from bridge.resilience import kind_of_status

    if isinstance(exc, ccxt.RequestTimeout):
        return ErrorKind.TIMEOUT
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return ErrorKind.RATE_LIMIT
    if status is not None and (kind := kind_of_status(status)) is not None:
        return kind
    if isinstance(exc, ccxt.BadResponse):
        return ErrorKind.MALFORMED
    if isinstance(exc, ccxt.AuthenticationError):  # includes PermissionDenied
        return ErrorKind.AUTH
    if isinstance(exc, ccxt.ExchangeNotAvailable):  # includes OnMaintenance
        return ErrorKind.SERVER
    if isinstance(exc, ccxt.NetworkError):
        return ErrorKind.CONNECTION
    if isinstance(exc, ccxt.ExchangeError):  # BadRequest, BadSymbol and the rest: the request is wrong
        return ErrorKind.CLIENT
    return ErrorKind.SERVER  # OperationFailed and the like: the exchange failed to do what it could


def _default_page_limit(exchange: ccxt.Exchange) -> int:
    features = getattr(exchange, "features", None) or {}
    for path in (("spot",), ("swap", "linear"), ("future", "linear")):
        node: Any = features
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        limit = node.get("fetchOHLCV", {}).get("limit") if isinstance(node, dict) else None
        if isinstance(limit, int) and limit > 0:
            return limit
    return DEFAULT_PAGE_LIMIT


class CcxtSource:
    """An exchange's public OHLCV endpoint through sync ccxt, paginated with since/limit.

    ccxt's own rate limiter is off: the caller's token bucket (set from `exchange.rateLimit` when the
    caller has none) governs, so one limiter covers every call to the exchange. Markets are loaded on the
    first fetch, through the caller too. One instance serialises its calls (a ccxt instance is not
    thread-safe).
    """

    def __init__(self, exchange_id: str, caller: ResilientCaller | None = None, page_limit: int | None = None,
                 exchange: ccxt.Exchange | None = None, now: Callable[[], datetime] = utc_now) -> None:
        if exchange is None:
            import ccxt

            factory = getattr(ccxt, exchange_id, None)
            if factory is None or exchange_id not in ccxt.exchanges:
                raise ValueError(f"unknown ccxt exchange {exchange_id!r}")
            exchange = factory({"enableRateLimit": False})
        if getattr(exchange, "apiKey", None) or getattr(exchange, "secret", None):
            raise ValueError("CcxtSource reads public market data only: pass an exchange without API keys")
        self.exchange = exchange
        self.name = exchange_id
        self.now = now
        # Ours governs; ccxt's would add a second, invisible wait.
        exchange.enableRateLimit = False
        # What we need to classify failures and to honour Retry-After.
        exchange.enableLastJsonResponse = True
        exchange.enableLastResponseHeaders = True
        exchange.enableLastHttpResponse = True
        self.caller = caller or ResilientCaller(exchange_id)
        if self.caller.limiter is None:
            self.caller.limiter = TokenBucket.from_interval_ms(exchange.rateLimit or 1000, clock=self.caller.clock,
                                                               sleep=self.caller.sleep)
        self.page_limit = page_limit or _default_page_limit(exchange)
        self._lock = threading.Lock()
        self._last_status: int | None = None
        self._watch_status()

    def _watch_status(self) -> None:
        """Record each response's HTTP status: ccxt's exceptions do not carry it."""
        original = self.exchange.on_rest_response

        def on_rest_response(code: int, *args: Any) -> Any:
            self._last_status = code
            return original(code, *args)

        self.exchange.on_rest_response = on_rest_response

    def available(self) -> bool:
        """False while a breaker this source needs is open and no probe is due."""
        if not self.exchange.markets and not self.caller.available(MARKETS_ENDPOINT):
            return False
        return self.caller.available(OHLCV_ENDPOINT)

    def health(self) -> dict[str, Any]:
        return self.caller.health()

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: datetime,
                    until: datetime | None = None) -> pd.DataFrame:
        step_ms = timeframe_seconds(timeframe) * 1000
        now = self.now()
        end_ms = min(epoch_ms(until), epoch_ms(now)) if until is not None else epoch_ms(now)
        market = self.market_symbol(symbol)
        rows: list[list[Any]] = []
        cursor = epoch_ms(since)
        while cursor < end_ms:
            page = self.caller.call(OHLCV_ENDPOINT, functools.partial(self._fetch_page, market, timeframe, cursor),
                                    idempotent=True)
            page = [r for r in page if r[0] >= cursor]
            if not page:
                break  # nothing more at the exchange (yet)
            rows.extend(page)
            cursor = int(page[-1][0]) + step_ms
        return window(candles_frame(rows), timeframe, since, until, now)

    def market_symbol(self, symbol: str) -> str:
        """ccxt's symbol for `symbol`: the spot market if listed, else a swap settled in the quote currency."""
        base, quote = normalize_symbol(symbol).split("-")
        self._ensure_markets()
        markets = self.exchange.markets or {}
        spot = f"{base}/{quote}"
        if spot in markets:
            return spot
        for market in markets.values():
            if market.get("base") == base and market.get("quote") == quote and market.get("settle") in (None, quote):
                return market["symbol"]
        raise CallError(ErrorKind.CLIENT, f"{self.name} lists no market {base}-{quote}", endpoint=MARKETS_ENDPOINT)

    def _ensure_markets(self) -> None:
        if not self.exchange.markets:
            self.caller.call(MARKETS_ENDPOINT, self._load_markets, idempotent=True)

    def _load_markets(self) -> None:
        self._guarded(MARKETS_ENDPOINT, lambda: self.exchange.load_markets(reload=True))

    def _fetch_page(self, market: str, timeframe: str, since_ms: int) -> list[list[Any]]:
        rows = self._guarded(OHLCV_ENDPOINT, lambda: self.exchange.fetch_ohlcv(market, timeframe, since=since_ms,
                                                                               limit=self.page_limit))
        if not isinstance(rows, list) or not all(_is_candle(r) for r in rows):
            raise CallError(ErrorKind.MALFORMED, f"{self.name} returned candles that are not [time, o, h, l, c, v]",
                            endpoint=OHLCV_ENDPOINT, status=self._last_status)
        return rows

    def _guarded[T](self, endpoint: str, fn: Callable[[], T]) -> T:
        """Run one ccxt call, turning every failure into a CallError of the right kind."""
        import ccxt

        with self._lock:
            exchange = self.exchange
            self._last_status = None
            exchange.last_json_response = None
            exchange.last_response_headers = None
            exchange.last_http_response = None
            try:
                result = fn()
            except ccxt.BaseError as exc:
                raise self._call_error(exc, endpoint) from None
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                # ccxt parsed a body that has the wrong shape (a JSON object where candles belong, say).
                raise CallError(ErrorKind.MALFORMED, f"unexpected response: {type(exc).__name__}: {exc}",
                                endpoint=endpoint, status=self._last_status) from None
            if self._last_status is not None and exchange.last_json_response is None:
                # ccxt swallows a body that does not parse and hands back an empty result; an empty
                # page would end pagination as if there were no more candles.
                body = (exchange.last_http_response or "")[:200]
                raise CallError(ErrorKind.MALFORMED, f"response is not JSON: {body!r}", endpoint=endpoint,
                                status=self._last_status)
            return result

    def _call_error(self, exc: Exception, endpoint: str) -> CallError:
        headers = self.exchange.last_response_headers or {}
        retry_after = parse_retry_after(headers.get("Retry-After")) if hasattr(headers, "get") else None
        kind = ccxt_error_kind(exc, self._last_status)
        return CallError(kind, f"{type(exc).__name__}: {str(exc)[:300]}", endpoint=endpoint,
                         status=self._last_status, retry_after=retry_after)


def _is_candle(row: Any) -> bool:
    return (isinstance(row, list | tuple) and len(row) >= 6 and isinstance(row[0], int | float)
            and all(isinstance(v, int | float) for v in row[1:6]))


# --- failover ----------------------------------------------------------------------------------------

class FailoverSource:
    """The primary source while it works; the backup while the primary's breaker is open or a fetch from
    it failed with a retryable error (after its retries); the primary again once its breaker lets calls
    through and a call succeeds.

    Where both sources have served the same candle, their closes are compared: a difference above
    `divergence_pct` percent is logged and counted in `divergences` (each candle compared once).
    """

    def __init__(self, primary: MarketDataSource, backup: MarketDataSource, divergence_pct: float = 0.5,
                 memory: int = 5000) -> None:
        self.primary = primary
        self.backup = backup
        self.divergence_pct = divergence_pct
        self.name = f"{primary.name}|{backup.name}"
        self.serving = primary.name
        self.failovers = 0
        self.divergences = 0
        self.compared = 0
        self._memory = memory
        self._lock = threading.Lock()
        # (symbol, timeframe) -> open time ms -> [primary close, backup close, compared]
        self._closes: dict[tuple[str, str], dict[int, list[Any]]] = {}

    def fetch_ohlcv(self, symbol: str, timeframe: str, since: datetime,
                    until: datetime | None = None) -> pd.DataFrame:
        reason = "circuit breaker open"
        if _available(self.primary):
            try:
                frame = self.primary.fetch_ohlcv(symbol, timeframe, since, until)
            except CallError as exc:
                if not (exc.retryable or exc.kind is ErrorKind.CIRCUIT_OPEN):
                    raise  # a bad request fails at the backup too: say so instead of hiding it
                reason = str(exc)
            else:
                self._served(0, symbol, timeframe, frame, reason=None)
                return frame
        frame = self.backup.fetch_ohlcv(symbol, timeframe, since, until)
        self._served(1, symbol, timeframe, frame, reason=reason)
        return frame

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"serving": self.serving, "failovers": self.failovers,
                                  "divergences": self.divergences, "compared": self.compared}
        for role, source in (("primary", self.primary), ("backup", self.backup)):
            health = getattr(source, "health", None)
            report[role] = health() if callable(health) else {"name": source.name}
        return report

    def _served(self, role: int, symbol: str, timeframe: str, frame: pd.DataFrame, reason: str | None) -> None:
        source = (self.primary, self.backup)[role]
        with self._lock:
            if source.name != self.serving:
                extra = {"primary": self.primary.name, "backup": self.backup.name, "symbol": symbol,
                         "timeframe": timeframe}
                if role == 1:
                    self.failovers += 1
                    logger.warning("market data failing over to the backup source", extra={**extra, "reason": reason})
                else:
                    logger.warning("market data back on the primary source", extra=extra)
                self.serving = source.name
            self._compare(role, normalize_symbol(symbol), timeframe, frame)

    def _compare(self, role: int, symbol: str, timeframe: str, frame: pd.DataFrame) -> None:
        book = self._closes.setdefault((symbol, timeframe), {})
        pairs: list[tuple[int, float, float]] = []
        for ts, close in zip(ts_epoch_ms(frame["ts"]).tolist(), frame["close"].tolist(), strict=True):
            entry = book.setdefault(ts, [None, None, False])
            entry[role] = close
            if entry[0] is not None and entry[1] is not None and not entry[2]:
                entry[2] = True
                pairs.append((ts, entry[0], entry[1]))
        if len(book) > 2 * self._memory:
            for ts in sorted(book)[: len(book) - self._memory]:
                del book[ts]
        if not pairs:
            return
        self.compared += len(pairs)
        # Relative to the primary: it is the reference, the backup is what may be off.
        diverging = [(ts, p, b, abs(p - b) / abs(p) * 100 if p else float("inf")) for ts, p, b in pairs]
        diverging = [d for d in diverging if d[3] > self.divergence_pct]
        if not diverging:
            return
        self.divergences += len(diverging)
        ts, p, b, pct = max(diverging, key=lambda d: d[3])
        logger.warning("market data sources diverge", extra={
            "primary": self.primary.name, "backup": self.backup.name, "symbol": symbol, "timeframe": timeframe,
            "candles": len(diverging), "compared": len(pairs), "threshold_pct": self.divergence_pct,
            "worst_ts": datetime.fromtimestamp(ts / 1000, UTC).isoformat(), "primary_close": p, "backup_close": b,
            "diff_pct": round(pct, 4)})


# --- gaps and backfill -------------------------------------------------------------------------------

def find_gaps(ts: pd.Series, timeframe: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Missing candles in `[start, end)` as half-open ranges `(first missing open, open after the last missing)`.

    The expected candles are those aligned to the timeframe from the Unix epoch (as exchanges align them).
    """
    step = timeframe_seconds(timeframe) * 1000
    first = -(-epoch_ms(start) // step) * step  # the first aligned open time at or after start
    grid = np.arange(first, epoch_ms(end), step, dtype=np.int64)
    if grid.size == 0:
        return []
    missing = np.flatnonzero(~np.isin(grid, ts_epoch_ms(ts)))
    if missing.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(missing) != 1)
    run_starts = np.concatenate(([missing[0]], missing[breaks + 1]))
    run_ends = np.concatenate((missing[breaks], [missing[-1]]))

    def at(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC)

    return [(at(int(grid[a])), at(int(grid[b]) + step)) for a, b in zip(run_starts, run_ends, strict=True)]


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill stands for one symbol, reported after every page."""

    symbol: str
    slots_done: int    # candle slots covered so far (fetched, or found missing at the source too)
    slots_total: int   # candle slots missing from the store when the symbol started
    rows_written: int


def missing_ranges(store: Store, exchange: str, symbol: str, timeframe: str, start: datetime,
                   end: datetime) -> list[tuple[datetime, datetime]]:
    """The ranges of `[start, end)` the store lacks: holes in what it holds, and all after its last candle."""
    last = store.last_candle_time(exchange, symbol, timeframe)
    if last is None or as_utc(last) < as_utc(start):
        return find_gaps(pd.Series([], dtype="datetime64[us, UTC]"), timeframe, start, end)
    read_end = min(as_utc(end), as_utc(last) + timedelta(seconds=timeframe_seconds(timeframe)))
    stored = store.read_candles(exchange, symbol, timeframe, start, read_end)
    return find_gaps(stored["ts"], timeframe, start, end)


def backfill(store: Store, source: MarketDataSource, exchange: str, symbols: Sequence[str], timeframe: str,
             start: datetime, end: datetime, progress: Callable[[BackfillProgress], None] | None = None,
             page_candles: int | None = None) -> dict[str, int]:
    """Fetch the candles of `[start, end)` that the store lacks and write them, page by page.

    Returns rows written per symbol. Pages hold `page_candles` candles (default: the source's page
    limit, else 1000), so memory stays flat and an interrupted backfill resumes where it stopped.
    Ranges the source has no candles for (an exchange outage) are asked for again on the next run.
    """
    step = timedelta(seconds=timeframe_seconds(timeframe))
    per_page = page_candles or getattr(source, "page_limit", None) or 1000
    written: dict[str, int] = {}
    for raw_symbol in symbols:
        symbol = normalize_symbol(raw_symbol)
        gaps = missing_ranges(store, exchange, symbol, timeframe, start, end)
        total = sum(round((b - a) / step) for a, b in gaps)
        done = rows = 0
        if progress:
            progress(BackfillProgress(symbol, 0, total, 0))
        for gap_start, gap_end in gaps:
            cursor = gap_start
            while cursor < gap_end:
                page_end = min(gap_end, cursor + per_page * step)
                frame = source.fetch_ohlcv(symbol, timeframe, cursor, page_end)
                if not frame.empty:
                    rows += store.write_candles(
                        frame.assign(exchange=exchange, symbol=symbol, timeframe=timeframe)[CANDLE_COLUMNS])
                done += round((page_end - cursor) / step)
                cursor = page_end
                if progress:
                    progress(BackfillProgress(symbol, done, total, rows))
        written[symbol] = rows
        logger.info("backfill done", extra={"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                                            "missing_slots": total, "rows_written": rows})
    return written
