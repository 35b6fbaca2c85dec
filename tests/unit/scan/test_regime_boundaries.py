"""The regime guard's and the stop-loss protection's boundaries: which candles each change is measured from,
thresholds met exactly, the reason text a user reads, freshness and the unknown regime, and where a cooldown or
a ban begins and ends."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from controller.scan.regime import ClosedTrade, ProtectionParams, Regime, RegimeParams, classify, symbol_block
from tests.support.regime import MARKET, NOW, PARAMS, at, candles


def test_each_change_is_measured_from_the_last_close_at_or_before_its_horizon() -> None:
    reading = classify(MARKET, NOW, PARAMS)
    assert reading.change_1h_pct == pytest.approx((100 / 99 - 1) * 100)
    assert reading.change_4h_pct == pytest.approx((100 / 101 - 1) * 100)
    assert reading.change_24h_pct == pytest.approx((100 / 98 - 1) * 100)
    # the 24 h window excludes the candle exactly 24 h old: range 98.5 .. 101.5 over the last close 100
    assert reading.volatility_24h_pct == pytest.approx(3.0)


def test_the_reason_states_the_regime_and_every_figure() -> None:
    reading = classify(MARKET, NOW, PARAMS)
    assert reading.regime == Regime.NORMAL and reading.size_multiplier == 1.0
    assert reading.reason == ("BTC steady (BTC): 1h +1.01%, 4h -0.99%, 24h +2.04%, volatility 3.00%, "
                              "from peak 24h -0.99% 48h -0.99%")


def test_a_missing_horizon_reads_n_a() -> None:
    reading = classify(candles([(2, 100, None, None), (0, 100, None, None)]), NOW, PARAMS)
    assert reading.change_4h_pct is None and reading.change_24h_pct is None
    assert reading.peak_decline_24h_pct is None and reading.peak_decline_48h_pct is None
    assert reading.reason == ("BTC steady (BTC): 1h +0.00%, 4h n/a, 24h n/a, volatility 1.00%, "
                              "from peak 24h n/a 48h n/a")


@pytest.mark.parametrize(("rows", "regime", "why"), [
    ([(1, 104, None, None), (0, 100, None, None)], Regime.PANIC, "BTC falling hard or too volatile (BTC): "),
    ([(1, 102.5, None, None), (0, 100, None, None)], Regime.CAUTION, "BTC falling or volatile (BTC): "),
    ([(1, 96, None, None), (0, 100, None, None)], Regime.EUPHORIA, "BTC rising fast (BTC): "),
])
def test_each_regime_says_why(rows: list, regime: Regime, why: str) -> None:
    reading = classify(candles(rows), NOW, PARAMS)
    assert reading.regime == regime and reading.reason.startswith(why)


FALLING = candles([(24, 101, None, None), (4, 101, None, None), (1, 101, None, None), (0, 100, None, None)])


def test_thresholds_met_exactly_count() -> None:
    falling = classify(FALLING, NOW, PARAMS)
    c1, vol = falling.change_1h_pct, falling.volatility_24h_pct
    assert c1 is not None and c1 < 0 and vol is not None
    assert at({"caution_1h_pct": c1, "panic_1h_pct": -50}, FALLING) == Regime.CAUTION
    assert at({"panic_1h_pct": c1, "caution_1h_pct": c1}, FALLING) == Regime.PANIC
    assert at({"caution_volatility_pct": vol, "panic_volatility_pct": 50}, FALLING) == Regime.CAUTION
    assert at({"caution_volatility_pct": vol, "panic_volatility_pct": vol}, FALLING) == Regime.PANIC
    rising = classify(MARKET, NOW, PARAMS)
    assert rising.change_1h_pct is not None and rising.change_24h_pct is not None
    assert at({"euphoria_1h_pct": rising.change_1h_pct}) == Regime.EUPHORIA
    assert at({"euphoria_24h_pct": rising.change_24h_pct}) == Regime.EUPHORIA


def test_either_euphoria_trigger_alone_is_enough() -> None:
    assert at({"euphoria_1h_pct": 1.0, "euphoria_24h_pct": 50}) == Regime.EUPHORIA
    assert at({"euphoria_1h_pct": 50, "euphoria_24h_pct": 2.0}) == Regime.EUPHORIA


def test_volatility_while_slightly_up_over_a_day_is_caution_not_euphoria() -> None:
    # up 0.5% over 24 h (rising, below any euphoria trigger), range 8.5% of the last close: CAUTION is checked first
    frame = candles([(24, 99.5, None, None), (4, 100, 104, 96), (1, 100, None, None), (0, 100, 100.5, 95.5)])
    reading = classify(frame, NOW, PARAMS)
    assert 0 < (reading.change_24h_pct or 0) < 1 and (reading.volatility_24h_pct or 0) >= 8
    assert reading.regime == Regime.CAUTION


def test_a_decline_from_the_peak_met_exactly_is_panic() -> None:
    falling = classify(FALLING, NOW, PARAMS)
    d24, d48 = falling.peak_decline_24h_pct, falling.peak_decline_48h_pct
    assert falling.regime == Regime.NORMAL and d24 is not None and d48 is not None and d24 > 0
    assert at({"panic_peak_decline_24h_pct": d24, "panic_peak_decline_48h_pct": 50}, FALLING) == Regime.PANIC
    assert at({"panic_peak_decline_24h_pct": 50, "panic_peak_decline_48h_pct": d48}, FALLING) == Regime.PANIC
    assert at({"panic_peak_decline_24h_pct": d24 + 1e-6, "panic_peak_decline_48h_pct": d48 + 1e-6},
              FALLING) == Regime.NORMAL
    assert classify(FALLING, NOW, RegimeParams(panic_peak_decline_24h_pct=d24)).reason.startswith(
        "BTC declining from its peak (BTC): ")


# A candle opened at ts closes 5 minutes later; it is fresh while it closed at most max_age_s (30 min) ago.
@pytest.mark.parametrize(("last_hours_ago", "known"), [(35 / 60, True), (35 / 60 + 1 / 3600, False)])
def test_regime_candles_are_fresh_up_to_max_age(last_hours_ago: float, known: bool) -> None:
    frame = candles([(5, 100, None, None), (last_hours_ago, 100, None, None)])
    reading = classify(frame, NOW, PARAMS)
    assert ("regime unknown" not in reading.reason) is known
    assert (reading.regime != Regime.UNKNOWN) is known


def test_only_the_last_candle_decides_whether_the_data_is_fresh() -> None:
    reading = classify(candles([(5, 100, None, None), (0, 100, None, None)]), NOW, PARAMS)
    assert "regime unknown" not in reading.reason and reading.regime == Regime.NORMAL


def test_no_data_at_all_is_the_unknown_regime_with_its_multiplier() -> None:
    reading = classify(pd.DataFrame(), NOW, PARAMS)
    assert (reading.regime, reading.size_multiplier) == (Regime.UNKNOWN, 0.0)
    assert reading.reason == "regime unknown: no BTC candles" and reading.blocks_entries
    multipliers = {**PARAMS.size_multiplier, Regime.UNKNOWN: 0.25}
    lenient = classify(pd.DataFrame(), NOW, RegimeParams(size_multiplier=multipliers))
    assert (lenient.regime, lenient.size_multiplier) == (Regime.UNKNOWN, 0.25)


@pytest.mark.parametrize(("on_missing", "regime", "multiplier"), [("caution", Regime.CAUTION, 0.5),
                                                                   ("normal", Regime.NORMAL, 1.0)])
def test_no_data_acts_as_on_missing_says_and_says_so(on_missing: str, regime: Regime, multiplier: float) -> None:
    reading = classify(pd.DataFrame(), NOW, RegimeParams(on_missing=on_missing), market="BTC-USD")
    assert (reading.regime, reading.size_multiplier) == (regime, multiplier)
    assert reading.reason == (f"regime unknown: no BTC-USD candles; acting as {regime.value} "
                              f"(regime.on_missing: {on_missing})")


PROTECTION = ProtectionParams(cooldown_after_stop_h={"large": 4, "meme": 24}, ban_after_consecutive_stops=3,
                              ban_h=24)


def stops(*hours_ago: float, symbol: str = "SOL-USDT") -> list[ClosedTrade]:
    return [ClosedTrade(symbol, "stop_loss", NOW - timedelta(hours=h)) for h in hours_ago]


def test_a_stop_closed_at_this_very_moment_cools_the_symbol_down() -> None:
    expected = "cooling down until 2026-11-21 16:00 after a stop loss (4 h for large)"
    assert symbol_block(stops(0), "SOL-USDT", NOW, PROTECTION, tier="large") == expected


def test_a_tier_without_its_own_cooldown_gets_the_longest() -> None:
    assert symbol_block(stops(0), "SOL-USDT", NOW, PROTECTION, tier="small") == (
        "cooling down until 2026-11-22 12:00 after a stop loss (24 h for small)")


def test_two_stops_in_a_row_are_not_yet_a_ban() -> None:
    assert symbol_block(stops(8, 6), "SOL-USDT", NOW, PROTECTION, tier="large") is None


def test_the_ban_and_the_cooldown_end_exactly_at_their_hour() -> None:
    assert symbol_block(stops(28, 26, 24), "SOL-USDT", NOW, PROTECTION, tier="large") is None
    assert symbol_block(stops(4), "SOL-USDT", NOW, PROTECTION, tier="large") is None
    assert symbol_block(stops(28, 26, 23.5), "SOL-USDT", NOW, PROTECTION, tier="large") == (
        "banned until 2026-11-21 12:30 after 3 consecutive stop losses")


def test_the_reading_s_features_recorded_with_each_decision() -> None:
    reading = classify(MARKET, NOW, PARAMS)
    assert reading.features() == {"regime": "NORMAL", "regime_market": "BTC",
                                  "btc_change_1h_pct": reading.change_1h_pct,
                                  "btc_change_4h_pct": reading.change_4h_pct,
                                  "btc_change_24h_pct": reading.change_24h_pct,
                                  "btc_volatility_24h_pct": reading.volatility_24h_pct}
    assert len({reading.change_1h_pct, reading.change_4h_pct, reading.change_24h_pct,
                reading.volatility_24h_pct}) == 4  # four different figures: none can stand in for another
