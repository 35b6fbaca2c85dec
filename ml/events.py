"""Training events from recorded candles, vectorised: indicators once per series, each strategy's rule over
all rows at once (the same pure functions the scan runs), features and labels for every entry.

A folder holds `<exchange>_<BASE-QUOTE>_<timeframe>[_<YYYYMMDD>].csv` files (`timestamp,open,high,low,close,
volume`, timestamp = open time in ms UTC); each file is one pair-window. A strategy whose timeframe is a
multiple of a file's is run on candles resampled to it (as `ReplaySource` serves them); a file too coarse
for a strategy is skipped for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from controller.data.market_data import resample, timeframe_seconds
from controller.scan import indicators, strategies
from controller.scan.strategy_params import StrategiesConfig, StrategyConfig
from ml import features as ml_features
from ml.config import CostParams
from ml.labels import label_entries

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


def load_candles(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, dtype={"timestamp": "int64"})
    missing = {"timestamp", "open", "high", "low", "close", "volume"} - set(raw.columns)
    if missing:
        raise ValueError(f"{path.name} lacks columns {sorted(missing)}")
    frame = raw[["timestamp", "open", "high", "low", "close", "volume"]].astype({"open": "float64", "high": "float64",
                                                                               "low": "float64", "close": "float64",
                                                                               "volume": "float64"})
    frame["ts"] = pd.to_datetime(frame.pop("timestamp"), unit="ms", utc=True)
    frame = frame.drop_duplicates("ts", keep="last").sort_values("ts", kind="stable").reset_index(drop=True)
    return frame[["ts", "open", "high", "low", "close", "volume"]]


def _is_btc_reference(recording: Recording) -> bool:
    base, quote = recording.symbol.split("-")
    return base == "BTC" and quote in ("USD", "USDT", "USDC") and timeframe_seconds(recording.timeframe) <= 3600


def _btc_frames(series: list[tuple[Recording, pd.DataFrame]]) -> pd.DataFrame:
    """BTC against a dollar quote, for the regime features (empty when there is none)."""
    frames = [candles for recording, candles in series if _is_btc_reference(recording)]
    if not frames:
        return pd.DataFrame(columns=["ts", "open", "high", "low", "close", "volume"])
    return pd.concat(frames).drop_duplicates("ts").sort_values("ts").reset_index(drop=True)


def evaluate_series(name: str, section: StrategyConfig, candles: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """Indicators and the strategy's decisions over a whole series (the scan's computation, all rows at once)."""
    frame = indicators.compute(candles.assign(symbol=symbol)[list(indicators.CANDLE_COLUMNS)], section.indicators)
    return frame.join(strategies.STRATEGIES[name](frame, section.params))


def series_events(name: str, section: StrategyConfig, candles: pd.DataFrame, recording: Recording,
                  btc: pd.DataFrame, costs: CostParams) -> pd.DataFrame:
    """Features and labels of every entry of strategy `name` on one pair-window (labelled entries only)."""
    tf_s = timeframe_seconds(section.timeframe)
    evaluated = evaluate_series(name, section, candles, recording.symbol)
    decided = evaluated["ts"] + pd.Timedelta(seconds=tf_s)
    entries = evaluated[evaluated["entry"].to_numpy(dtype=bool)]
    if entries.empty:
        return pd.DataFrame()
    feats = ml_features.build(name, evaluated, section.params,
                              ml_features.regime_series(btc, decided), tf_s).loc[entries.index]
    labels = label_entries(candles, entries, tf_s, costs)
    if labels.empty:
        return pd.DataFrame()
    feats = feats.loc[labels.index]
    limit = entries.loc[labels.index, "time_limit_s"].to_numpy(dtype=np.float64)
    meta = pd.DataFrame({
        "strategy": name, "exchange": recording.exchange, "symbol": recording.symbol, "window": recording.window,
        "decided_at": decided.loc[labels.index],
        "horizon_end": decided.loc[labels.index] + pd.to_timedelta(limit, unit="s"),
    }, index=labels.index)
    return pd.concat([meta, feats, labels], axis=1)


def _for_strategy(series: list[tuple[Recording, pd.DataFrame]],
                  section: StrategyConfig) -> Iterator[tuple[Recording, pd.DataFrame]]:
    """Each series at the strategy's timeframe (resampled from a finer one that divides it; coarser skipped)."""
    target = timeframe_seconds(section.timeframe)
    for recording, candles in series:
        base = timeframe_seconds(recording.timeframe)
        if base > target or target % base:
            continue
        if base < target:
            candles = resample(candles, recording.timeframe, section.timeframe)
        if len(candles) >= 60:
            yield recording, candles


def events_from_series(series: list[tuple[Recording, pd.DataFrame]], btc: pd.DataFrame, config: StrategiesConfig,
                       costs: CostParams, *, only: str | None = None,
                       progress: Callable[[str, int], None] | None = None) -> tuple[pd.DataFrame, int]:
    """Every labelled entry of every strategy (or `only` one) over `series` (one pair-window each, candles
    sorted by open time); and the number of candles evaluated. Runs a strategy even when its section is
    disabled in the config: training may prepare a model for it."""
    parts: list[pd.DataFrame] = []
    evaluated_candles = 0
    for name, section in config.items():
        if only is not None and name != only:
            continue
        for recording, candles in _for_strategy(series, section):
            evaluated_candles += len(candles)
            part = series_events(name, section, candles, recording, btc, costs)
            if not part.empty:
                parts.append(part)
            if progress is not None:
                progress(name, len(candles))
    if not parts:
        return pd.DataFrame(columns=[*EVENT_COLUMNS, *ml_features.FEATURES]), evaluated_candles
    events = pd.concat(parts, ignore_index=True).sort_values(["decided_at", "symbol"], kind="stable")
    return events.reset_index(drop=True), evaluated_candles


def build_events(folder: Path, config: StrategiesConfig, costs: CostParams, *, only: str | None = None,
                 progress: Callable[[str, int], None] | None = None) -> tuple[pd.DataFrame, int]:
    """`events_from_series` over every recorded file of `folder` (each file read once)."""
    found = recordings(folder)
    series = [(r, load_candles(r.path)) for r in found]
    return events_from_series(series, _btc_frames(series), config, costs, only=only, progress=progress)


def series_from_store(conn: Any, since: pd.Timestamp | None = None) -> tuple[list[tuple[Recording, pd.DataFrame]],
                                                                             pd.DataFrame]:
    """The candles the scan stored (table `candles`), one series per exchange, symbol and timeframe, and the
    BTC reference among them: what the retrainer learns from when no folder is configured."""
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
    return series, _btc_frames([(r, c) for r, c in series])
