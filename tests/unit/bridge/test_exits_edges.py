"""Edges of the one exit rule found by mutation testing: fill prices inside a gapped candle, the peak a hit
carries, barriers at exactly their level, a missing trailing parameter, and the time a walk counts from."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bridge import exits, path


@dataclass(frozen=True)
class B:
    take_profit_pct: float | None = 2
    stop_loss_pct: float | None = 1
    time_limit_s: float | None = 3600
    trailing_activation_pct: float | None = None
    trailing_delta_pct: float | None = None


def test_a_candle_that_gaps_below_the_stop_fills_at_its_high_not_at_the_stop_level() -> None:
    hit, _ = exits.check(B(), 100.0, 100.0, 98.0, 97.0, 97.5, 0)
    assert hit == exits.Hit("stop_loss", 98.0, 100.0)


def test_a_candle_whose_high_is_exactly_the_stop_level_fills_at_that_level() -> None:
    hit, _ = exits.check(B(), 100.0, 100.0, 99.0, 98.0, 98.5, 0)
    assert hit is not None and (hit.reason, hit.price) == ("stop_loss", 99.0)


def test_a_candle_that_gaps_above_the_take_profit_fills_at_its_low() -> None:
    hit, _ = exits.check(B(stop_loss_pct=None), 100.0, 100.0, 105.0, 103.0, 104.0, 0)
    assert hit == exits.Hit("take_profit", 103.0, 105.0)


def test_a_candle_whose_low_is_exactly_the_take_profit_level_fills_at_that_level() -> None:
    hit, _ = exits.check(B(stop_loss_pct=None), 100.0, 100.0, 104.0, 102.0, 103.0, 0)
    assert hit is not None and (hit.reason, hit.price) == ("take_profit", 102.0)


def test_a_take_profit_inside_the_candle_fills_at_the_level() -> None:
    hit, _ = exits.check(B(stop_loss_pct=None), 100.0, 100.0, 104.0, 101.0, 103.0, 0)
    assert hit == exits.Hit("take_profit", 102.0, 104.0)


def test_a_trailing_stop_gapped_through_fills_at_the_high_and_carries_the_peak() -> None:
    b = B(take_profit_pct=None, stop_loss_pct=None, trailing_activation_pct=1, trailing_delta_pct=1)
    hit, peak = exits.check(b, 100.0, 110.0, 107.0, 106.0, 106.5, 0)  # level 108.9, candle entirely below it
    assert hit == exits.Hit("trailing_stop", 107.0, 110.0) and peak == 110.0


def test_a_trailing_stop_whose_high_is_exactly_the_level_fills_at_the_level() -> None:
    b = B(take_profit_pct=None, stop_loss_pct=None, trailing_activation_pct=1, trailing_delta_pct=10)
    hit, _ = exits.check(b, 100.0, 110.0, 99.0, 98.0, 98.5, 0)  # level 99.0
    assert hit is not None and (hit.reason, hit.price) == ("trailing_stop", 99.0)


def test_the_trailing_stop_arms_at_exactly_its_activation_gain() -> None:
    b = B(take_profit_pct=None, stop_loss_pct=None, trailing_activation_pct=2, trailing_delta_pct=1)
    hit, _ = exits.check(b, 100.0, 102.0, 101.0, 100.9, 101.0, 0)  # peak 102 = 100 + 2%; level 100.98
    assert hit is not None and hit.reason == "trailing_stop"


@pytest.mark.parametrize(("activation", "delta"), [(1.0, None), (None, 1.0)])
def test_a_trailing_stop_needs_both_its_activation_and_its_delta(activation: float | None,
                                                                   delta: float | None) -> None:
    b = B(take_profit_pct=None, stop_loss_pct=None, time_limit_s=None, trailing_activation_pct=activation,
          trailing_delta_pct=delta)
    hit, _ = exits.check(b, 100.0, 120.0, 101.0, 100.5, 101.0, 0)
    assert hit is None


def test_the_time_limit_exit_carries_the_close_and_the_peak() -> None:
    hit, _ = exits.check(B(), 100.0, 101.5, 100.5, 99.5, 100.2, 3600)
    assert hit == exits.Hit("time_limit", 100.2, 101.5)


def test_a_new_high_equal_to_the_peak_keeps_the_peak_and_a_higher_one_raises_it() -> None:
    b = B(take_profit_pct=None, stop_loss_pct=None, time_limit_s=None)
    assert exits.check(b, 100.0, 101.0, 101.0, 100.0, 100.5, 0) == (None, 101.0)
    assert exits.check(b, 100.0, 101.0, 101.5, 100.0, 100.5, 0) == (None, 101.5)


@pytest.mark.parametrize("entry", [0.0, -1.0])
def test_no_entry_price_means_no_exit(entry: float) -> None:
    assert exits.check(B(), entry, 0.0, 1.0, 0.0, 0.5, 10_000)[0] is None


def test_an_entry_below_one_quote_unit_still_exits() -> None:  # small-cap pairs quoted in BTC
    hit, _ = exits.check(B(), 0.5, 0.5, 0.5, 0.49, 0.49, 0)
    assert hit is not None and hit.reason == "stop_loss"


def test_a_walk_counts_the_holding_time_from_the_entry_to_the_end_of_each_candle() -> None:
    b = B(take_profit_pct=None, stop_loss_pct=None, time_limit_s=1800)
    entry_time = 1_000_000.0
    flat = [path.Candle(entry_time + 900 * i, 900.0, 100.0, 100.0, 100.0, 100.0) for i in range(4)]
    outcome = exits.walk_candles(b, 100.0, entry_time, flat)
    assert outcome.candle == 1 and outcome.hit is not None and outcome.hit.reason == "time_limit"
