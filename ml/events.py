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


def _btc_reference(found: list[Recording]) -> pd.DataFrame:
    """BTC against a dollar quote from the folder, for the regime features (empty when there is none)."""
    frames = [load_candles(r.path) for r in found if r.symbol.split("-")[0] == "BTC"
              and r.symbol.split("-")[1] in ("USD", "USDT", "USDC") and timeframe_seconds(r.timeframe) <= 3600]
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


def _series(found: list[Recording], name: str, section: StrategyConfig,
            cache: dict[Path, pd.DataFrame]) -> Iterator[tuple[Recording, pd.DataFrame]]:
    target = timeframe_seconds(section.timeframe)
    for recording in found:
        base = timeframe_seconds(recording.timeframe)
        if base > target or target % base:
            continue
        if recording.path not in cache:
            cache[recording.path] = load_candles(recording.path)
        candles = cache[recording.path]
        if base < target:
            candles = resample(candles, recording.timeframe, section.timeframe)
        if len(candles) >= 60:
            yield recording, candles


def build_events(folder: Path, config: StrategiesConfig, costs: CostParams, *, only: str | None = None,
                 progress: Callable[[str, int], None] | None = None) -> tuple[pd.DataFrame, int]:
    """Every labelled entry of every strategy (or `only` one) over the folder; and the candles evaluated.

    Runs a strategy even when its section is disabled in the config: training may prepare a model for it."""
    found = recordings(folder)
    btc = _btc_reference(found)
    parts: list[pd.DataFrame] = []
    evaluated_candles = 0
    cache: dict[Path, pd.DataFrame] = {}
    for name, section in config.items():
        if only is not None and name != only:
            continue
        for recording, candles in _series(found, name, section, cache):
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
