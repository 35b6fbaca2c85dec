"""Indicators over a long multi-symbol frame: TA-Lib's values, pandas-ta's defaults, no look-ahead."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import talib

from controller.scan.indicators import CANDLE_COLUMNS, INDICATOR_COLUMNS, compute
from controller.scan.strategy_params import IndicatorParams
from tests.support.recorded import load_recorded

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # from pandas-ta's own code

TIGHT = {"rtol": 1e-9, "atol": 0.0, "equal_nan": True}


@pytest.fixture(scope="module", params=["5m", "1m"])
def candles(request: pytest.FixtureRequest) -> pd.DataFrame:
    return load_recorded(request.param)


@pytest.fixture(scope="module")
def computed(candles: pd.DataFrame) -> pd.DataFrame:
    return compute(candles)


def by_symbol(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return list(frame.groupby("symbol", sort=False))


def test_indicator_columns_are_added_as_float64_to_the_same_rows(candles: pd.DataFrame, computed: pd.DataFrame) -> None:
    assert list(computed.columns) == [*CANDLE_COLUMNS, *INDICATOR_COLUMNS]
    assert computed.index.equals(candles.index)
    pd.testing.assert_frame_equal(computed[list(CANDLE_COLUMNS)], candles)
    assert all(computed[c].dtype == np.float64 for c in INDICATOR_COLUMNS)
    assert computed["symbol"].nunique() >= 2


def test_values_equal_talib_per_symbol_on_recorded_candles(candles: pd.DataFrame, computed: pd.DataFrame) -> None:
    p = IndicatorParams()
    for symbol, rows in by_symbol(candles):
        ours = computed.loc[rows.index]
        h, lo, c, v = (rows[k].to_numpy() for k in ("high", "low", "close", "volume"))
        macd, signal, hist = talib.MACD(c, p.macd_fast, p.macd_slow, p.macd_signal)
        upper, mid, lower = talib.BBANDS(c, p.bb_length, p.bb_std, p.bb_std, 0)
        expected = {
            "rsi": talib.RSI(c, p.rsi_length), "macd": macd, "macd_signal": signal, "macd_hist": hist,
            "bb_lower": lower, "bb_mid": mid, "bb_upper": upper, "bb_width": (upper - lower) / mid,
            "atr": talib.ATR(h, lo, c, p.atr_length), "adx": talib.ADX(h, lo, c, p.adx_length),
            "roc": talib.ROC(c, p.roc_length), "obv": talib.OBV(c, v), "sma_20": talib.SMA(c, p.sma_short),
            "sma_50": talib.SMA(c, p.sma_long), "ema_fast": talib.EMA(c, p.ema_fast),
            "ema_slow": talib.EMA(c, p.ema_slow), "volume_sma": talib.SMA(v, p.volume_sma_length),
        }
        for name, values in expected.items():
            np.testing.assert_allclose(ours[name].to_numpy(), values, **TIGHT, err_msg=f"{symbol} {name}")
        assert np.isfinite(ours[list(expected)].iloc[-1]).all(), symbol


def test_values_equal_pandas_ta_defaults_per_symbol(candles: pd.DataFrame, computed: pd.DataFrame) -> None:
    import pandas_ta as ta  # noqa: F401  (registers the DataFrame.ta accessor)

    for symbol, rows in by_symbol(candles):
        df = rows.set_index("ts")
        macd = df.ta.macd(fast=12, slow=26, signal=9)
        bands = df.ta.bbands(length=20, lower_std=2.0, upper_std=2.0)
        expected = {
            "rsi": df.ta.rsi(length=14), "macd": macd["MACD_12_26_9"], "macd_signal": macd["MACDs_12_26_9"],
            "macd_hist": macd["MACDh_12_26_9"], "bb_lower": bands["BBL_20_2.0_2.0"],
            "bb_mid": bands["BBM_20_2.0_2.0"], "bb_upper": bands["BBU_20_2.0_2.0"],
            "bb_width": bands["BBB_20_2.0_2.0"] / 100,  # pandas-ta's bandwidth is in percent
            "atr": df.ta.atr(length=14), "adx": df.ta.adx(length=14)["ADX_14"], "roc": df.ta.roc(length=10),
            "obv": df.ta.obv(), "vwap": df.ta.vwap(anchor="D"), "sma_20": df.ta.sma(length=20),
            "sma_50": df.ta.sma(length=50), "ema_fast": df.ta.ema(length=9), "ema_slow": df.ta.ema(length=21),
            "volume_sma": df.ta.sma(close="volume", length=20),
        }
        ours = computed.loc[rows.index]
        for name, series in expected.items():
            np.testing.assert_allclose(ours[name].to_numpy(), series.to_numpy(dtype=np.float64), **TIGHT,
                                       err_msg=f"{symbol} {name}")


@pytest.mark.parametrize("anchor", ["W", "M"])  # pandas-ta upper-cases the anchor: "H" is no pandas 3 alias
def test_vwap_matches_pandas_ta_for_other_anchors(anchor: str) -> None:
    import pandas_ta as ta

    candles = load_recorded("5m")
    ours = compute(candles, IndicatorParams(vwap_anchor=anchor))
    for _symbol, rows in by_symbol(candles):
        df = rows.set_index("ts")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = ta.vwap(df["high"], df["low"], df["close"], df["volume"], anchor=anchor)
        np.testing.assert_allclose(ours.loc[rows.index, "vwap"].to_numpy(), expected.to_numpy(), **TIGHT)


@pytest.mark.parametrize("anchor", ["D", "h"])
def test_vwap_restarts_each_utc_period_from_the_typical_price(candles: pd.DataFrame, anchor: str) -> None:
    computed = compute(candles, IndicatorParams(vwap_anchor=anchor))
    period = computed["ts"].dt.floor(anchor)
    segment = ((computed["symbol"] != computed["symbol"].shift()) | (period != period.shift())).cumsum()
    typical = (computed["high"] + computed["low"] + computed["close"]) / 3
    sums = (typical * computed["volume"]).groupby(segment).cumsum() / computed["volume"].groupby(segment).cumsum()
    assert segment.iloc[-1] > computed["symbol"].nunique()  # the data spans several periods
    np.testing.assert_allclose(computed["vwap"], sums, **TIGHT)


def test_custom_periods_are_used(candles: pd.DataFrame) -> None:
    params = IndicatorParams(rsi_length=7, bb_length=30, bb_std=2.5, sma_short=10, sma_long=30, ema_fast=5,
                             ema_slow=13, volume_sma_length=10)
    ours = compute(candles, params)
    _symbol, rows = by_symbol(candles)[0]
    c, v = rows["close"].to_numpy(), rows["volume"].to_numpy()
    upper, _mid, _lower = talib.BBANDS(c, 30, 2.5, 2.5, 0)
    mine = ours.loc[rows.index]
    np.testing.assert_allclose(mine["rsi"], talib.RSI(c, 7), **TIGHT)
    np.testing.assert_allclose(mine["bb_upper"], upper, **TIGHT)
    np.testing.assert_allclose(mine["sma_20"], talib.SMA(c, 10), **TIGHT)
    np.testing.assert_allclose(mine["sma_50"], talib.SMA(c, 30), **TIGHT)
    np.testing.assert_allclose(mine["ema_slow"], talib.EMA(c, 13), **TIGHT)
    np.testing.assert_allclose(mine["volume_sma"], talib.SMA(v, 10), **TIGHT)


def test_changing_future_candles_changes_no_past_value(candles: pd.DataFrame, computed: pd.DataFrame) -> None:
    cutoff = candles["ts"].quantile(0.6)
    future = candles["ts"] > cutoff
    altered = candles.copy()
    rng = np.random.default_rng(7)
    factor = rng.uniform(0.5, 1.5, future.sum())
    for column in ("open", "high", "low", "close"):
        altered.loc[future, column] = altered.loc[future, column] * factor
    altered.loc[future, "volume"] = altered.loc[future, "volume"] * rng.uniform(0, 3, future.sum())
    truncated = candles[~future].reset_index(drop=True)
    past = computed[~future].reset_index(drop=True)
    pd.testing.assert_frame_equal(compute(altered)[~future].reset_index(drop=True), past)
    pd.testing.assert_frame_equal(compute(truncated), past)


def test_a_symbol_computed_alone_equals_it_within_the_universe(candles: pd.DataFrame, computed: pd.DataFrame) -> None:
    for _symbol, rows in by_symbol(candles):
        alone = compute(rows.reset_index(drop=True))
        pd.testing.assert_frame_equal(alone, computed.loc[rows.index].reset_index(drop=True))


def test_a_short_history_gives_nan_until_warm_up_not_an_error() -> None:
    candles = load_recorded("5m")
    short = candles.groupby("symbol").head(3).reset_index(drop=True)
    out = compute(short)
    assert out[list(INDICATOR_COLUMNS)].drop(columns=["obv", "vwap"]).isna().all().all()
    assert out["obv"].notna().all() and out["vwap"].notna().all()
    empty = compute(candles.iloc[:0])
    assert list(empty.columns) == [*CANDLE_COLUMNS, *INDICATOR_COLUMNS] and empty.empty


def test_candles_not_grouped_by_symbol_are_refused() -> None:
    candles = load_recorded("5m")
    interleaved = candles.sort_values(["ts", "symbol"], ignore_index=True)
    with pytest.raises(ValueError, match="a symbol's rows are not contiguous"):
        compute(interleaved)


def test_candles_out_of_time_order_are_refused() -> None:
    candles = load_recorded("5m")
    reversed_first = pd.concat([candles.iloc[:10].iloc[::-1], candles.iloc[10:]])
    with pytest.raises(ValueError, match="ts does not increase within a symbol"):
        compute(reversed_first)


def test_missing_candle_columns_are_named() -> None:
    with pytest.raises(ValueError, match="candles lack columns: volume"):
        compute(load_recorded("5m").drop(columns=["volume"]))


def test_naive_timestamps_are_refused() -> None:
    candles = load_recorded("5m")
    candles["ts"] = candles["ts"].dt.tz_localize(None)
    with pytest.raises(ValueError, match=r"candles\.ts must be tz-aware UTC timestamps"):
        compute(candles)
