"""Regime scenarios from BTC moves, and per-symbol cooldown and ban after stop losses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from controller.scan.regime import ClosedTrade, ProtectionParams, Regime, RegimeParams, classify, symbol_block

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


@pytest.mark.parametrize("changes", [{1: -2.5, 4: -2.5, 24: -2.5}, {1: -0.5, 4: -3.2, 24: -2.0},
                                     {1: -0.5, 4: -1.0, 24: -3.5}])
def test_a_slide_is_caution_at_half_size(changes: dict[float, float]) -> None:
    reading = classify(btc_path(changes), NOW, PARAMS)
    assert reading.regime == Regime.CAUTION
    assert reading.size_multiplier == 0.5


def test_a_rally_is_euphoria() -> None:
    reading = classify(btc_path({1: 1.0, 4: 3.0, 24: 9.0}), NOW, PARAMS)
    assert reading.regime == Regime.EUPHORIA
    assert reading.size_multiplier == 0.7


def test_high_volatility_while_falling_is_caution_and_while_rising_euphoria() -> None:
    falling = classify(btc_path({1: -0.5, 4: -1.0, 24: -1.0}, wiggle_pct=9), NOW, PARAMS)
    rising = classify(btc_path({1: 0.5, 4: 1.0, 24: 1.0}, wiggle_pct=9), NOW, PARAMS)
    assert falling.volatility_24h_pct >= 8 and falling.regime == Regime.CAUTION
    assert rising.regime == Regime.EUPHORIA


def test_extreme_volatility_is_panic() -> None:
    assert classify(btc_path({1: 0.1, 24: 0.1}, wiggle_pct=13), NOW, PARAMS).regime == Regime.PANIC


def test_only_candles_up_to_now_count() -> None:
    calm_then_crash = btc_path({1: 0.1, 4: 0.1, 24: 0.1})
    future = calm_then_crash.tail(12).assign(ts=lambda f: f["ts"] + timedelta(hours=1),
                                            close=lambda f: f["close"] * 0.9, low=lambda f: f["low"] * 0.9)
    assert classify(pd.concat([calm_then_crash, future]), NOW, PARAMS).regime == Regime.NORMAL


def test_without_recent_btc_candles_the_configured_fallback_applies() -> None:
    stale = btc_path({1: 0.1, 24: 0.1}).assign(ts=lambda f: f["ts"] - timedelta(hours=5))
    reading = classify(stale, NOW, PARAMS)
    assert reading.regime == Regime.CAUTION and "no recent BTC-USDT candles" in reading.reason
    assert classify(stale.head(0), NOW, PARAMS).regime == Regime.CAUTION


PROTECTION = ProtectionParams(cooldown_after_stop_h=4, ban_after_consecutive_stops=3, ban_h=24)


def trade(hours_ago: float, reason: str, symbol: str = "SOL-USDT") -> ClosedTrade:
    return ClosedTrade(symbol, reason, NOW - timedelta(hours=hours_ago))


def test_a_stop_loss_cools_the_symbol_down_for_the_configured_hours() -> None:
    trades = [trade(3, "stop_loss")]
    assert "cooling down" in symbol_block(trades, "SOL-USDT", NOW, PROTECTION)
    assert symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=1, minutes=1), PROTECTION) is None
    assert symbol_block(trades, "ETH-USDT", NOW, PROTECTION) is None


def test_three_consecutive_stops_ban_the_symbol_for_a_day() -> None:
    trades = [trade(30, "take_profit"), trade(10, "stop_loss"), trade(8, "stop_loss"), trade(6, "stop_loss")]
    assert "banned" in symbol_block(trades, "SOL-USDT", NOW, PROTECTION)
    assert "banned" in symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=17), PROTECTION)
    assert symbol_block(trades, "SOL-USDT", NOW + timedelta(hours=18, minutes=1), PROTECTION) is None


def test_a_win_between_stops_resets_the_streak() -> None:
    trades = [trade(10, "stop_loss"), trade(9, "stop_loss"), trade(7, "take_profit"), trade(6, "stop_loss")]
    assert symbol_block(trades, "SOL-USDT", NOW, PROTECTION) is None  # 6 h ago: past the 4 h cooldown, no ban
