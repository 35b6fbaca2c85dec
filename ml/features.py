"""The model's inputs, from the scan's own evaluated frame: one function for training and for live scoring.

`build(name, evaluated, params, regime)` takes what the scan computed for strategy `name` (the indicator
frame of `controller.scan.indicators.compute` joined with the strategy's decision columns), the strategy's
parameters and the BTC regime reading per row, and returns one row of `FEATURES` per input row. Every value
at a row reads only that symbol's rows at or before it (the indicators are causal, the windows trail), so
the features at decision time t cannot see a candle after t.

The scan log's raw columns (`strategies.FEATURES`) are prices in each pair's own quote currency; the model
gets scale-free ratios instead, so one model serves ETH-BTC and SOL-USDT alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from controller.scan.indicators import symbol_blocks
from controller.scan.strategy_params import ChannelParams, DcaParams, SwingParams, TieredParams

REGIME_FEATURES = ("btc_change_1h_pct", "btc_change_4h_pct", "btc_change_24h_pct", "btc_volatility_24h_pct")
FEATURES: tuple[str, ...] = (
    "rule_confidence", "threshold_distance",
    "rsi", "macd_hist_rel", "bb_position", "bb_width", "atr_rel", "adx", "roc", "volume_ratio",
    "close_vs_sma20", "sma20_vs_sma50", "ema_spread", "close_vs_vwap",
    *REGIME_FEATURES,
    "hour_sin", "hour_cos", "dow_sin", "dow_cos",
)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a / b
    return np.where(np.isfinite(out), out, np.nan)


def _rolling_max(values: np.ndarray, window: int, ends: np.ndarray | None = None) -> np.ndarray:
    """Trailing max over `window` rows of one symbol, NaN until the window is full (or holds a NaN): at every
    row, or, with `ends`, only at those positions (a gather of `window` values each: cheaper than a rolling
    pass when a few rows are wanted; the same values)."""
    if ends is None:
        return pd.Series(values).rolling(window, min_periods=window).max().to_numpy()
    full = ends >= window - 1
    picks = np.maximum(ends[:, None] - np.arange(window)[None, :], 0)
    return np.where(full, values[picks].max(axis=1) if len(ends) else np.empty(0), np.nan)


def _threshold_distance(name: str, frame: pd.DataFrame, params: Any, rows: np.ndarray | None = None) -> np.ndarray:
    """How far the deciding quantity is past (positive) or short of (negative) its entry threshold, at every
    row (or only at `rows`, the others left NaN).

    DCA: drop from the recent high minus `min_drop_pct` (percent points). CHANNEL: `buy_zone` minus the
    channel position. SWING: close / previous high minus `breakout_factor`. The same definitions as the rules
    in `controller.scan.strategies`, recomputed here because the rules return only their verdict."""
    n = len(frame)
    out = np.full(n, np.nan)
    bounds = symbol_blocks(frame)
    close = frame["close"].to_numpy(dtype=np.float64)
    high = frame["high"].to_numpy(dtype=np.float64)
    symbols = frame["symbol"].to_numpy()
    wanted = None if rows is None else np.unique(rows)
    lower = upper = None
    for start, stop in itertools.pairwise(bounds):
        p = params.for_symbol(str(symbols[start])) if isinstance(params, TieredParams) else params
        if wanted is None:
            at, sel = np.arange(start, stop), None
        else:
            at = wanted[np.searchsorted(wanted, start):np.searchsorted(wanted, stop)]
            if not len(at):
                continue
            sel = at - start
        c, h = close[start:stop], high[start:stop]
        c_at = c if sel is None else c[sel]
        if isinstance(p, DcaParams):
            drop = (1.0 - _ratio(c_at, _rolling_max(h, p.lookback_bars, sel))) * 100.0
            out[at] = drop - p.min_drop_pct
        elif isinstance(p, ChannelParams):
            if lower is None:
                lower = frame["bb_lower"].to_numpy(dtype=np.float64)
                upper = frame["bb_upper"].to_numpy(dtype=np.float64)
            out[at] = p.buy_zone - _ratio(close[at] - lower[at], upper[at] - lower[at])
        elif isinstance(p, SwingParams):
            if sel is None:
                previous = np.concatenate(([np.nan], _rolling_max(h, p.lookback_bars)[:-1]))
            else:
                previous = _rolling_max(h, p.lookback_bars, sel - 1)  # row -1: the window is not full
            out[at] = _ratio(c_at, previous) - p.breakout_factor
        else:
            raise ValueError(f"no threshold distance defined for strategy {name!r} ({type(p).__name__})")
    return out


def regime_columns(reading: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """The regime reading of a live cycle (`RegimeReading.features()`) as columns for `n` rows."""
    return {k: np.full(n, np.nan if reading.get(k) is None else float(reading[k])) for k in REGIME_FEATURES}


def regime_series(btc: pd.DataFrame, at: pd.Series) -> dict[str, np.ndarray]:
    """The regime reading at each time of `at` from BTC candles (ts = open time, as recorded), vectorised.

    Same definitions as `controller.scan.regime.classify`: percent change from the last close at or before
    t - h to the last close at or before t, and the 24 h high-low range of the candles closed in (t - 24 h, t].
    Only candles that closed by t are used: a candle's close time is its `closed` column (what
    `ml.events._btc_frames` gives, each reference with its own timeframe), or, for one series without it,
    open time + the series' candle length."""
    n = len(at)
    if btc is None or btc.empty or n == 0:
        return {k: np.full(n, np.nan) for k in REGIME_FEATURES}
    if "closed" not in btc.columns:
        step = btc["ts"].diff().dropna().min() if len(btc) > 1 else pd.Timedelta(hours=1)
        btc = btc.assign(closed=btc["ts"] + step)
    btc = btc.sort_values("closed", kind="stable")
    closed_at = pd.to_datetime(btc["closed"], utc=True)
    closed = closed_at.to_numpy(dtype="datetime64[s]").view(np.int64)
    close = btc["close"].to_numpy(dtype=np.float64)
    t = at.to_numpy(dtype="datetime64[s]").view(np.int64)
    last = np.searchsorted(closed, t, side="right") - 1
    fresh = (last >= 0) & (t - closed[np.maximum(last, 0)] <= 2 * 3600)
    now_close = np.where(fresh, close[np.maximum(last, 0)], np.nan)
    out: dict[str, np.ndarray] = {}
    for key, hours in (("btc_change_1h_pct", 1), ("btc_change_4h_pct", 4), ("btc_change_24h_pct", 24)):
        past = np.searchsorted(closed, t - hours * 3600, side="right") - 1
        out[key] = np.where(fresh & (past >= 0), (now_close / close[np.maximum(past, 0)] - 1) * 100, np.nan)
    # 24 h range: max high / min low of the candles that closed in the day ending at `last`'s close
    index = pd.DatetimeIndex(closed_at.to_numpy())
    hi = pd.Series(btc["high"].to_numpy(dtype=np.float64), index=index).rolling("24h").max().to_numpy()
    lo = pd.Series(btc["low"].to_numpy(dtype=np.float64), index=index).rolling("24h").min().to_numpy()
    idx = np.maximum(last, 0)
    out["btc_volatility_24h_pct"] = np.where(fresh, (hi[idx] - lo[idx]) / now_close * 100, np.nan)
    return out


def build(name: str, evaluated: pd.DataFrame, params: Any, regime: Mapping[str, np.ndarray],
          timeframe_s: int, rows: np.ndarray | None = None) -> pd.DataFrame:
    """One row of `FEATURES` per row of `evaluated` (same index), for strategy `name`; with `rows` (positions),
    for those rows only: the same values, without computing and framing every candle (a scan cycle scores its
    latest entries, event building its entries: a few of the rows).

    `evaluated`: indicators + decision columns, sorted by symbol then ts (as the scan builds it). `regime`:
    `REGIME_FEATURES` columns aligned with the rows (`regime_columns` live, `regime_series` in replay).
    The decision time of a row is its candle's close (ts + timeframe)."""
    def take(values: np.ndarray) -> np.ndarray:
        return values if rows is None else values[rows]

    f = {c: take(evaluated[c].to_numpy(dtype=np.float64)) for c in (
        "close", "rsi", "macd_hist", "bb_lower", "bb_upper", "bb_width", "atr", "adx", "roc", "volume",
        "volume_sma", "sma_20", "sma_50", "ema_fast", "ema_slow", "vwap")}
    close = f["close"]
    # decision time in UTC seconds; day 0 (1970-01-01) was a Thursday, day_of_week 3 (Monday = 0)
    decided_s = take(evaluated["ts"].to_numpy(dtype="datetime64[s]").view(np.int64)) + timeframe_s
    hour = (decided_s % 86400 // 60) / 60.0  # whole minutes, as hour + minute / 60
    dow = ((decided_s // 86400 + 3) % 7).astype(np.float64)
    columns: dict[str, np.ndarray] = {
        "rule_confidence": take(evaluated["confidence"].to_numpy(dtype=np.float64)),
        "threshold_distance": take(_threshold_distance(name, evaluated, params, rows)),
        "rsi": f["rsi"],
        "macd_hist_rel": _ratio(f["macd_hist"], close),
        "bb_position": _ratio(close - f["bb_lower"], f["bb_upper"] - f["bb_lower"]),
        "bb_width": f["bb_width"],
        "atr_rel": _ratio(f["atr"], close),
        "adx": f["adx"],
        "roc": f["roc"],
        "volume_ratio": _ratio(f["volume"], f["volume_sma"]),
        "close_vs_sma20": _ratio(close, f["sma_20"]) - 1.0,
        "sma20_vs_sma50": _ratio(f["sma_20"], f["sma_50"]) - 1.0,
        "ema_spread": _ratio(f["ema_fast"], f["ema_slow"]) - 1.0,
        "close_vs_vwap": _ratio(close, f["vwap"]) - 1.0,
        **{k: take(np.asarray(regime[k], dtype=np.float64)) for k in REGIME_FEATURES},
        "hour_sin": np.sin(2 * np.pi * hour / 24), "hour_cos": np.cos(2 * np.pi * hour / 24),
        "dow_sin": np.sin(2 * np.pi * dow / 7), "dow_cos": np.cos(2 * np.pi * dow / 7),
    }
    index = evaluated.index if rows is None else evaluated.index[rows]
    return pd.DataFrame({k: columns[k] for k in FEATURES}, index=index)
