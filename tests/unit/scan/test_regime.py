"""Regime scenarios from BTC moves, and per-symbol cooldown and ban after stop losses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from controller.scan.regime import (
    ClosedTrade,
    ProtectionParams,
    Regime,
    RegimeParams,
    RegimeReading,
    StopWidening,
    classify,
    disabled_strategies,
    symbol_block,
    widened_stop,
)

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
PARAMS = RegimeParams()


def btc_path(changes: dict[float, float], hours: int = 30, wiggle_pct: float = 0.5) -> pd.DataFrame:
    """5-minute BTC candles ending at NOW whose close, `h` hours ago, was such that the change from then to NOW
    is changes[h] percent (piecewise linear in between); each candle spans wiggle_pct of its close."""
    ts = pd.date_range(end=NOW, periods=hours * 12 + 1, freq="5min", tz="UTC")
    hours_ago = (NOW - ts).total_seconds().to_numpy() / 3600
    points = {0.0: 100.0, **{float(h): 100.0 / (1 + pct / 100) for h, pct in changes.items()}}
    points[float(hours)] = points[float(max(changes))]  # flat before the oldest anchor
    anchors = sorted(points)
    close = np.interp(hours_ago, anchors, [points[a] for a in anchors])
    half = close * wiggle_pct / 200
    return pd.DataFrame({"ts": ts, "open": close, "high": close + half, "low": close - half, "close": close})


def test_a_steady_market_is_normal_at_full_size() -> None:
    reading = classify(btc_path({1: 0.2, 4: 0.5, 24: 1.0}), NOW, PARAMS)
    assert reading.regime == Regime.NORMAL
    assert reading.size_multiplier == 1.0
    assert reading.change_1h_pct == pytest.approx(0.2, abs=0.01)
    assert reading.change_24h_pct == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("changes", [{1: -3.5, 4: -3.5, 24: -3.5}, {1: -1.0, 4: -2.0, 24: -6.0}])
def test_a_crash_is_panic_and_blocks_entries(changes: dict[float, float]) -> None:
    reading = classify(btc_path(changes), NOW, PARAMS)
    assert reading.regime == Regime.PANIC
    assert reading.blocks_entries


@pytest.mark.parametrize("changes", [{1: -2.5, 4: -2.5, 24: -2.5}, {1: -2.1, 4: -1.0, 24: 1.0}])
def test_a_slide_is_caution_at_half_size(changes: dict[float, float]) -> None:
    reading = classify(btc_path(changes), NOW, PARAMS)
    assert reading.regime == Regime.CAUTION
    assert reading.size_multiplier == 0.5


def test_a_rally_is_euphoria() -> None:
    reading = classify(btc_path({1: 3.2, 4: 3.5, 24: 4.0}), NOW, PARAMS)
    assert reading.regime == Regime.EUPHORIA
    assert reading.size_multiplier == 0.7


def test_high_volatility_is_caution_whether_falling_or_rising_as_the_seed_orders_it() -> None:
    falling = classify(btc_path({1: -0.5, 4: -1.0, 24: -1.0}, wiggle_pct=9), NOW, PARAMS)
    rising = classify(btc_path({1: 0.5, 4: 1.0, 24: 1.0}, wiggle_pct=9), NOW, PARAMS)
    assert falling.volatility_24h_pct >= 8 and falling.regime == Regime.CAUTION
    assert rising.volatility_24h_pct >= 8 and rising.change_24h_pct > 0
    assert rising.regime == Regime.CAUTION and rising.size_multiplier == 0.5


@pytest.mark.parametrize("changes", [{1: -0.5, 4: -3.2, 24: -2.0}, {1: -0.5, 4: -1.0, 12: -3.4, 24: 1.0}])
def test_a_decline_of_3_percent_from_the_24h_peak_is_panic(changes: dict[float, float]) -> None:
    reading = classify(btc_path(changes), NOW, PARAMS)
    assert reading.peak_decline_24h_pct >= 3
    assert reading.regime == Regime.PANIC and reading.blocks_entries and "peak" in reading.reason


def test_a_decline_of_5_percent_from_the_48h_peak_is_panic_even_when_the_last_day_is_calm() -> None:
    # Peak 40 h ago, 5.5 % above now; the last 24 h drift down only 2 %.
    calm_day = btc_path({1: -0.2, 4: -0.5, 24: -2.0, 40: -5.5}, hours=50)
    reading = classify(calm_day, NOW, PARAMS)
    assert reading.peak_decline_24h_pct < 3 and reading.peak_decline_48h_pct >= 5
    assert reading.regime == Regime.PANIC


def test_extreme_volatility_is_panic() -> None:
    assert classify(btc_path({1: 0.1, 24: 0.1}, wiggle_pct=13), NOW, PARAMS).regime == Regime.PANIC


def test_only_candles_up_to_now_count() -> None:
    calm_then_crash = btc_path({1: 0.1, 4: 0.1, 24: 0.1})
    future = calm_then_crash.tail(12).assign(ts=lambda f: f["ts"] + timedelta(hours=1),
                                            close=lambda f: f["close"] * 0.9, low=lambda f: f["low"] * 0.9)
    assert classify(pd.concat([calm_then_crash, future]), NOW, PARAMS).regime == Regime.NORMAL


def test_without_fresh_regime_candles_the_regime_is_unknown_and_blocks_entries() -> None:
    stale = btc_path({1: 0.1, 24: 0.1}).assign(ts=lambda f: f["ts"] - timedelta(hours=5))
    for frame in (stale, stale.head(0)):
        reading = classify(frame, NOW, PARAMS, "BTC-USDT")
        assert reading.regime == Regime.UNKNOWN and reading.blocks_entries
        assert reading.reason.startswith("regime unknown") and "BTC-USDT" in reading.reason


@pytest.mark.parametrize(("on_missing", "regime", "size"), [("caution", Regime.CAUTION, 0.5),
                                                              ("normal", Regime.NORMAL, 1.0)])
def test_on_missing_says_how_to_act_without_regime_data_and_the_reason_says_so(on_missing: str, regime: Regime,
                                                                               size: float) -> None:
    reading = classify(btc_path({1: 0.1}).head(0), NOW, RegimeParams(on_missing=on_missing), "BTC-USD")
    assert (reading.regime, reading.size_multiplier) == (regime, size)
    assert "regime unknown" in reading.reason and f"on_missing: {on_missing}" in reading.reason


def test_the_regime_market_is_resolved_per_exchange() -> None:
    assert PARAMS.markets_for("kraken") == ("BTC-USD",)
    assert PARAMS.markets_for("binanceusdm") == ("BTC-USDT",)
    assert PARAMS.markets_for("somewhere") == ("BTC-USDT", "BTC-USD", "BTC-USDC", "BTC-PERP")


def volatility(points: dict[float, float], hours: int = 10) -> pd.Series:
    """A 5-minute volatility series ending at NOW: `points` maps hours ago to a value (held until the next)."""
    ts = pd.date_range(end=NOW, periods=hours * 12 + 1, freq="5min", tz="UTC")
    hours_ago = (NOW - ts).total_seconds().to_numpy() / 3600
    values = np.zeros(len(ts))
    for h, value in sorted(points.items(), reverse=True):
        values[hours_ago <= h] = value
    return pd.Series(values, index=ts)


def test_volatility_turns_channel_off_at_8_and_on_again_only_after_2_hours_at_or_below_6() -> None:
    gates = PARAMS.volatility_gates
    assert set(disabled_strategies(volatility({5: 3.0, 0.1: 8.5}), pd.Timestamp(NOW), gates)) == {"channel"}
    # Back below 8 but above 6: still off (hysteresis).
    assert "channel" in disabled_strategies(volatility({5: 9.0, 1: 7.0}), pd.Timestamp(NOW), gates)
    # At 5 for 1 h only: still off; for 3 h: back on.
    assert "channel" in disabled_strategies(volatility({5: 9.0, 1: 5.0}), pd.Timestamp(NOW), gates)
    assert disabled_strategies(volatility({5: 9.0, 3: 5.0}), pd.Timestamp(NOW), gates) == {}


def test_swing_goes_off_at_15_and_dca_at_20_percent_volatility() -> None:
    gates = PARAMS.volatility_gates
    assert set(disabled_strategies(volatility({1: 16.0}), pd.Timestamp(NOW), gates)) == {"channel", "swing"}
    assert set(disabled_strategies(volatility({1: 21.0}), pd.Timestamp(NOW), gates)) == {"channel", "swing", "dca"}


def test_a_volatile_btc_path_reports_the_disabled_strategies_on_the_reading() -> None:
    reading = classify(btc_path({1: 0.5, 4: 1.0, 24: 1.0}, wiggle_pct=9), NOW, PARAMS)
    assert set(reading.disabled) == {"channel"}


def reading(regime: Regime, vol: float) -> RegimeReading:
    return RegimeReading(regime, 1.0, "test", volatility_24h_pct=vol)


def test_stops_widen_with_volatility_and_regime_up_to_the_tier_cap() -> None:
    stops = StopWidening()
    assert widened_stop(4.0, reading(Regime.NORMAL, 3.0), "large", stops) == 4.0  # calm: as configured
    assert widened_stop(4.0, reading(Regime.NORMAL, 15.0), "large", stops) == pytest.approx(4.0 * 1.03)
    assert widened_stop(4.0, reading(Regime.CAUTION, 15.0), "large", stops) == pytest.approx(4.0 * 1.03 * 1.3)
    assert widened_stop(8.0, reading(Regime.CAUTION, 15.0), "large", stops) == 10.0  # capped for large
    assert widened_stop(8.0, reading(Regime.CAUTION, 15.0), "mid", stops) == pytest.approx(8.0 * 1.03 * 1.3)
    assert widened_stop(27.9, reading(Regime.CAUTION, 15.0), "small", stops) == 27.9  # never tighter
    assert widened_stop(None, reading(Regime.CAUTION, 15.0), "small", stops) is None


PROTECTION = ProtectionParams(cooldown_after_stop_h={"large": 4}, ban_after_consecutive_stops=3, ban_h=24)


def trade(hours_ago: float, reason: str, symbol: str = "SOL-USDT") -> ClosedTrade:
    return ClosedTrade(symbol, reason, NOW - timedelta(hours=hours_ago))


def test_a_stop_loss_cools_the_symbol_down_for_the_configured_hours() -> None:
    trades = [trade(3, "stop_loss")]
    assert "cooling down" in symbol_block(trades, "SOL-USDT", NOW, PROTECTION, "large")
    assert symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=1, minutes=1), PROTECTION, "large") is None
    assert symbol_block(trades, "ETH-USDT", NOW, PROTECTION, "large") is None


@pytest.mark.parametrize(("tier", "hours"), [("large", 4), ("mid", 6), ("small", 12), ("meme", 24)])
def test_the_cooldown_after_a_stop_is_tiered(tier: str, hours: float) -> None:
    trades = [trade(0, "stop_loss")]
    params = ProtectionParams()
    assert "cooling down" in symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=hours - 0.1), params, tier)
    assert symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=hours + 0.1), params, tier) is None


def test_three_consecutive_stops_ban_the_symbol_for_a_day() -> None:
    trades = [trade(30, "take_profit"), trade(10, "stop_loss"), trade(8, "stop_loss"), trade(6, "stop_loss")]
    assert "banned" in symbol_block(trades, "SOL-USDT", NOW, PROTECTION, "large")
    assert "banned" in symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=17), PROTECTION, "large")
    assert symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=18, minutes=1), PROTECTION, "large") is None


def test_a_win_between_stops_resets_the_streak() -> None:
    trades = [trade(10, "stop_loss"), trade(9, "stop_loss"), trade(7, "take_profit"), trade(6, "stop_loss")]
    assert symbol_block(trades, "SOL-USDT", NOW, PROTECTION, "large") is None  # 6 h ago: past the 4 h cooldown, no ban


def test_a_single_cooldown_number_applies_to_every_tier() -> None:
    assert ProtectionParams(cooldown_after_stop_h=5).cooldown_h("meme") == 5.0


def spiked_path(spike_hours_ago: float, hours: int = 48) -> pd.DataFrame:
    """Calm 5-minute BTC candles ending at NOW (0.5 % range) but one, `spike_hours_ago`, whose high is 12 %
    above its close: BTC's 24 h volatility is about 12 % while that candle is in the window, calm after."""
    frame = btc_path({1: 0.0, 4: 0.0, 24: 0.0}, hours=hours)
    spike = (NOW - frame["ts"]).dt.total_seconds() / 3600 == spike_hours_ago
    frame.loc[spike, "high"] = frame.loc[spike, "close"] * 1.12
    return frame


def test_classify_brings_a_strategy_back_only_after_its_calm_hours_at_the_reading_s_time() -> None:
    """The hysteresis judged from the candles `classify` is given, at the time it is asked about: channel went
    off when the spike entered the 24 h window. It left the window 6 h ago: channel is back on. It left 1 h
    ago: still off (2 h at or below 6 % needed)."""
    assert classify(spiked_path(30), NOW, PARAMS).disabled == {}
    still_off = classify(spiked_path(25), NOW, PARAMS).disabled
    assert set(still_off) == {"channel"}
    assert still_off["channel"].startswith("channel off since BTC volatility reached 8%: back on at <= 6% for 2 h")
