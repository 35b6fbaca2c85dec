"""The one exit rule (`bridge.exits`), with the executor's cases: the executor, ML labels and shadow replay call it."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest

from bridge import exits, path


@dataclass(frozen=True)
class B:
    take_profit_pct: float | Decimal | None = 2
    stop_loss_pct: float | Decimal | None = 1
    time_limit_s: float | None = 3600
    trailing_activation_pct: float | Decimal | None = None
    trailing_delta_pct: float | Decimal | None = None


def tick(b: B, entry: float, peak: float, price: float, held: float | None = 0) -> str | None:
    hit, _ = exits.check(b, entry, peak, price, price, price, held)
    return hit.reason if hit else None


@pytest.mark.parametrize(("price", "held", "expected"), [
    (100.0, 0, None),
    (98.99, 0, "stop_loss"),
    (99.0, 0, "stop_loss"),          # at the level counts
    (102.0, 0, "take_profit"),
    (101.99, 0, None),
    (100.0, 3600, "time_limit"),
    (100.0, 3599.9, None),
    (98.0, 3600, "stop_loss"),       # the stop comes before the time limit
    (103.0, 3600, "take_profit"),    # and so does the take profit
])
def test_a_tick_exits_where_the_executor_would(price: float, held: float, expected: str | None) -> None:
    assert tick(B(), 100.0, 100.0, price, held) == expected


def test_a_candle_touching_both_barriers_is_a_stop() -> None:
    hit, _ = exits.check(B(), 100.0, 100.0, high=103.0, low=98.0, close=101.0, held_s=60)
    assert hit is not None and hit.reason == "stop_loss" and hit.price == pytest.approx(99.0)


def test_trailing_arms_at_the_activation_and_follows_the_peak() -> None:
    b = B(take_profit_pct=10, stop_loss_pct=5, trailing_activation_pct=2, trailing_delta_pct=1)
    assert tick(b, 100.0, 100.0, 101.5) is None                 # not armed: peak below 102
    assert tick(b, 100.0, 101.5, 100.6) is None                  # a 0.9 % fall from 101.5, not armed anyway
    assert tick(b, 100.0, 104.0, 103.0) is None                  # armed, 0.96 % below the peak
    assert tick(b, 100.0, 104.0, 102.96) == "trailing_stop"      # 1 % below the peak of 104
    hit, peak = exits.check(b, 100.0, 100.0, high=105.0, low=103.9, close=104.0, held_s=60)
    assert peak == 105.0 and hit is not None and hit.reason == "trailing_stop"  # the high counts first
    assert hit.price == pytest.approx(103.95)


def test_no_take_profit_and_no_time_limit_mean_only_the_stop() -> None:
    b = B(take_profit_pct=None, time_limit_s=None)
    assert tick(b, 100.0, 100.0, 150.0, held=10**9) is None
    assert tick(b, 100.0, 100.0, 98.0) == "stop_loss"


def test_decimal_and_float_agree() -> None:
    bd = B(take_profit_pct=Decimal("2"), stop_loss_pct=Decimal("1"))
    for price in ("98.5", "99", "99.5", "101.999", "102", "103"):
        hit_d, _ = exits.check(bd, Decimal(100), Decimal(100), Decimal(price), Decimal(price), Decimal(price), 0)
        hit_f, _ = exits.check(B(), 100.0, 100.0, float(price), float(price), float(price), 0)
        assert (hit_d and hit_d.reason) == (hit_f and hit_f.reason), price


def candles(opens: list[float], highs: list[float], lows: list[float], closes: list[float]) -> list[path.Candle]:
    return [path.Candle(60.0 * i, 60.0, o, h, lo, c) for i, (o, h, lo, c) in enumerate(zip(opens, highs, lows, closes,
                                                                                          strict=True))]


def test_walk_stops_at_the_first_exit_and_reports_an_incomplete_horizon() -> None:
    outcome = exits.walk_candles(B(), 100.0, 0.0, candles([100] * 4, [100.5, 102.5, 100, 100], [99.5, 100, 100, 100],
                                                          [100, 102, 100, 100]))
    assert outcome.candle == 1 and outcome.hit is not None and outcome.hit.reason == "take_profit"
    assert outcome.assumption == path.Assumption("adaptive", None, 0)
    pending = exits.walk_candles(B(), 100.0, 0.0, candles([100] * 4, [100.5] * 4, [99.5] * 4, [100] * 4))
    assert pending.hit is None and pending.candle is None
    timed = exits.walk_candles(B(time_limit_s=120), 100.0, 0.0,
                               candles([100.2] * 4, [100.5] * 4, [99.5] * 4, [100.2] * 4))
    assert timed.candle == 1 and timed.hit is not None and timed.hit.reason == "time_limit"
    assert timed.hit.price == 100.2  # the close of the candle that ends at the limit


def test_a_candle_that_reaches_take_profit_is_never_also_a_trailing_stop() -> None:
    """Peak raised to the high first and the trailing stop read off the same candle's low: the path cannot."""
    b = B(take_profit_pct=2, stop_loss_pct=5, trailing_activation_pct=1, trailing_delta_pct=0.5)
    # opens near its low: 100 -> 99.9 -> 102.5 (take profit 102 crossed on the way up) -> 101
    outcome = exits.walk_candles(b, 100.0, 0.0, candles([100], [102.5], [99.9], [101]))
    assert outcome.hit is not None and (outcome.hit.reason, outcome.hit.price) == ("take_profit", 102.0)
    # opens near its high: 100 -> 101.2 (trailing armed at 101) -> 99.9 (level 100.694 crossed on the way down)
    outcome = exits.walk_candles(b, 100.0, 0.0, candles([100], [101.2], [99.9], [100.5]))
    assert outcome.hit is not None and outcome.hit.reason == "trailing_stop"
    assert outcome.hit.price == pytest.approx(101.2 * 0.995)


def test_a_gap_through_the_stop_fills_at_the_open_and_a_crossing_inside_a_candle_at_the_level() -> None:
    gapped = exits.walk_candles(B(), 100.0, 0.0, candles([100, 98.0], [100.5, 98.5], [99.5, 97.5], [100, 98]))
    assert gapped.hit == exits.Hit("stop_loss", 98.0, 100.5) and gapped.candle == 1 and gapped.index == 4
    crossed = exits.walk_candles(B(), 100.0, 0.0, candles([100], [100.2], [98.0], [98.5]))
    assert crossed.hit == exits.Hit("stop_loss", 99.0, 100.2)


def test_a_point_exactly_at_the_stop_and_the_trailing_level_is_the_stop() -> None:
    b = B(take_profit_pct=None, stop_loss_pct=1, trailing_activation_pct=1, trailing_delta_pct=1.9801980198019802)
    # peak 101 arms the trailing stop at 101 * (1 - 0.0198...) = 99.0: the stop loss level too
    points = [path.Point(1.0, 101.0, False), path.Point(2.0, 99.0, False)]
    outcome = exits.walk(b, 100.0, 0.0, points)
    assert outcome.hit is not None and outcome.hit.reason == "stop_loss" and outcome.hit.price == 99.0


def test_a_level_touched_exactly_counts() -> None:
    outcome = exits.walk_candles(B(), 100.0, 0.0, candles([100], [102.0], [99.5], [101]))
    assert outcome.hit is not None and (outcome.hit.reason, outcome.hit.price) == ("take_profit", 102.0)
