"""Training events from recorded candles, vectorised: indicators once per series, each strategy's rule over
all rows at once (the same pure functions the scan runs), features and labels for every entry.

A folder holds `<exchange>_<BASE-QUOTE>_<timeframe>[_<YYYYMMDD>].csv` files (`timestamp,open,high,low,close,
volume`, timestamp = open time in ms UTC); each file is one pair-window. A strategy whose timeframe is a
multiple of a file's is run on candles resampled to it (as `ReplaySource` serves them); a file too coarse
for a strategy is skipped for it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controller.data.market_data import timeframe_seconds
from controller.scan import indicators, strategies
from controller.scan.strategy_params import StrategiesConfig, StrategyConfig
from ml import features as ml_features
from ml.config import CostParams
from ml.labels import BARRIER_COLUMNS, label_positions

_FILE = re.compile(r"^(?P<exchange>[A-Za-z0-9]+)_(?P<symbol>[A-Z0-9]+-[A-Z0-9]+)_(?P<timeframe>\d+[mhd])"
                   r"(?:_(?P<start>\d{8}))?\.csv$")
EVENT_COLUMNS = ("strategy", "exchange", "symbol", "window", "decided_at", "horizon_end")


@dataclass(frozen=True)
class Recording:
    exchange: str
    symbol: str
    timeframe: str
    path: Path

    @property
    def window(self) -> str:
        return self.path.stem


def recordings(folder: Path) -> list[Recording]:
    """The recorded candle files of `folder`; raise FileNotFoundError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"recorded candles folder not found: {folder}")
    found = []
    for path in sorted(folder.glob("*.csv")):
        if match := _FILE.match(path.name):
            found.append(Recording(match["exchange"], match["symbol"], match["timeframe"], path))
    if not found:
        raise FileNotFoundError(f"no <exchange>_<BASE-QUOTE>_<timeframe>.csv files in {folder}")
    return found


_CANDLE_DTYPES = {"timestamp": "int64", "open": "float64", "high": "float64", "low": "float64", "close": "float64",
                  "volume": "float64"}


def load_candles(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, usecols=list(_CANDLE_DTYPES), dtype=_CANDLE_DTYPES)
    except ValueError as exc:
        if "Usecols do not match columns" not in str(exc):
            raise
        missing = set(_CANDLE_DTYPES) - set(pd.read_csv(path, nrows=0).columns)
        raise ValueError(f"{path.name} lacks columns {sorted(missing)}") from None
    stamps = raw["timestamp"].to_numpy()
    if len(stamps) > 1 and not (np.diff(stamps) > 0).all():  # recorded files are sorted and unique: rarely needed
        raw = raw.drop_duplicates("timestamp", keep="last").sort_values("timestamp", kind="stable")
        stamps = raw["timestamp"].to_numpy()
    frame = pd.DataFrame({"ts": pd.to_datetime(stamps, unit="ms", utc=True)})
    for column in ("open", "high", "low", "close", "volume"):
        frame[column] = raw[column].to_numpy()
    return frame


_HEADER = ",".join(_CANDLE_DTYPES).encode()


Columns = dict[str, np.ndarray]  # one series as arrays: ts (naive UTC datetime64) and the OHLCV floats
_OHLCV = ("open", "high", "low", "close", "volume")


def _columns(candles: pd.DataFrame) -> Columns:
    ts = candles["ts"]
    if ts.dt.tz is not None:  # naive UTC, in the frame's own unit (so `frame_of` gives the frame back)
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    return {"ts": ts.to_numpy(),
            **{k: candles[k].to_numpy(dtype=np.float64) for k in _OHLCV}}


def load_columns(paths: list[Path]) -> list[Columns]:
    """The candles of each path as arrays (`Columns`), parsed in one `read_csv` call: the files' bodies are joined
    (each file's header checked), so pandas' per-call set-up (most of the time for a few thousand rows) is paid
    once, not per file. A file with another header, blank lines or rows out of order is read on its own by
    `load_candles` (which names missing columns and repairs the order)."""
    bodies: list[bytes] = []
    counts: list[int] = []
    for path in paths:
        head, _, body = Path(path).read_bytes().partition(b"\n")
        if head.strip() != _HEADER or not body.strip():
            counts.append(-1)  # read alone below
            continue
        body = body if body.endswith(b"\n") else body + b"\n"
        bodies.append(body)
        counts.append(body.count(b"\n"))
    rows = sum(c for c in counts if c > 0)
    try:
        raw = pd.read_csv(io.BytesIO(b"".join(bodies)), header=None, names=list(_CANDLE_DTYPES),
                          dtype=_CANDLE_DTYPES, skip_blank_lines=False)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raw = None  # an empty or malformed value: each file alone, for load_candles' own message
    if raw is None or len(raw) != rows or raw.isna().to_numpy().any():  # a blank or partial line
        return [_columns(load_candles(path)) for path in paths]
    stamps = raw["timestamp"].to_numpy()
    # the instants load_candles makes (same unit), as naive UTC datetime64: one conversion for every file
    ts = np.asarray(pd.to_datetime(stamps, unit="ms", utc=True).tz_localize(None))
    values = {c: raw[c].to_numpy() for c in _OHLCV}
    out: list[Columns] = []
    start = 0
    for path, count in zip(paths, counts, strict=True):
        stop = start + max(count, 0)
        if count < 0 or (count > 1 and not (np.diff(stamps[start:stop]) > 0).all()):
            out.append(_columns(load_candles(path)))
        else:
            out.append({"ts": ts[start:stop], **{c: v[start:stop] for c, v in values.items()}})
        start = stop
    return out


def frame_of(columns: Columns) -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.to_datetime(columns["ts"], utc=True), **{k: columns[k] for k in _OHLCV}})


def load_many(paths: list[Path]) -> list[pd.DataFrame]:
    """`load_candles` of each path (the same frames), read as `load_columns` reads them."""
    return [frame_of(c) for c in load_columns(paths)]


def _as_columns(candles: pd.DataFrame | Columns) -> Columns:
    return candles if isinstance(candles, dict) else _columns(candles)


def _is_btc_reference(recording: Recording) -> bool:
    base, quote = recording.symbol.split("-")
    return base == "BTC" and quote in ("USD", "USDT", "USDC") and timeframe_seconds(recording.timeframe) <= 3600


def _btc_frames(series: list[tuple[Recording, pd.DataFrame | Columns]]) -> pd.DataFrame:
    """BTC against a dollar quote, for the regime features (empty when there is none), with each candle's own
    close time (`closed` = open time + its recording's timeframe): references of different timeframes are
    merged by when each candle closed, never by a candle length guessed from the merged gaps (a 1h candle
    would count as closed 5 minutes after it opened). Where two close at the same instant the finer one stays."""
    frames = []
    for recording, candles in series:
        if not _is_btc_reference(recording):
            continue
        frame = frame_of(candles) if isinstance(candles, dict) else candles.copy()
        step_s = timeframe_seconds(recording.timeframe)
        frame["closed"] = frame["ts"] + pd.Timedelta(seconds=step_s)
        frame["step_s"] = step_s
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume", "closed", "step_s"])
    merged = pd.concat(frames).sort_values(["closed", "step_s"], kind="stable")
    return merged.drop_duplicates("closed", keep="first").reset_index(drop=True)


def evaluate(name: str, section: StrategyConfig, candles: pd.DataFrame) -> pd.DataFrame:
    """Indicators and the strategy's decisions over a long frame of many series (`symbol` column, each
    series contiguous and in time order): the scan's computation, over all rows at once."""
    frame = indicators.compute(candles[list(indicators.CANDLE_COLUMNS)], section.indicators)
    return frame.join(strategies.STRATEGIES[name](frame, section.params))


def stack(series: list[tuple[Recording, Columns]]) -> pd.DataFrame:
    """The series as one candle frame, each under its own key `BASE-QUOTE<k>` (column `symbol`): the same base
    asset (so the same tier and parameters) and a block of its own, so no indicator reaches from one window into
    another. One frame built from the concatenated arrays (a frame per series and `pd.concat` cost more than
    the indicators)."""
    sizes = np.array([len(c["ts"]) for _, c in series], dtype=np.int64)
    keys = np.asarray([f"{r.symbol}{k}" for k, (r, _) in enumerate(series)], dtype=object)
    return pd.DataFrame({"ts": pd.to_datetime(np.concatenate([c["ts"] for _, c in series]), utc=True),
                         **{k: np.concatenate([c[k] for _, c in series]) for k in _OHLCV},
                         "symbol": np.repeat(keys, sizes)})


def strategy_events(name: str, section: StrategyConfig, series: list[tuple[Recording, Columns]],
                    btc: pd.DataFrame, costs: CostParams) -> pd.DataFrame:
    """Features and labels of every entry of strategy `name` over `series` (already at its timeframe).

    The series are stacked into one frame (`stack`). Labels walk each window's own candles (a walk stops at
    its window's end), all windows at once."""
    if not series:
        return pd.DataFrame()
    tf_s = timeframe_seconds(section.timeframe)
    sizes = np.array([len(c["ts"]) for _, c in series], dtype=np.int64)
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    window_of = np.repeat(np.arange(len(series)), sizes)
    stacked = stack(series)
    evaluated = evaluate(name, section, stacked)
    entry = evaluated["entry"].to_numpy(dtype=bool)
    if not entry.any():
        return pd.DataFrame()
    decided = evaluated["ts"] + pd.Timedelta(seconds=tf_s)
    at = np.flatnonzero(entry)
    feats = ml_features.build(name, evaluated, section.params, ml_features.regime_series(btc, decided), tf_s,
                              rows=at)
    times = stacked["ts"].to_numpy(dtype="datetime64[s]").view(np.int64).astype(np.float64)
    labels = label_positions(times, stacked["high"].to_numpy(dtype=np.float64),
                             stacked["low"].to_numpy(dtype=np.float64), stacked["close"].to_numpy(dtype=np.float64),
                             at, bounds[window_of[at] + 1],
                             {c: evaluated[c].to_numpy(dtype=np.float64)[at] for c in BARRIER_COLUMNS}, tf_s, costs)
    keep = labels["labelled"]
    if not keep.any():
        return pd.DataFrame()
    rows = at[keep]
    window = window_of[rows]
    decided_s = times[rows] + tf_s
    limit = evaluated["time_limit_s"].to_numpy(dtype=np.float64)[rows]
    meta = pd.DataFrame({
        "strategy": name,
        "exchange": np.asarray([r.exchange for r, _ in series], dtype=object)[window],
        "symbol": np.asarray([r.symbol for r, _ in series], dtype=object)[window],
        "window": np.asarray([r.window for r, _ in series], dtype=object)[window],
        "decided_at": pd.to_datetime(decided_s, unit="s", utc=True),
        "horizon_end": pd.to_datetime(decided_s + limit, unit="s", utc=True),
    }, index=rows)
    label_frame = pd.DataFrame({
        "label": labels["label"][keep], "net_return_pct": labels["net_return_pct"][keep],
        "exit_reason": labels["exit_reason"][keep],
        "exit_ts": pd.to_datetime(labels["exit_ts"][keep], unit="s", utc=True), "held_s": labels["held_s"][keep],
    }, index=rows)
    features = pd.DataFrame(feats.to_numpy(dtype=np.float64)[keep], columns=feats.columns, index=rows)
    return pd.concat([meta, features, label_frame], axis=1)


def _resample_columns(candles: Columns, base_s: int, target_s: int) -> Columns:
    ns = candles["ts"].astype("datetime64[ns]", copy=False).view(np.int64)
    step = target_s * 1_000_000_000
    bucket = ns - ns % step
    starts = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    ends = np.concatenate((starts[1:], [len(bucket)]))
    full = (ends - starts) == target_s // base_s  # incomplete buckets left out
    return {"ts": bucket[starts[full]].view("datetime64[ns]"), "open": candles["open"][starts[full]],
            "high": np.maximum.reduceat(candles["high"], starts)[full],
            "low": np.minimum.reduceat(candles["low"], starts)[full], "close": candles["close"][ends[full] - 1],
            "volume": np.add.reduceat(candles["volume"], starts)[full]}


def resample_sorted(candles: pd.DataFrame, from_timeframe: str, to_timeframe: str) -> pd.DataFrame:
    """`controller.data.market_data.resample` for candles already sorted and unique by ts, in NumPy: the same
    epoch-aligned buckets (open first, high max, low min, close last, volume sum), incomplete buckets left
    out. A test holds the two equal; this one skips pandas' group-by, the slowest step of event building."""
    base_s, target_s = timeframe_seconds(from_timeframe), timeframe_seconds(to_timeframe)
    if target_s % base_s:
        raise ValueError(f"{to_timeframe} is not a multiple of {from_timeframe}")
    if candles.empty:
        return candles.iloc[0:0]
    out = _resample_columns(_columns(candles), base_s, target_s)
    return pd.DataFrame({"ts": pd.to_datetime(out["ts"], utc=True), **{k: out[k] for k in _OHLCV}})


def series_for_strategy(series: list[tuple[Recording, pd.DataFrame | Columns]],
                  section: StrategyConfig) -> Iterator[tuple[Recording, Columns]]:
    """Each series at the strategy's timeframe (resampled from a finer one that divides it; coarser skipped),
    as arrays: no frame per series (see `stack`)."""
    target = timeframe_seconds(section.timeframe)
    for recording, candles in series:
        base = timeframe_seconds(recording.timeframe)
        if base > target or target % base:
            continue
        columns = _as_columns(candles)
        if base < target and len(columns["ts"]):
            columns = _resample_columns(columns, base, target)
        if len(columns["ts"]) >= 60:
            yield recording, columns


def events_from_series(series: list[tuple[Recording, pd.DataFrame | Columns]], config: StrategiesConfig,
                       costs: CostParams, *, only: str | None = None,
                       progress: Callable[[str, int], None] | None = None) -> tuple[pd.DataFrame, int]:
    """Every labelled entry of every strategy (or `only` one) over `series` (one pair-window each, candles
    sorted by open time); and the number of candles evaluated. Runs a strategy even when its section is
    disabled in the config: training may prepare a model for it. The regime features read BTC against a
    dollar quote from among the same series (none there: those features see an empty reference)."""
    btc = _btc_frames(series)
    parts: list[pd.DataFrame] = []
    evaluated_candles = 0
    series = [(r, _as_columns(c)) for r, c in series]  # once, not once per strategy
    for name, section in config.items():
        if only is not None and name != only:
            continue
        prepared = list(series_for_strategy(series, section))
        evaluated_candles += sum(len(c["ts"]) for _, c in prepared)
        part = strategy_events(name, section, prepared, btc, costs)
        if not part.empty:
            parts.append(part)
        if progress is not None:
            progress(name, len(prepared))
    if not parts:
        return pd.DataFrame(columns=[*EVENT_COLUMNS, *ml_features.FEATURES]), evaluated_candles
    events = pd.concat(parts, ignore_index=True).sort_values(["decided_at", "symbol"], kind="stable")
    return events.reset_index(drop=True), evaluated_candles


def build_events(folder: Path, config: StrategiesConfig, costs: CostParams, *, only: str | None = None,
                 progress: Callable[[str, int], None] | None = None) -> tuple[pd.DataFrame, int]:
    """`events_from_series` over every recorded file of `folder` (each file read once)."""
    found = recordings(folder)
    series = list(zip(found, load_columns([r.path for r in found]), strict=True))
    return events_from_series(series, config, costs, only=only, progress=progress)


def series_from_store(conn: Any, since: pd.Timestamp | None = None) -> list[tuple[Recording, pd.DataFrame]]:
    """The candles the scan stored (table `candles`), one series per exchange, symbol and timeframe: what the
    retrainer learns from when no folder is configured."""
    query = "select exchange, symbol, timeframe, ts, open, high, low, close, volume from candles"
    params: tuple[Any, ...] = ()
    if since is not None:
        query += " where ts >= %s"
        params = (since.to_pydatetime(),)
    rows = conn.execute(query + " order by exchange, symbol, timeframe, ts", params).fetchall()
    frame = pd.DataFrame(rows, columns=["exchange", "symbol", "timeframe", "ts", "open", "high", "low", "close",
                                        "volume"])
    series: list[tuple[Recording, pd.DataFrame]] = []
    for (exchange, symbol, timeframe), group in frame.groupby(["exchange", "symbol", "timeframe"], sort=True):
        candles = group[["ts", "open", "high", "low", "close", "volume"]].reset_index(drop=True)
        candles["ts"] = pd.to_datetime(candles["ts"], utc=True)
        recording = Recording(str(exchange), str(symbol), str(timeframe),
                              Path(f"store/{exchange}_{symbol}_{timeframe}"))
        series.append((recording, candles.astype({c: "float64" for c in ("open", "high", "low", "close", "volume")})))
    return series


def series_before(folder: Path, before: datetime, exchange: str | None = None) -> list[tuple[Recording, pd.DataFrame]]:
    """The recorded series of `folder` (of `exchange`, plus any BTC reference for the regime features), cut to
    the candles closed by `before`: what was known then, for training ahead of a replayed window."""
    out = []
    cutoff = pd.Timestamp(before)
    for recording in recordings(folder):
        if exchange is not None and recording.exchange != exchange and not _is_btc_reference(recording):
            continue
        candles = load_candles(recording.path)
        step = pd.Timedelta(seconds=timeframe_seconds(recording.timeframe))
        candles = candles[candles["ts"] + step <= cutoff].reset_index(drop=True)
        if len(candles) >= 60:
            out.append((recording, candles))
    return out
