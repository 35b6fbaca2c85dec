"""The market path inside a candle (`bridge.path`), on recorded Bittrex candles (1m recorded inside 5m)."""

from __future__ import annotations

import csv
from functools import cache

import pytest

from bridge import path
from controller.data.market_data import ohlcv_dir


@cache
def recorded(name: str, tf_s: float) -> tuple[path.Candle, ...]:
    with (ohlcv_dir() / name).open() as f:
        rows = list(csv.DictReader(f))
    return tuple(path.Candle(int(r["timestamp"]) / 1000, tf_s, float(r["open"]), float(r["high"]), float(r["low"]),
                             float(r["close"])) for r in rows)


def five_and_one(pair: str) -> tuple[tuple[path.Candle, ...], tuple[path.Candle, ...]]:
    return recorded(f"bittrex_{pair}_5m.csv", 300.0), recorded(f"bittrex_{pair}_1m.csv", 60.0)


def test_adaptive_visits_the_extreme_nearer_the_open_first() -> None:
    near_low = path.Candle(0, 300, open=100, high=110, low=98, close=105)
    near_high = path.Candle(0, 300, open=100, high=101, low=90, close=95)
    assert [p.price for p in path.candle_points(near_low)] == [100, 98, 110, 105]
    assert [p.price for p in path.candle_points(near_high)] == [100, 101, 90, 95]
    assert [p.price for p in path.candle_points(near_low, "ohlc")] == [100, 110, 98, 105]
    assert [p.price for p in path.candle_points(near_high, "olhc")] == [100, 90, 101, 95]


def test_points_span_the_candle_and_only_the_open_is_a_jump() -> None:
    points = path.candle_points(path.Candle(600, 300, 1, 2, 0.5, 1.5))
    assert [p.time_s for p in points] == [600, 700, 800, 900]
    assert [p.continuous for p in points] == [False, True, True, True]


def test_a_row_that_is_not_a_candle_is_refused_with_its_time() -> None:
    with pytest.raises(ValueError, match="at 60"):
        path.candle_points(path.Candle(60, 60, open=1.0, high=0.9, low=0.8, close=0.85))
    with pytest.raises(ValueError, match="unknown path mode"):
        path.candle_points(path.Candle(60, 60, 1, 1, 1, 1), "random")  # type: ignore[arg-type]


def test_recorded_minutes_replace_their_five_minute_candle_where_they_agree() -> None:
    fives, ones = five_and_one("ETH-BTC")
    start = next(i for i, c in enumerate(fives) if c.ts_s == ones[0].ts_s + 120)  # the first full bucket
    window = fives[start:start + 12]
    result = path.market_path(window, {60.0: ones})
    assert result.assumption == path.Assumption("adaptive", 60.0, 0)
    assert len(result.points) == 12 * 5 * 4
    # the path reaches both recorded extremes of each coarse candle, in time order, inside that candle
    for i, c in enumerate(window):
        prices = [p.price for p, k in zip(result.points, result.candle, strict=True) if k == i]
        assert max(prices) == c.high and min(prices) == c.low and prices[0] == c.open and prices[-1] == c.close
    times = [p.time_s for p in result.points]
    assert times == sorted(times)


def test_minutes_missing_fall_back_to_the_coarse_candle_and_are_counted() -> None:
    fives, ones = five_and_one("LTC-BTC")
    have = {c.ts_s for c in ones}
    holes = [c for c in fives if c.ts_s >= ones[0].ts_s + 120 and c.ts_s + 300 <= ones[-1].ts_s
             and any(c.ts_s + 60 * j not in have for j in range(5))]
    assert len(holes) >= 10  # Bittrex left out minutes without trades (SOURCES.md: 38 missing)
    result = path.market_path(holes, {60.0: ones})
    assert result.assumption.fallbacks == len(holes)
    assert len(result.points) == 4 * len(holes)  # each one walks its own four points
    assert result.assumption.detail_s is None


def test_a_finer_high_above_the_coarse_high_is_not_used() -> None:
    fives, ones = five_and_one("ETH-BTC")
    c = next(c for c in fives if c.ts_s == ones[0].ts_s + 120)
    inside = [m for m in ones if c.ts_s <= m.ts_s < c.ts_s + 300]
    assert path.consistent(c, inside)
    spiked = [*inside[:2], path.Candle(inside[2].ts_s, 60, inside[2].open, c.high * 1.01, inside[2].low,
                                       inside[2].close), *inside[3:]]
    result = path.market_path([c], {60.0: spiked})
    assert result.assumption.fallbacks == 1
    assert max(p.price for p in result.points) == c.high


def test_the_finest_consistent_timeframe_wins() -> None:
    fives, ones = five_and_one("ETH-BTC")
    start = next(i for i, c in enumerate(fives) if c.ts_s == ones[0].ts_s + 120)
    # a recorded 15-minute candle aggregated from three recorded 5-minute candles
    three = fives[start:start + 3]
    quarter = path.Candle(three[0].ts_s, 900, three[0].open, max(c.high for c in three),
                          min(c.low for c in three), three[-1].close)
    both = path.market_path([quarter], {300.0: fives, 60.0: ones})
    assert both.assumption.detail_s == 60.0 and len(both.points) == 15 * 4
    no_minutes = path.market_path([quarter], {300.0: fives})
    assert no_minutes.assumption.detail_s == 300.0 and len(no_minutes.points) == 3 * 4
