"""Strategy parameters from conf/strategies.yml and conf/tiers.yml: seed values, tiers, errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from controller.config_base import ConfigError
from controller.scan.strategy_params import (
    DEFAULT_STRATEGIES,
    DEFAULT_TIERS,
    ChannelParams,
    DcaParams,
    IndicatorParams,
    StrategiesConfig,
    SwingParams,
    TieredParams,
    TierMap,
    base_asset,
    load_strategies,
    load_tiers,
)

SHIPPED = DEFAULT_STRATEGIES.read_text()


@pytest.fixture(scope="module")
def config() -> StrategiesConfig:
    return load_strategies()


def write(tmp_path: Path, text: str, name: str = "strategies.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edited(old: str, new: str) -> str:
    assert old in SHIPPED, old
    return SHIPPED.replace(old, new, 1)


def test_shipped_config_carries_the_seed_final_values(config: StrategiesConfig) -> None:
    dca = config.dca.params.default
    assert (dca.min_drop_pct, dca.rsi_min, dca.rsi_max, dca.volume_ratio_min, dca.volatility_max) == (
        3.75, 28, 56, 1.29, 0.15)
    assert (dca.grid_levels, dca.grid_spacing_pct) == (3, 1.4)
    assert (dca.take_profit_pct, dca.stop_loss_pct, dca.trailing_activation_pct, dca.trailing_delta_pct) == (
        3.0, 27.9, 1.1, 2.6)
    channel = config.channel.params.default
    assert (channel.buy_zone, channel.sell_zone, channel.rsi_min, channel.rsi_max, channel.volatility_max) == (
        0.05, 0.75, 32, 65, 0.03)
    assert (channel.take_profit_pct, channel.stop_loss_pct) == (4.0, 14.6)
    assert (config.channel.indicators.bb_length, config.channel.indicators.bb_std) == (30, 2.0)
    assert config.swing.enabled is False  # the seed disabled SWING at the end
    assert all(section.params.default.time_limit_s == 72 * 3600 for _name, section in config.items())


def test_shipped_defaults_equal_the_model_defaults(config: StrategiesConfig) -> None:
    assert config.dca.params.default == DcaParams()
    assert config.swing.params.default == SwingParams()
    assert config.channel.params.default == ChannelParams()


@pytest.mark.parametrize(("tier", "values"), [
    ("large", (1.008, 1.2, 45, 75, 35, 5.0, 4.0, 2.5)),
    ("mid", (1.010, 1.3, 45, 75, 40, 8.0, 6.0, 4.0)),
    ("small", (1.015, 1.4, 40, 80, 45, 15.0, 8.0, 6.0)),
    ("meme", (1.020, 1.5, 35, 90, 50, 15.0, 12.0, 8.0)),
])
def test_swing_tiers_carry_the_seed_final_tier_values(config: StrategiesConfig, tier: str,
                                                      values: tuple[float, ...]) -> None:
    p = config.swing.params.for_tier(tier)
    assert (p.breakout_factor, p.volume_surge, p.rsi_min, p.rsi_max, p.min_score, p.take_profit_pct,
            p.stop_loss_pct, p.trailing_delta_pct) == values


@pytest.mark.parametrize(("tier", "values"), [
    ("large", (0.035, 0.02, 0.08, 1.0)),
    ("mid", (0.045, 0.03, 0.10, 0.8)),
    ("small", (0.055, 0.04, 0.12, 0.6)),
    ("meme", (0.07, 0.05, 0.15, 0.5)),
])
def test_channel_tiers_carry_the_seed_final_tier_values(config: StrategiesConfig, tier: str,
                                                        values: tuple[float, ...]) -> None:
    p = config.channel.params.for_tier(tier)
    assert (p.buy_zone, p.width_min, p.width_max, p.volume_ratio_min) == values
    assert p.rsi_min == 32 and p.take_profit_pct == 4.0  # the rest comes from the default


@pytest.mark.parametrize(("symbol", "tier", "breakout"), [
    ("BTC-USDT", "large", 1.008),
    ("ETH-BTC", "large", 1.008),
    ("XLM-BTC", "mid", 1.010),
    ("DOGE-USDT", "small", 1.015),
    ("PEPE-USDT", "meme", 1.020),
    ("UNLISTED-USDT", "small", 1.015),
    ("btc/usdt", "large", 1.008),
])
def test_a_symbols_tier_comes_from_its_base_asset(config: StrategiesConfig, symbol: str, tier: str,
                                                  breakout: float) -> None:
    assert config.swing.params.tier_of(symbol) == tier
    assert config.swing.params.for_symbol(symbol).breakout_factor == breakout


def test_the_tier_map_lists_the_seed_tiers() -> None:
    tiers = load_tiers()
    assert tiers.default_tier == "small"
    assert tiers.tiers["large"] == ("BTC", "ETH", "BNB", "SOL", "XRP", "ADA")
    assert tiers.tiers["small"] == ("SHIB", "TRX", "APT", "DOGE")
    assert (len(tiers.tiers["mid"]), len(tiers.tiers["meme"])) == (68, 20)
    assert base_asset("SOL-USDC") == "SOL" and base_asset("SOL") == "SOL"


def test_without_a_tier_map_every_symbol_gets_the_small_tier() -> None:
    params = TieredParams[SwingParams](default={}, tiers={"large": {"min_score": 35}, "small": {"min_score": 45}})
    assert params.for_symbol("BTC-USDT").min_score == 45
    assert params.with_tier_map(load_tiers()).for_symbol("BTC-USDT").min_score == 35


def test_thresholds_for_a_symbol_name_its_tier_and_values(config: StrategiesConfig) -> None:
    thresholds = config.channel.params.thresholds("BTC-USDT")
    assert thresholds["tier"] == "large"
    assert thresholds["buy_zone"] == 0.035 and thresholds["stop_loss_pct"] == 14.6


def test_params_hash_is_stable_and_follows_values_and_tiers(config: StrategiesConfig, tmp_path: Path) -> None:
    again = load_strategies()
    assert config.dca.params_hash() == again.dca.params_hash()
    assert len({section.params_hash() for _name, section in config.items()}) == 3
    changed = load_strategies(write(tmp_path, edited("rsi_max: 56", "rsi_max: 57")))
    assert changed.dca.params_hash() != config.dca.params_hash()
    assert changed.swing.params_hash() == config.swing.params_hash()
    moved = write(tmp_path, DEFAULT_TIERS.read_text().replace("XRP, ADA]", "XRP]"), "tiers.yml")
    assert load_strategies(DEFAULT_STRATEGIES, moved).swing.params_hash() != config.swing.params_hash()
    swing = config.swing
    assert swing.params_hash_for("BTC-USDT") == swing.params_hash_for("ETH-BTC")
    assert swing.params_hash_for("BTC-USDT") != swing.params_hash_for("UNLISTED-USDT")


def test_params_are_frozen(config: StrategiesConfig) -> None:
    with pytest.raises(ValidationError, match="frozen"):
        config.dca.params.default.min_drop_pct = 1.0  # type: ignore[misc]


def test_an_unknown_key_in_a_tier_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, edited("large: {breakout_factor: 1.008", "large: {breakout_factr: 1.008"))
    with pytest.raises(ConfigError) as error:
        load_strategies(path)
    assert f"{path}: swing.params.tiers.large.breakout_factr: unknown key" in str(error.value)


def test_a_bad_value_in_a_tier_names_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, edited("width_max: 0.08", "width_max: 8"))
    with pytest.raises(ConfigError, match=r"channel.params.tiers.large.width_max: Input should be less than or equal"):
        load_strategies(path)


def test_a_tier_that_breaks_a_rule_between_keys_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, edited("large: {buy_zone: 0.035", "large: {buy_zone: 0.8"))
    with pytest.raises(ConfigError, match=r"channel.params.tiers.large: .*buy_zone \(0.8\) must be below sell_zone"):
        load_strategies(path)


def test_a_bad_default_is_reported_once_under_default(tmp_path: Path) -> None:
    path = write(tmp_path, edited("rsi_max: 75", "rsi_max: high"))
    with pytest.raises(ConfigError) as error:
        load_strategies(path)
    lines = str(error.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"{path}: swing.params.default.rsi_max: Input should be a valid number")


def test_an_unknown_tier_name_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, edited("      mid: {}", "      middle: {}"))
    with pytest.raises(ConfigError, match=r"swing.params.tiers.middle.*Input should be 'large', 'mid', 'small' or"):
        load_strategies(path)


def test_an_unknown_strategy_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, edited("  timeframe: 15m", "  timeframe: 15m\n  enabeld: true"))
    with pytest.raises(ConfigError, match=r"dca.enabeld: unknown key; allowed keys here: enabled, timeframe"):
        load_strategies(path)


def test_an_indicator_period_error_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, edited("bb_length: 30", "bb_length: 1"))
    with pytest.raises(ConfigError, match=r"channel.indicators.bb_length: Input should be greater than or equal to 2"):
        load_strategies(path)
    with pytest.raises(ValidationError, match=r"macd_fast .* must be shorter than macd_slow"):
        IndicatorParams(macd_fast=26, macd_slow=12)


def test_tiers_file_errors_name_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "default_tier: tiny\ntiers:\n  large: [BTC]\n", "tiers.yml")
    with pytest.raises(ConfigError, match=r"tiers.yml: default_tier: Input should be 'large', 'mid', 'small' or"):
        load_strategies(DEFAULT_STRATEGIES, path)
    twice = write(tmp_path, "tiers:\n  large: [BTC]\n  mid: [BTC]\n", "twice.yml")
    with pytest.raises(ConfigError, match=r"twice.yml: .*BTC is listed in both large and mid"):
        load_tiers(twice)
    with pytest.raises(ValidationError, match="not an upper-case base asset"):
        TierMap(tiers={"large": ("btc",)})


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yml: config file not found"):
        load_strategies(tmp_path / "nope.yml")
