"""DCA, SWING and CHANNEL on recorded candles: entries exactly where each rule holds (recomputed here with
plain pandas, symbol by symbol), no look-ahead, tier values, and the earlier system's three bugs absent."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from controller.scan.indicators import compute
from controller.scan.strategies import (
    DECISION_COLUMNS,
    EXIT_COLUMNS,
    FEATURES,
    STRATEGIES,
    channel,
    dca,
    features,
    swing,
)
from controller.scan.strategy_params import (
    TIERS,
    ChannelParams,
    DcaParams,
    StrategiesConfig,
    SwingParams,
    TieredParams,
    load_strategies,
    load_tiers,
)
from tests.support.recorded import load_recorded, loose


@pytest.fixture(scope="module")
def config() -> StrategiesConfig:
    return load_strategies()


@pytest.fixture(scope="module", params=["5m", "1m"])
def frame(request: pytest.FixtureRequest) -> pd.DataFrame:
    return compute(load_recorded(request.param))


@pytest.fixture(scope="module")
def frame_5m() -> pd.DataFrame:
    return compute(load_recorded("5m"))


# ------------------------------------------------------------------ the rules, recomputed independently


def expected_dca(frame: pd.DataFrame, params: TieredParams[DcaParams]) -> pd.Series:
    parts = []
    for symbol, g in frame.groupby("symbol", sort=False):
        p = params.for_symbol(symbol)
        drop = (1 - g["close"] / g["high"].rolling(p.lookback_bars).max()) * 100
        parts.append((drop >= p.min_drop_pct) & g["rsi"].between(p.rsi_min, p.rsi_max)
                     & (g["volume"] / g["volume_sma"] >= p.volume_ratio_min)
                     & (g["atr"] / g["close"] <= p.volatility_max))
    return pd.concat(parts).reindex(frame.index)


def change_since(g: pd.DataFrame, seconds: int) -> pd.Series:
    """Percent change since the last candle at least `seconds` earlier."""
    close = pd.Series(g["close"].to_numpy(), index=g["ts"])
    earlier = close.asof(g["ts"] - pd.Timedelta(seconds=seconds)).to_numpy()
    return pd.Series((g["close"].to_numpy() / earlier - 1) * 100, index=g.index)


def expected_swing(frame: pd.DataFrame, params: TieredParams[SwingParams]) -> pd.Series:
    parts = []
    for symbol, g in frame.groupby("symbol", sort=False):
        p = params.for_symbol(symbol)
        previous_high = g["high"].rolling(p.lookback_bars).max().shift(1)
        trend = (g["close"] > g["sma_20"]) & (g["sma_20"] > g["sma_50"])
        change = change_since(g, p.change_window_s)
        score = (30 * ((g["close"] / previous_high - 1) / (2 * (p.breakout_factor - 1))).clip(0, 1)
                 + 20 * (g["volume"] / g["volume_sma"] / (2 * p.volume_surge)).clip(0, 1)
                 + 20 * trend * ((g["sma_20"] / g["sma_50"] - 1) * 100 / p.trend_spread_pct).clip(0, 1)
                 + 7.5 * ((g["macd_hist"] > 0).astype(float) + (g["roc"] > 0))
                 + 15 * change.between(p.change_min_pct, p.change_max_pct)
                 + 7.5 * ((change > 0) & (change < p.change_min_pct)))
        parts.append((g["close"] > previous_high * p.breakout_factor)
                     & (g["volume"] > g["volume_sma"] * p.volume_surge)
                     & g["rsi"].between(p.rsi_min, p.rsi_max)
                     & (g["atr"] / g["close"] <= p.volatility_max) & (score >= p.min_score))
    return pd.concat(parts).reindex(frame.index)


def test_swing_enters_a_scored_breakout_without_an_up_trend_since_trend_is_only_20_points(
        frame_5m: pd.DataFrame) -> None:
    decisions = swing(frame_5m, loose("swing"))
    trend = (frame_5m["close"] > frame_5m["sma_20"]) & (frame_5m["sma_20"] > frame_5m["sma_50"])
    against_trend = decisions["entry"] & ~trend
    assert against_trend.sum() > 0
    assert (decisions.loc[against_trend, "confidence"] >= 0.30).all()  # min_score 30 reached without trend


def channel_position(frame: pd.DataFrame) -> pd.Series:
    return (frame["close"] - frame["bb_lower"]) / (frame["bb_upper"] - frame["bb_lower"])


def expected_channel(frame: pd.DataFrame, params: TieredParams[ChannelParams]) -> pd.Series:
    parts = []
    for symbol, g in frame.groupby("symbol", sort=False):
        p = params.for_symbol(symbol)
        position = channel_position(g)
        drop = (1 - g["close"] / g["high"].rolling(p.drop_lookback_bars).max()) * 100
        parts.append(g["bb_width"].between(p.width_min, p.width_max) & (position <= p.buy_zone)
                     & (position < p.sell_zone) & g["rsi"].between(p.rsi_min, p.rsi_max)
                     & (g["volume"] / g["volume_sma"] >= p.volume_ratio_min)
                     & (g["atr"] / g["close"] <= p.volatility_max) & (drop <= p.max_drop_pct))
    return pd.concat(parts).reindex(frame.index)


EXPECTED = {"dca": expected_dca, "swing": expected_swing, "channel": expected_channel}


def shipped(config: StrategiesConfig, name: str) -> TieredParams[Any]:
    return dict(config.items())[name].params


# ------------------------------------------------------------------ entries exactly where the rule holds


@pytest.mark.parametrize("name", ["dca", "swing", "channel"])
def test_shipped_rules_enter_exactly_where_the_rule_holds(frame: pd.DataFrame, config: StrategiesConfig,
                                                          name: str) -> None:
    params = shipped(config, name)
    decisions = STRATEGIES[name](frame, params)
    pd.testing.assert_series_equal(decisions["entry"], EXPECTED[name](frame, params), check_names=False)


@pytest.mark.parametrize("name", ["dca", "swing", "channel"])
def test_loose_rules_with_a_tier_override_enter_exactly_where_the_rule_holds(frame: pd.DataFrame, name: str) -> None:
    params = loose(name)
    decisions = STRATEGIES[name](frame, params)
    expected = EXPECTED[name](frame, params)
    pd.testing.assert_series_equal(decisions["entry"], expected, check_names=False)
    per_symbol = decisions.groupby(frame["symbol"])["entry"].sum()
    assert (per_symbol > 0).all(), per_symbol.to_dict()


def test_shipped_dca_and_channel_enter_on_the_recorded_5m_candles(frame_5m: pd.DataFrame,
                                                                  config: StrategiesConfig) -> None:
    assert dca(frame_5m, config.dca.params)["entry"].sum() > 10
    assert channel(frame_5m, config.channel.params)["entry"].sum() > 10


# ------------------------------------------------------------------ the earlier system's bugs, absent


def dip_frame(closes: dict[str, float]) -> pd.DataFrame:
    """One symbol per scenario: 20 bars with highs at 100, then a last bar closing at `closes[symbol]`;
    every other DCA condition holds on the last bar."""
    rows = []
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for symbol, last_close in closes.items():
        for i in range(21):
            close = 99.5 if i < 20 else last_close
            rows.append({"symbol": symbol, "ts": start + pd.Timedelta(minutes=15 * i), "open": close,
                         "high": 100.0 if i < 20 else last_close + 0.1, "low": close - 0.2, "close": close,
                         "volume": 2.0, "rsi": 40.0, "volume_sma": 1.0, "atr": 0.5})
    return pd.DataFrame(rows)


def test_dca_enters_when_the_drop_reaches_the_threshold_and_not_when_it_is_smaller() -> None:
    params = DcaParams()  # min_drop_pct 3.75, over the last 16 bars
    frame = dip_frame({"DEEP-USDT": 95.0, "JUST-USDT": 96.2, "SHALLOW-USDT": 96.3, "FLAT-USDT": 99.9})
    last = dca(frame, params).groupby(frame["symbol"]).tail(1)
    last.index = frame.loc[last.index, "symbol"]
    assert last["entry"].to_dict() == {"DEEP-USDT": True, "JUST-USDT": True, "SHALLOW-USDT": False,
                                       "FLAT-USDT": False}
    assert last.loc["SHALLOW-USDT", "reason"] == "drop 3.70% from the 16-bar high smaller than 3.75%"
    assert last.loc["DEEP-USDT", "reason"].startswith("drop 5.00% from the recent high")


def test_dca_never_enters_on_a_drop_smaller_than_the_threshold_in_recorded_data(frame: pd.DataFrame,
                                                                               config: StrategiesConfig) -> None:
    params = config.dca.params.for_symbol("ETH-BTC")
    entries = dca(frame, config.dca.params)["entry"]
    recent_high = frame.groupby("symbol")["high"].transform(lambda h: h.rolling(params.lookback_bars).max())
    drop = (1 - frame["close"] / recent_high) * 100
    assert (drop[entries] >= params.min_drop_pct).all()
    assert not entries[drop < params.min_drop_pct].any()


def test_channel_width_check_can_pass_on_recorded_data(frame_5m: pd.DataFrame, config: StrategiesConfig) -> None:
    decisions = channel(frame_5m, config.channel.params)
    entries = frame_5m[decisions["entry"]]
    assert len(entries) > 0
    assert (frame_5m["bb_width"].dropna() < 1.0).all()  # a fraction: the seed's `width > 1.0` never held
    for symbol, rows in entries.groupby("symbol"):
        p = config.channel.params.for_symbol(symbol)
        assert rows["bb_width"].between(p.width_min, p.width_max).all()
    assert {config.channel.params.tier_of(s) for s in entries["symbol"]} >= {"large", "small"}


def test_channel_never_buys_at_or_above_the_sell_zone(frame_5m: pd.DataFrame) -> None:
    permissive = ChannelParams(buy_zone=0.74, sell_zone=0.75, rsi_min=0, rsi_max=100, width_min=1e-9, width_max=1,
                               volatility_max=1, volume_ratio_min=0, max_drop_pct=100)
    decisions = channel(frame_5m, permissive)
    position = channel_position(frame_5m)
    top = position >= permissive.sell_zone
    assert top.sum() > 1000 and decisions["entry"].sum() > 1000
    assert not decisions.loc[top, "entry"].any()
    warm = ~decisions["reason"].str.startswith("warming up")
    assert decisions.loc[top & warm, "reason"].str.contains("in the sell zone").all()


def test_a_buy_zone_reaching_the_sell_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"buy_zone .* must be below sell_zone"):
        ChannelParams(buy_zone=0.8, sell_zone=0.75)


# ------------------------------------------------------------------ no look-ahead


@pytest.mark.parametrize("name", ["dca", "swing", "channel"])
def test_changing_future_candles_changes_no_past_decision(name: str) -> None:
    candles = load_recorded("5m")
    cutoff = candles["ts"].quantile(0.5)
    future = candles["ts"] > cutoff
    altered = candles.copy()
    rng = np.random.default_rng(11)
    for column in ("open", "high", "low", "close"):
        altered.loc[future, column] *= rng.uniform(0.8, 1.2, future.sum())
    altered.loc[future, "volume"] *= rng.uniform(0, 4, future.sum())
    params = loose(name)
    before = STRATEGIES[name](compute(candles), params)
    after = STRATEGIES[name](compute(altered), params)
    truncated = STRATEGIES[name](compute(candles[~future].reset_index(drop=True)), params)
    assert before.loc[~future, "entry"].sum() > 0
    assert not before.loc[future].equals(after.loc[future])  # the change did reach the decisions
    pd.testing.assert_frame_equal(after[~future], before[~future])
    pd.testing.assert_frame_equal(truncated, before[~future].reset_index(drop=True))


# ------------------------------------------------------------------ tiers, outputs, reasons


def loose_swing_with_shipped_exits(config: StrategiesConfig) -> TieredParams[SwingParams]:
    exits = {tier: config.swing.params.for_tier(tier).model_dump(include=set(EXIT_COLUMNS)) for tier in TIERS}
    return TieredParams[SwingParams](default=loose("swing").default, tiers=exits).with_tier_map(load_tiers())


def test_each_entry_carries_its_tiers_exits(frame: pd.DataFrame, config: StrategiesConfig) -> None:
    tiered = loose_swing_with_shipped_exits(config)
    decisions = swing(frame, tiered)
    entries = decisions[decisions["entry"]]
    tiers_seen = set()
    for symbol, rows in entries.groupby(frame["symbol"]):
        p = tiered.for_symbol(symbol)
        tiers_seen.add(tiered.tier_of(symbol))
        for column in EXIT_COLUMNS:
            assert (rows[column] == getattr(p, column)).all(), (symbol, column)
    assert len(tiers_seen) >= 2
    assert decisions.loc[~decisions["entry"], list(EXIT_COLUMNS)].isna().all().all()


def test_btc_gets_large_tier_exits_and_an_unknown_symbol_small(frame_5m: pd.DataFrame,
                                                              config: StrategiesConfig) -> None:
    tiered = loose_swing_with_shipped_exits(config)
    renamed = frame_5m.replace({"symbol": {"ETC-BTC": "UNLISTED-USDT"}})
    decisions = swing(renamed, tiered)
    take_profit = decisions[decisions["entry"]].groupby(renamed["symbol"])["take_profit_pct"].unique()
    assert list(take_profit["BTC-USDT"]) == [5.0]  # large
    assert list(take_profit["UNLISTED-USDT"]) == [15.0]  # small


@pytest.mark.parametrize("name", ["dca", "swing", "channel"])
def test_decisions_have_the_documented_columns(frame_5m: pd.DataFrame, config: StrategiesConfig, name: str) -> None:
    decisions = STRATEGIES[name](frame_5m, loose(name))
    assert tuple(decisions.columns) == DECISION_COLUMNS
    assert decisions.index.equals(frame_5m.index)
    assert decisions["entry"].dtype == bool
    assert decisions["confidence"].between(0, 1).all()
    assert decisions["reason"].map(lambda r: isinstance(r, str) and len(r) > 0).all()
    assert all(decisions[c].dtype == np.float64 for c in EXIT_COLUMNS)
    entries = decisions[decisions["entry"]]
    assert entries[list(EXIT_COLUMNS)].notna().all().all()
    assert (entries[list(EXIT_COLUMNS)] > 0).all().all()


@pytest.mark.parametrize("name", ["dca", "swing", "channel"])
def test_rows_before_warm_up_say_so(frame_5m: pd.DataFrame, name: str) -> None:
    decisions = STRATEGIES[name](frame_5m, loose(name))
    first_rows = decisions.groupby(frame_5m["symbol"]).head(5)
    assert not first_rows["entry"].any()
    assert first_rows["reason"].str.startswith("warming up: ").all()
    assert (first_rows["confidence"] == 0).all()


def test_the_reason_names_the_first_rule_that_failed() -> None:
    frame = dip_frame({"HOT-USDT": 95.0, "QUIET-USDT": 95.0})
    frame.loc[frame.index[20], "rsi"] = 61.2
    frame.loc[frame.index[41], "volume"] = 1.1
    last = dca(frame, DcaParams()).iloc[[20, 41]]
    assert list(last["reason"]) == ["rsi 61.2 above 56", "volume ratio 1.10 below 1.29"]


def test_plain_params_apply_to_every_symbol(frame_5m: pd.DataFrame) -> None:
    params = DcaParams(min_drop_pct=1.0)
    tiered = TieredParams[DcaParams](default=params).with_tier_map(load_tiers())
    pd.testing.assert_frame_equal(dca(frame_5m, params), dca(frame_5m, tiered))


def test_features_name_the_columns_each_decision_read(frame_5m: pd.DataFrame) -> None:
    assert set(STRATEGIES) == set(FEATURES) == {"dca", "swing", "channel"}
    first, last = frame_5m.iloc[0], frame_5m.iloc[-1]
    for name, columns in FEATURES.items():
        assert set(columns) <= set(frame_5m.columns)
        assert features(name, last) == {c: float(last[c]) for c in columns}
    assert features("channel", first)["bb_upper"] is None  # NaN before warm-up, as JSON null


def test_an_empty_frame_gives_an_empty_decision_frame(frame_5m: pd.DataFrame, config: StrategiesConfig) -> None:
    for name, section in config.items():
        decisions = STRATEGIES[name](frame_5m.iloc[:0], section.params)
        assert decisions.empty and tuple(decisions.columns) == DECISION_COLUMNS


# ------------------------------------------------------------------ the DCA grid and strategy exits


def test_the_dca_grid_scales_levels_and_spacing_with_confidence(frame_5m: pd.DataFrame) -> None:
    from controller.scan.strategies import dca_grid

    params = DcaParams()  # 3 levels, 1.4 %, min 3, high .75, low .65
    rows = frame_5m.head(4)
    confidence = np.array([0.8, 0.7, 0.5, 0.9])
    entry = np.array([True, True, True, False])
    grid = dca_grid(confidence, entry, rows, params)
    assert grid["grid_levels"].tolist()[:3] == [4, 3, 3]  # low confidence: one fewer, but never under 3
    assert grid["grid_spacing_pct"].tolist()[:3] == pytest.approx([1.4 * 0.8, 1.4, 1.4 * 1.3])
    assert grid.iloc[3].isna().all()  # no entry, no grid
    fewer = dca_grid(confidence, entry, rows, DcaParams(grid_levels=5, grid_min_levels=3))
    assert fewer["grid_levels"].tolist()[:3] == [6, 5, 4]
    assert dca_grid(confidence, entry, rows, DcaParams(grid_levels=0))["grid_levels"].isna().all()


def test_dca_entries_carry_their_grid(frame_5m: pd.DataFrame) -> None:
    from controller.scan.strategies import GRIDS

    decisions = STRATEGIES["dca"](frame_5m, loose("dca"))
    grid = GRIDS["dca"](decisions["confidence"].to_numpy(), decisions["entry"].to_numpy(), frame_5m, loose("dca"))
    assert decisions["entry"].sum() > 0 and grid.loc[decisions["entry"], "grid_levels"].notna().all()
    assert grid.loc[~decisions["entry"], "grid_levels"].isna().all()


def test_channel_exits_at_the_top_of_the_band_or_on_a_high_rsi(frame_5m: pd.DataFrame) -> None:
    from controller.scan.strategies import channel_exit

    params = shipped(load_strategies(), "channel")
    exits = channel_exit(frame_5m, params)
    position = channel_position(frame_5m)
    expected = (position >= 0.75) | (frame_5m["rsi"] >= 72)
    assert exits["exit"].tolist() == expected.tolist() and expected.sum() > 0
    top = exits[(position >= 0.75).to_numpy()]
    assert top["exit_reason"].str.contains("top of the channel").all()
    assert exits.loc[~exits["exit"], "exit_reason"].isna().all()


def test_dca_exits_on_rsi_at_or_above_77(frame_5m: pd.DataFrame) -> None:
    from controller.scan.strategies import dca_exit

    exits = dca_exit(frame_5m, shipped(load_strategies(), "dca"))
    expected = frame_5m["rsi"] >= 77
    assert exits["exit"].tolist() == expected.tolist() and expected.sum() > 0
    assert exits.loc[exits["exit"], "exit_reason"].str.startswith("rsi ").all()
