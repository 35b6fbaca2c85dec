"""The pure arithmetic: the exit rule on the bid and the time held, the trailing peak, a fee's parts, and the
price window's instability."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hummingbot.core.data_type.common import TradeType
from hummingbot.core.data_type.trade_fee import AddedToCostTradeFee, DeductedFromReturnsTradeFee, TokenAmount

from executor.pricing import PriceWindow, barrier_hit, fee_parts, grid_orders, instability_pct
from tests.support.executor_models import position, signal

D = Decimal


@pytest.mark.parametrize(("bid", "now", "expected"), [
    (D(103), 1001.0, "take_profit"),   # 100 + 3 %
    (D("102.99"), 1001.0, None),
    (D(98), 1001.0, "stop_loss"),       # 100 - 2 %
    (D("98.01"), 1001.0, None),
    (D(100), 1060.0, "time_limit"),     # held 60 s of 60
    (D(100), 1059.9, None),
])
def test_barrier_hit_applies_the_exit_rule_to_the_bid_and_the_time_held(bid: Decimal, now: float,
                                                                        expected: str | None) -> None:
    assert barrier_hit(position(), bid, now) == expected


def test_barrier_hit_has_no_time_limit_before_the_entry_filled() -> None:
    assert barrier_hit(position(opened_at=None), D(100), 10**9) is None
    assert barrier_hit(position(opened_at=0.0), D(100), 60.0) == "time_limit"  # a clock that starts at 0


def test_barrier_hit_trails_from_the_positions_peak() -> None:
    held = position(trailing_activation_pct=D(1), trailing_delta_pct=D("0.5"), take_profit_pct=D(10))
    held.peak = D(102)
    assert barrier_hit(held, D("101.49"), 1001.0) == "trailing_stop"  # 102 - 0.5 % = 101.49
    assert barrier_hit(held, D("101.5"), 1001.0) is None


BTC, USDT = "BTC", "USDT"


@pytest.mark.parametrize(("fee", "side", "expected"), [
    # Binance spot: a buy's percent fee is kept in the coin bought
    (DeductedFromReturnsTradeFee(percent=D("0.001")), TradeType.BUY, (BTC, D("0.002"), D("0.002"))),
    (DeductedFromReturnsTradeFee(percent=D("0.001"), percent_token=BTC), TradeType.BUY, (BTC, D("0.002"), D("0.002"))),
    # the percent named in the quote asset is paid in quote, even on a deducted buy
    (DeductedFromReturnsTradeFee(percent=D("0.001"), percent_token=USDT), TradeType.BUY, (USDT, D("0.2"), D(0))),
    # a sell's percent fee comes out of the quote received
    (DeductedFromReturnsTradeFee(percent=D("0.001")), TradeType.SELL, (USDT, D("0.2"), D(0))),
    # a fee added to the cost is paid in quote
    (AddedToCostTradeFee(percent=D("0.001")), TradeType.BUY, (USDT, D("0.2"), D(0))),
    # no fee at all: nothing taken, named in quote
    (AddedToCostTradeFee(), TradeType.BUY, (USDT, D(0), D(0))),
    (DeductedFromReturnsTradeFee(), TradeType.BUY, (USDT, D(0), D(0))),
    # a flat fee alone is in its own token (BNB)
    (AddedToCostTradeFee(flat_fees=[TokenAmount("BNB", D("0.01"))]), TradeType.BUY, ("BNB", D("0.01"), D(0))),
    # a flat fee in the asset of the percent fee adds to it
    (AddedToCostTradeFee(percent=D("0.001"), flat_fees=[TokenAmount(USDT, D(1))]), TradeType.SELL,
     (USDT, D("1.2"), D(0))),
    # a flat fee in another token is left out of the amount (the quote value still counts it)
    (AddedToCostTradeFee(percent=D("0.001"), flat_fees=[TokenAmount("BNB", D(1))]), TradeType.SELL,
     (USDT, D("0.2"), D(0))),
    # several flat tokens and no percent: reported in the first
    (AddedToCostTradeFee(flat_fees=[TokenAmount("BNB", D(1)), TokenAmount("ETH", D(2))]), TradeType.BUY,
     ("BNB", D(1), D(0))),
    (AddedToCostTradeFee(flat_fees=[TokenAmount("BNB", D(1)), TokenAmount("BNB", D(2))]), TradeType.BUY,
     ("BNB", D(3), D(0))),
    # a flat fee in the coin bought, kept from a deducted buy, leaves the wallet's base too
    (DeductedFromReturnsTradeFee(percent=D("0.001"), flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.BUY,
     (BTC, D("0.0025"), D("0.0025"))),
    (DeductedFromReturnsTradeFee(flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.BUY,
     (BTC, D("0.0005"), D("0.0005"))),
    # ... but not when it is added to the cost, or on a sell
    (AddedToCostTradeFee(flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.BUY, (BTC, D("0.0005"), D(0))),
    (DeductedFromReturnsTradeFee(flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.SELL,
     (BTC, D("0.0005"), D(0))),
])
def test_fee_parts_names_the_asset_the_amount_and_what_left_the_position(
        fee: Any, side: TradeType, expected: tuple[str, Decimal, Decimal]) -> None:
    assert fee_parts(fee, side, BTC, USDT, price=D(100), amount=D(2)) == expected


def test_instability_is_the_range_over_the_low_in_percent() -> None:
    assert instability_pct([D(100), D(101), D(99)]) == D(2) / D(99) * 100
    assert instability_pct([D(50)]) == 0
    assert instability_pct([D("0.5"), D("0.51")]) == D(2)  # a price below 1 (many altcoins, BTC quotes)
    assert instability_pct([D(0), D(1)]) == 100  # no price to divide by: as unstable as it gets
    assert instability_pct([D(-1), D(1)]) == 100


def test_the_grid_rests_its_levels_below_the_entry_each_for_its_quote_scaled_with_the_entry() -> None:
    grid = signal(grid_levels=3, grid_spacing_pct=D(2), grid_level_quote=D(10))
    assert grid_orders(grid, D(100)) == [(1, D(98), D(10)), (2, D(96), D(10)), (3, D(94), D(10))]
    assert grid_orders(grid, D(100), scale=D(2)) == [(1, D(98), D(20)), (2, D(96), D(20)), (3, D(94), D(20))]
    # a level at or below a zero price is left out
    assert [level for level, _, _ in grid_orders(signal(grid_levels=3, grid_spacing_pct=D(40),
                                                        grid_level_quote=D(10)), D(100))] == [1, 2]
    assert [level for level, _, _ in grid_orders(signal(grid_levels=2, grid_spacing_pct=D(50),
                                                        grid_level_quote=D(10)), D(100))] == [1]


@pytest.mark.parametrize("missing", ["grid_levels", "grid_spacing_pct", "grid_level_quote"])
def test_no_grid_without_all_three_of_its_fields(missing: str) -> None:
    fields: dict[str, Any] = {"grid_levels": 3, "grid_spacing_pct": D(2), "grid_level_quote": D(10)}
    assert grid_orders(signal(**{**fields, missing: None}), D(100)) == []


def test_the_price_window_samples_at_its_interval_and_is_full_once_it_covers_the_window() -> None:
    window = PriceWindow(window_s=3, sample_s=1)
    assert not window.full("BTC-USDT", 10.0)
    window.sample("BTC-USDT", 0.0, D(100), D(101))
    window.sample("BTC-USDT", 0.5, D(50), D(51))  # within sample_s of the last: not kept
    for t in (1.0, 2.0):
        window.sample("BTC-USDT", t, D(100), D(101))
    window.sample("BTC-USDT", 2.5, D(50), D(51))  # the interval counts from the last kept sample, at any time
    assert not window.full("BTC-USDT", 2.9)
    assert window.full("BTC-USDT", 3.0)
    assert not window.full("ETH-USDT", 3.0)
    assert window.instability("BTC-USDT") == 0


def test_the_price_window_keeps_the_one_sample_at_its_start_and_drops_older_ones() -> None:
    window = PriceWindow(window_s=3, sample_s=1)
    bids = {6.0: D(50), 7.0: D(80)}  # at 10 s the window starts at 7 s: the 6 s spike is gone, 7 s stays
    for t in range(11):
        window.sample("BTC-USDT", float(t), bids.get(float(t), D(100)), D(101))
    assert window.instability("BTC-USDT") == D(25)  # (100 - 80) / 80
    window.sample("BTC-USDT", 11.0, D(100), D(101))
    assert window.instability("BTC-USDT") == 0  # the 7 s sample left with the window


def test_the_windows_instability_is_the_larger_of_the_bids_and_the_asks() -> None:
    window = PriceWindow(window_s=2, sample_s=1)
    for t, ask in ((0.0, D(100)), (1.0, D(110)), (2.0, D(100))):
        window.sample("BTC-USDT", t, D(99), ask)
    assert window.instability("BTC-USDT") == D(10)


def test_a_zero_second_window_is_the_last_sample_alone() -> None:
    """stability_window_s 0 turns the gate off: whatever the price did before, the window is one sample."""
    window = PriceWindow(window_s=0, sample_s=1)
    window.sample("BTC-USDT", 0.0, D(100), D(101))
    window.sample("BTC-USDT", 1.0, D(50), D(51))
    assert window.full("BTC-USDT", 1.0) and window.instability("BTC-USDT") == 0
