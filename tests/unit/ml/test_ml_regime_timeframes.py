"""The BTC regime reading from mixed timeframes: a candle counts only once its own timeframe has closed.

The retrainer reads every timeframe the scan stored, so 5m and 1h BTC candles arrive together. Each reference
keeps its own candle length: a 1h candle that opened at 12:00 is unknown at 12:05, whatever the 5m candles'
spacing is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.events import Recording, _btc_frames
from ml.features import REGIME_FEATURES, regime_series


def _btc(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two days of 5m BTC candles (a random walk) and the 1h candles made from them."""
    rng = np.random.default_rng(seed)
    n = 2 * 288
    ts = pd.date_range("2024-03-01", periods=n, freq="5min", tz="UTC")
    close = 60000 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    five = pd.DataFrame({"ts": ts, "open": np.concatenate(([close[0]], close[:-1])), "high": close * 1.001,
                         "low": close * 0.999, "close": close, "volume": 1.0})
    hour = five.set_index("ts").resample("1h").agg({"open": "first", "high": "max", "low": "min", "close": "last",
                                                   "volume": "sum"}).reset_index()
    return five, hour


def _mixed(five: pd.DataFrame, hour: pd.DataFrame, hour_first: bool = True) -> pd.DataFrame:
    """As a folder (sorted by file name) and the store (by timeframe) list them: "1h" sorts before "5m"."""
    series = [(Recording("binance", "BTC-USDT", "1h", Path("binance_BTC-USDT_1h.csv")), hour),
              (Recording("binance", "BTC-USDT", "5m", Path("binance_BTC-USDT_5m.csv")), five)]
    return _btc_frames(series if hour_first else series[::-1])


@pytest.mark.parametrize("hour_first", [True, False])
def test_a_reading_inside_an_hour_cannot_see_that_hours_candle(hour_first: bool) -> None:
    five, hour = _btc()
    at = pd.Series(pd.date_range("2024-03-02 06:05", "2024-03-02 18:55", freq="5min", tz="UTC"))
    at = at[at.dt.minute != 0].reset_index(drop=True)  # decisions while an hour candle is still open
    before = regime_series(_mixed(five, hour, hour_first), at)
    # the hour candles' closes move (as the future would); the readings at those times must not
    changed = hour.copy()
    changed["close"] *= np.where(np.arange(len(changed)) % 2 == 0, 1.05, 0.95)
    changed["high"] = changed[["high", "close"]].max(axis=1)
    changed["low"] = changed[["low", "close"]].min(axis=1)
    after = regime_series(_mixed(five, changed, hour_first), at)
    for key in REGIME_FEATURES:
        assert np.isfinite(before[key]).all(), key
        np.testing.assert_array_equal(before[key], after[key], err_msg=key)


def test_the_mixed_reading_is_the_finest_references_reading() -> None:
    five, hour = _btc(1)
    at = pd.Series(pd.date_range("2024-03-02 06:00", "2024-03-02 18:00", freq="5min", tz="UTC"))
    mixed = regime_series(_mixed(five, hour), at)
    alone = regime_series(_btc_frames([(Recording("binance", "BTC-USDT", "5m", Path("a.csv")), five)]), at)
    for key in ("btc_change_1h_pct", "btc_change_4h_pct", "btc_change_24h_pct"):
        np.testing.assert_allclose(mixed[key], alone[key], rtol=1e-12, err_msg=key)


def test_an_hourly_reference_alone_counts_each_candle_an_hour_after_it_opened() -> None:
    _five, hour = _btc(2)
    only_hour = _btc_frames([(Recording("binance", "BTC-USDT", "1h", Path("h.csv")), hour)])
    at = pd.Series(pd.to_datetime(["2024-03-02 12:00", "2024-03-02 12:55"], utc=True))
    got = regime_series(only_hour, at)["btc_change_1h_pct"]
    closes = hour.set_index("ts")["close"]
    # at 12:00 and 12:55 the newest closed hour candle is the one that opened at 11:00
    expected = (closes[pd.Timestamp("2024-03-02 11:00", tz="UTC")] / closes[pd.Timestamp("2024-03-02 10:00",
                                                                                          tz="UTC")] - 1) * 100
    np.testing.assert_allclose(got, [expected, expected], rtol=1e-12)
