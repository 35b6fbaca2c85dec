"""ML features read nothing after decision time; labels follow the executor's exit rule, net of costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bridge import exits
from bridge import path as path_model
from controller.data.market_data import ohlcv_dir
from controller.scan.indicators import compute
from controller.scan.strategies import STRATEGIES
from controller.scan.strategy_params import load_strategies
from ml import features as ml_features
from ml.config import CostParams
from ml.labels import label_entries, net_return_pct
from tests.support.recorded import load_recorded, loose

NO_COSTS = CostParams(fee_pct=0.0, slippage_pct=0.0)


def _features(name: str, candles: pd.DataFrame) -> pd.DataFrame:
    section = dict(load_strategies().items())[name]
    frame = compute(candles, section.indicators)
    evaluated = frame.join(STRATEGIES[name](frame, loose(name)))
    decided = evaluated["ts"] + pd.Timedelta(minutes=5)
    btc = candles[candles["symbol"] == candles["symbol"].iloc[0]]  # any series stands in for BTC here
    return ml_features.build(name, evaluated, loose(name), ml_features.regime_series(btc, decided), 300)


@pytest.mark.parametrize("name", ["dca", "swing", "channel"])
def test_features_at_t_ignore_every_candle_after_t(name: str) -> None:
    candles = load_recorded("5m")
    candles = candles[candles["symbol"] == "ETH-BTC"].head(800).reset_index(drop=True)
    t = 600
    before = _features(name, candles)

    changed = candles.copy()
    rng = np.random.default_rng(7)
    later = changed.index > t
    factor = rng.uniform(0.5, 1.5, later.sum())
    for column in ("open", "high", "low", "close"):
        changed.loc[later, column] *= factor
    changed.loc[later, "volume"] *= rng.uniform(0.1, 10, later.sum())
    after = _features(name, changed)

    pd.testing.assert_series_equal(before.loc[t], after.loc[t])
    assert list(before.columns) == list(ml_features.FEATURES)
    # the change did reach the later rows, so the comparison above could have failed
    assert not np.allclose(before.loc[t + 50:].to_numpy(dtype=float), after.loc[t + 50:].to_numpy(dtype=float),
                           equal_nan=True)


@pytest.mark.parametrize("name", ["dca", "swing", "channel"])
def test_features_of_some_rows_equal_those_rows_of_all_features(name: str) -> None:
    candles = load_recorded("5m")
    section = dict(load_strategies().items())[name]
    evaluated = compute(candles, section.indicators)
    evaluated = evaluated.join(STRATEGIES[name](evaluated, loose(name)))
    regime = ml_features.regime_series(candles, evaluated["ts"] + pd.Timedelta(minutes=5))
    every = ml_features.build(name, evaluated, loose(name), regime, 300)
    rows = np.flatnonzero(np.arange(len(evaluated)) % 7 == 3)  # rows of every symbol, as event building takes
    some = ml_features.build(name, evaluated, loose(name), regime, 300, rows=rows)
    pd.testing.assert_frame_equal(some, every.iloc[rows])
    assert some["threshold_distance"].notna().sum() > len(rows) // 2  # the trailing windows were really read


def test_reading_many_recordings_at_once_gives_each_file_as_read_alone(tmp_path) -> None:
    from ml.events import load_candles, load_many

    paths = sorted(ohlcv_dir().glob("*.csv"))[:3]
    if len(paths) < 3:
        pytest.skip("fewer than three recorded files")
    odd = tmp_path / "x_ETH-BTC_5m.csv"  # unsorted, duplicated, columns in another order: read alone
    odd.write_text("open,timestamp,high,low,close,volume\n1,3000,1,1,1,1\n2,1000,2,2,2,2\n3,3000,3,3,3,3\n")
    unsorted = tmp_path / "y_ETH-BTC_5m.csv"  # the expected header, rows out of order: repaired alone
    unsorted.write_text("timestamp,open,high,low,close,volume\n2000,1,1,1,1,1\n1000,2,2,2,2,2\n")
    files = [paths[0], odd, paths[1], unsorted, paths[2]]
    many = load_many(files)
    assert len(many) == len(files)
    for path, frame in zip(files, many, strict=True):
        pd.testing.assert_frame_equal(frame, load_candles(path))
    assert many[1]["close"].tolist() == [2.0, 3.0]  # the duplicate kept its last row, sorted
    blank = tmp_path / "z_ETH-BTC_5m.csv"  # a blank line inside: every file read alone, same frames
    blank.write_text("timestamp,open,high,low,close,volume\n1000,1,1,1,1,1\n\n2000,2,2,2,2,2\n")
    for path, frame in zip([paths[0], blank], load_many([paths[0], blank]), strict=True):
        pd.testing.assert_frame_equal(frame, load_candles(path))


def _candles(rows: list[tuple[float, float, float]], start: str = "2024-01-01", step_s: int = 300) -> pd.DataFrame:
    """(high, low, close) per candle; the first row is the decision candle."""
    ts = pd.date_range(start, periods=len(rows), freq=f"{step_s}s", tz="UTC")
    high, low, close = zip(*rows, strict=True)
    return pd.DataFrame({"ts": ts, "open": close, "high": high, "low": low, "close": close, "volume": 1.0})


def _entry(candles: pd.DataFrame, *, tp: float = 3.0, sl: float = 5.0, limit_s: float = 3600.0,
           act: float = np.nan, delta: float = np.nan) -> pd.DataFrame:
    return pd.DataFrame({"ts": [candles["ts"].iloc[0]], "take_profit_pct": [tp], "stop_loss_pct": [sl],
                         "time_limit_s": [limit_s], "trailing_activation_pct": [act], "trailing_delta_pct": [delta]})


def test_a_candle_touching_both_barriers_as_far_from_its_open_is_a_stop() -> None:
    """The path visits the extreme nearer the open first; at equal distance the low (the pessimistic order)."""
    candles = _candles([(100, 100, 100), (110, 90, 100)])
    [row] = label_entries(candles, _entry(candles), 300, NO_COSTS).itertuples()
    assert row.exit_reason == "stop_loss" and row.label == 0
    assert row.net_return_pct == pytest.approx(-5.0)


def test_a_take_profit_wins_without_costs_and_loses_after_fees_and_slippage() -> None:
    candles = _candles([(100, 100, 100), (100.6, 99.9, 100.5)])
    entry = _entry(candles, tp=0.5)
    [clean] = label_entries(candles, entry, 300, NO_COSTS).itertuples()
    [costly] = label_entries(candles, entry, 300, CostParams(fee_pct=0.3, slippage_pct=0.25)).itertuples()
    assert clean.exit_reason == costly.exit_reason == "take_profit"
    assert clean.label == 1 and clean.net_return_pct == pytest.approx(0.5)
    assert costly.label == 0 and costly.net_return_pct < 0
    assert costly.net_return_pct == pytest.approx(net_return_pct(100, 100.5, CostParams(fee_pct=0.3,
                                                                                          slippage_pct=0.25)))


def test_an_entry_whose_horizon_is_not_complete_gets_no_label() -> None:
    candles = _candles([(100, 100, 100), (101, 99, 100), (101, 99, 100)])  # 10 min of a 1 h limit
    labels = label_entries(candles, _entry(candles), 300, NO_COSTS)
    assert labels.empty


def test_the_time_limit_closes_at_the_close_and_labels_are_integers() -> None:
    rows = [(100, 100, 100)] + [(101, 99, 100.2)] * 11 + [(101, 99, 100.4)]
    candles = _candles(rows)
    labels = label_entries(candles, _entry(candles), 300, NO_COSTS)
    [row] = labels.itertuples()
    assert row.exit_reason == "time_limit" and row.held_s == 3600
    assert row.net_return_pct == pytest.approx(0.4) and row.label == 1
    assert labels["label"].dtype == np.int64


def test_a_trailing_stop_follows_the_peak() -> None:
    candles = _candles([(100, 100, 100), (102.5, 101.6, 102), (102.6, 101.5, 101.5)])
    [row] = label_entries(candles, _entry(candles, tp=10, act=2.0, delta=1.0), 300, NO_COSTS).itertuples()
    assert row.exit_reason == "trailing_stop"
    assert row.net_return_pct == pytest.approx((102.6 * 0.99 / 100 - 1) * 100)


def test_labels_equal_the_executor_rule_walked_entry_by_entry_on_recorded_candles() -> None:
    """The vectorised labels against `bridge.exits.walk_candles` (the rule the executor applies, on the market
    path of the same candles), entry by entry, on
    a recorded series with every third candle an entry and barriers drawn at random (some missing)."""
    candles = load_recorded("5m")
    candles = candles[candles["symbol"] == "ETH-BTC"].head(1500).reset_index(drop=True)
    rng = np.random.default_rng(11)
    rows = np.arange(0, len(candles), 3)
    entries = pd.DataFrame({
        "ts": candles["ts"].iloc[rows].to_numpy(),
        "take_profit_pct": np.where(rng.uniform(size=len(rows)) < 0.1, np.nan, rng.uniform(0.2, 3, len(rows))),
        "stop_loss_pct": np.where(rng.uniform(size=len(rows)) < 0.1, np.nan, rng.uniform(0.2, 3, len(rows))),
        "time_limit_s": rng.choice([np.nan, 1800.0, 7200.0, 43200.0], len(rows)),
        "trailing_activation_pct": rng.choice([np.nan, 0.3, 1.0], len(rows)),
        "trailing_delta_pct": rng.choice([np.nan, 0.2, 0.5], len(rows)),
    }, index=rows * 10)
    costs = CostParams(fee_pct=0.1, slippage_pct=0.05)
    labels = label_entries(candles, entries, 300, costs)

    times = candles["ts"].to_numpy(dtype="datetime64[s]").view(np.int64).astype(float).tolist()
    opens, highs, lows, closes = (candles[c].astype(float).tolist() for c in ("open", "high", "low", "close"))
    bars = [path_model.Candle(*row) for row in zip(times, [300.0] * len(times), opens, highs, lows, closes,
                                                   strict=True)]
    expected = {}
    for index, row in entries.iterrows():
        at = times.index(row["ts"].timestamp())
        barriers = exits_barriers(row)
        after = bars[at + 1:]
        outcome = exits.walk_candles(barriers, closes[at], times[at] + 300, after)
        if outcome.hit is not None:
            point = path_model.market_path(after).points[outcome.index]
            expected[index] = (outcome.hit.reason, net_return_pct(closes[at], outcome.hit.price, costs),
                               point.time_s - (times[at] + 300))
    assert list(labels.index) == list(expected)  # the same entries labelled, the incomplete ones left out
    assert len(expected) < len(entries)  # the last entries' horizons run past the data
    assert set(labels["exit_reason"]) == {"stop_loss", "trailing_stop", "take_profit", "time_limit"}
    for index, (reason, ret, held) in expected.items():
        got = labels.loc[index]
        assert (got["exit_reason"], got["net_return_pct"], got["held_s"]) == (reason, ret, held)
        assert got["label"] == int(ret > 0)


def exits_barriers(row: pd.Series) -> object:
    from types import SimpleNamespace

    def opt(value: float) -> float | None:
        return None if not np.isfinite(value) else float(value)

    return SimpleNamespace(**{c: opt(row[c]) for c in ("take_profit_pct", "stop_loss_pct", "time_limit_s",
                                                         "trailing_activation_pct", "trailing_delta_pct")})


@pytest.mark.parametrize("target", ["15m", "1h"])
def test_the_fast_resample_equals_the_market_data_one(target: str) -> None:
    from controller.data.market_data import resample
    from ml.events import load_candles, resample_sorted

    path = next(iter(sorted(ohlcv_dir().glob("*_5m.csv"))), None)
    if path is None:
        pytest.skip("no recorded 5m candles")
    candles = load_candles(path)
    candles = candles.drop(index=candles.index[[5, 6, 40]]).reset_index(drop=True)  # gaps: incomplete buckets
    ours = resample_sorted(candles, "5m", target)
    theirs = resample(candles, "5m", target)
    assert len(ours) == len(theirs) > 10
    np.testing.assert_array_equal(ours["ts"].to_numpy(dtype="datetime64[s]"),
                                  theirs["ts"].to_numpy(dtype="datetime64[s]"))
    for column in ("open", "high", "low", "close", "volume"):
        np.testing.assert_allclose(ours[column].to_numpy(), theirs[column].to_numpy(), rtol=1e-12)
