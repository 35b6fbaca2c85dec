"""Strategy and indicator parameters: frozen models, per-tier overrides, loaded from conf/strategies.yml.

A symbol's tier comes from its base asset (`BTC` of `BTC-USDT`) through the tier map in `conf/tiers.yml`;
assets the map does not list take its `default_tier` (small, as in the earlier system). Each strategy's
parameters are a `TieredParams`: a `default` set plus, per tier, the keys that differ from it.

Percentages are in percent units (3.0 = 3 %); channel widths, zones and volatility are fractions. The
defaults below are the earlier system's final values (docs: SEED_SYSTEM.md §3); `conf/strategies.yml`
repeats them with a note on where each one comes from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from bridge.schemas import params_hash
from controller.config_base import PROJECT_ROOT, Frozen, load_model

Tier = Literal["large", "mid", "small", "meme"]
TIERS: tuple[Tier, ...] = ("large", "mid", "small", "meme")
DEFAULT_STRATEGIES = PROJECT_ROOT / "conf" / "strategies.yml"
DEFAULT_TIERS = PROJECT_ROOT / "conf" / "tiers.yml"
HOUR_S = 3600


class IndicatorParams(Frozen):
    """Periods of the indicators `controller.scan.indicators.compute` adds. Column names stay fixed
    (`sma_20` is the short SMA, `sma_50` the long one, whatever their lengths)."""

    rsi_length: int = Field(14, ge=2, le=500)
    macd_fast: int = Field(12, ge=2, le=500)
    macd_slow: int = Field(26, ge=2, le=500)
    macd_signal: int = Field(9, ge=1, le=500)
    bb_length: int = Field(20, ge=2, le=500)
    bb_std: float = Field(2.0, gt=0, le=10, description="band distance in population standard deviations")
    atr_length: int = Field(14, ge=1, le=500)
    adx_length: int = Field(14, ge=2, le=500)
    roc_length: int = Field(10, ge=1, le=500)
    sma_short: int = Field(20, ge=2, le=1000, description="period of the sma_20 column")
    sma_long: int = Field(50, ge=2, le=1000, description="period of the sma_50 column")
    ema_fast: int = Field(9, ge=2, le=1000)
    ema_slow: int = Field(21, ge=2, le=1000)
    volume_sma_length: int = Field(20, ge=2, le=1000)
    vwap_anchor: Literal["h", "D", "W", "M"] = Field(
        "D", description="VWAP restarts at each period of this pandas alias, in UTC (pandas-ta's default: D)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast ({self.macd_fast}) must be shorter than macd_slow ({self.macd_slow})")
        if self.ema_fast >= self.ema_slow:
            raise ValueError(f"ema_fast ({self.ema_fast}) must be shorter than ema_slow ({self.ema_slow})")
        if self.sma_short >= self.sma_long:
            raise ValueError(f"sma_short ({self.sma_short}) must be shorter than sma_long ({self.sma_long})")
        return self


def _pct(default: float, description: str, *, le: float = 100.0) -> Any:
    return Field(default, gt=0, le=le, description=description)


class ExitParams(Frozen):
    """The barriers every entry carries; the executor applies them. Each strategy sets its own defaults."""

    take_profit_pct: float = _pct(3.0, "take profit, percent above entry")
    stop_loss_pct: float = _pct(5.0, "stop loss, percent below entry")
    time_limit_s: int = Field(72 * HOUR_S, gt=0, le=30 * 24 * HOUR_S, description="close after this many seconds")
    trailing_activation_pct: float = _pct(1.0, "trailing stop arms at this gain, percent", le=1000.0)
    trailing_delta_pct: float = _pct(1.0, "trailing stop distance below the peak, percent")


class _RsiBand(Frozen):
    rsi_min: float = Field(0.0, ge=0, le=100)
    rsi_max: float = Field(100.0, ge=0, le=100)

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.rsi_min >= self.rsi_max:
            raise ValueError(f"rsi_min ({self.rsi_min:g}) must be below rsi_max ({self.rsi_max:g})")
        return self


class DcaParams(_RsiBand, ExitParams):
    """Buy a dip: the close has dropped far enough below the recent high, RSI low but not collapsing,
    volume above its average, volatility bounded."""

    lookback_bars: int = Field(16, ge=2, le=1000, description="window of the recent high, bars (incl. current)")
    min_drop_pct: float = Field(3.75, gt=0, le=100, description="drop from the window's max high to the close, %")
    rsi_min: float = Field(28.0, ge=0, le=100)
    rsi_max: float = Field(56.0, ge=0, le=100)
    volume_ratio_min: float = Field(1.29, ge=0, description="volume / volume_sma at least this")
    volatility_max: float = Field(0.15, gt=0, le=1, description="atr / close at most this (fraction)")
    grid_levels: int = Field(3, ge=0, le=20, description="resting limit buys below the entry (0: a single buy)")
    grid_spacing_pct: float = Field(1.4, gt=0, le=50, description="percent between grid levels")
    grid_level_share: float = Field(1.0, gt=0, le=10, description="each level's amount as a share of the entry's")
    grid_min_levels: int = Field(3, ge=0, le=20, description="confidence never takes the levels below this")
    grid_high_confidence: float = Field(0.75, ge=0, le=1, description="at or above: one more level, closer")
    grid_low_confidence: float = Field(0.65, ge=0, le=1, description="below: one level fewer, wider apart")
    exit_rsi: float = Field(77.0, gt=0, le=100, description="an open position gets an exit signal at RSI >= this")
    take_profit_pct: float = _pct(3.0, "take profit, percent above entry")
    stop_loss_pct: float = _pct(27.9, "stop loss, percent below entry")
    trailing_activation_pct: float = _pct(1.1, "trailing stop arms at this gain, percent", le=1000.0)
    trailing_delta_pct: float = _pct(2.6, "trailing stop distance below the peak, percent")


class SwingParams(_RsiBand, ExitParams):
    """Buy a breakout: close above the previous bars' high with a volume surge, in an up-trend,
    with a minimum score."""

    lookback_bars: int = Field(20, ge=2, le=1000, description="previous bars whose max high is the breakout level")
    breakout_factor: float = Field(1.010, gt=1.0, le=2.0, description="close > previous high x this")
    volume_surge: float = Field(1.3, ge=0, description="volume > volume_sma x this")
    rsi_min: float = Field(45.0, ge=0, le=100)
    rsi_max: float = Field(75.0, ge=0, le=100)
    volatility_max: float = Field(0.10, gt=0, le=1, description="atr / close at most this (fraction)")
    min_score: float = Field(40.0, ge=0, le=100)
    trend_spread_pct: float = Field(2.0, gt=0, le=100, description="sma_20 over sma_50 that earns all trend points")
    change_window_s: int = Field(24 * HOUR_S, gt=0, description="window of the price-change score component")
    change_min_pct: float = Field(3.0, ge=0, le=1000)
    change_max_pct: float = Field(15.0, gt=0, le=1000)
    take_profit_pct: float = _pct(8.0, "take profit, percent above entry")
    stop_loss_pct: float = _pct(6.0, "stop loss, percent below entry")
    trailing_activation_pct: float = _pct(4.0, "trailing stop arms at this gain, percent", le=1000.0)
    trailing_delta_pct: float = _pct(4.0, "trailing stop distance below the peak, percent")

    @model_validator(mode="after")
    def _change_band(self) -> Self:
        if self.change_min_pct >= self.change_max_pct:
            raise ValueError(f"change_min_pct ({self.change_min_pct:g}) must be below change_max_pct "
                             f"({self.change_max_pct:g})")
        return self


class ChannelParams(_RsiBand, ExitParams):
    """Buy the bottom of a Bollinger channel of bounded width; never the top."""

    buy_zone: float = Field(0.05, ge=0, le=1, description="enter at a channel position at most this")
    sell_zone: float = Field(0.75, ge=0, le=1, description="position from which the channel is 'top': never a buy")
    rsi_min: float = Field(32.0, ge=0, le=100)
    rsi_max: float = Field(65.0, ge=0, le=100)
    volatility_max: float = Field(0.03, gt=0, le=1, description="atr / close at most this (fraction)")
    width_min: float = Field(0.01, gt=0, le=1, description="bb_width (upper - lower) / mid at least this")
    width_max: float = Field(0.10, gt=0, le=1, description="bb_width at most this")
    volume_ratio_min: float = Field(0.8, ge=0, description="volume / volume_sma at least this")
    max_drop_pct: float = Field(8.9, gt=0, le=100, description="skip when the close is this far below the recent high")
    drop_lookback_bars: int = Field(24, ge=2, le=1000)
    exit_rsi: float = Field(72.0, gt=0, le=100, description="an open position gets an exit signal at RSI >= this")
    take_profit_pct: float = _pct(4.0, "take profit, percent above entry")
    stop_loss_pct: float = _pct(14.6, "stop loss, percent below entry")
    trailing_activation_pct: float = _pct(22.2, "trailing stop arms at this gain, percent", le=1000.0)
    trailing_delta_pct: float = _pct(24.8, "trailing stop distance below the peak, percent")

    @model_validator(mode="after")
    def _zones(self) -> Self:
        if self.buy_zone >= self.sell_zone:
            raise ValueError(f"buy_zone ({self.buy_zone:g}) must be below sell_zone ({self.sell_zone:g}): "
                             "a long never opens at the top of the channel")
        if self.width_min >= self.width_max:
            raise ValueError(f"width_min ({self.width_min:g}) must be below width_max ({self.width_max:g})")
        return self


def base_asset(symbol: str) -> str:
    """`BTC` of `BTC-USDT` (also `BTC/USDT`), upper case."""
    for separator in ("-", "/"):
        if separator in symbol:
            return symbol.split(separator, 1)[0].upper()
    return symbol.upper()


class TierMap(Frozen):
    """`conf/tiers.yml`: base assets by tier; any other asset is `default_tier`."""

    default_tier: Tier = "small"
    tiers: dict[Tier, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _each_asset_once(self) -> Self:
        seen: dict[str, str] = {}
        for tier, assets in self.tiers.items():
            for asset in assets:
                if asset != asset.upper() or not asset.isalnum():
                    raise ValueError(f"tiers.{tier}: {asset!r} is not an upper-case base asset such as BTC")
                if asset in seen:
                    raise ValueError(f"{asset} is listed in both {seen[asset]} and {tier}")
                seen[asset] = tier
        return self

    def tier_of(self, symbol: str) -> Tier:
        """The tier of `symbol`'s base asset (`default_tier` when unlisted)."""
        asset = base_asset(symbol)
        for tier, assets in self.tiers.items():
            if asset in assets:
                return tier
        return self.default_tier


class TieredParams[P: Frozen](Frozen):
    """A strategy's parameters: `default`, and per tier the keys that differ from it.

    After validation each listed tier holds its complete parameter set (default merged with the tier's
    keys), so an error in a tier names `tiers.<tier>.<key>`. A variant with another default therefore
    takes per-tier overrides again, not another object's `tiers`. The tier map is attached by
    `load_strategies` (or `with_tier_map`); without one every symbol is small.
    """

    default: P
    tiers: dict[Tier, P] = Field(default_factory=dict)
    _tier_map: TierMap = PrivateAttr(default_factory=TierMap)

    @model_validator(mode="before")
    @classmethod
    def _merge_tiers_into_default(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("tiers"), dict):
            return data
        model: type[BaseModel] = cls.model_fields["default"].annotation  # type: ignore[assignment]
        default = data.get("default", {})
        if isinstance(default, BaseModel):
            default = default.model_dump()
        if not isinstance(default, dict):
            return data
        try:
            model.model_validate(default)
        except ValueError:
            return data  # the default's own errors are reported once, under `default`
        merged = {}
        for tier, override in data["tiers"].items():
            if isinstance(override, BaseModel):
                override = override.model_dump(exclude_unset=True)
            merged[tier] = {**default, **override} if isinstance(override, dict) else override
        return {**data, "tiers": merged}

    @property
    def tier_map(self) -> TierMap:
        return self._tier_map

    def with_tier_map(self, tier_map: TierMap) -> TieredParams[P]:
        """A copy that resolves symbols through `tier_map`."""
        copy = self.model_copy()
        copy._tier_map = tier_map
        return copy

    def for_tier(self, tier: Tier) -> P:
        return self.tiers.get(tier, self.default)

    def tier_of(self, symbol: str) -> Tier:
        return self._tier_map.tier_of(symbol)

    def for_symbol(self, symbol: str) -> P:
        """The parameters that apply to `symbol` (by its base asset's tier)."""
        return self.for_tier(self.tier_of(symbol))

    def thresholds(self, symbol: str) -> dict[str, Any]:
        """What the scan log records as `thresholds_used`: the tier and every parameter."""
        return {"tier": self.tier_of(symbol), **self.for_symbol(symbol).model_dump()}


class StrategyConfig[P: Frozen](Frozen):
    """One strategy's section of `conf/strategies.yml`."""

    enabled: bool = True
    timeframe: str = Field("5m", pattern=r"^[1-9][0-9]*[mhd]$", description="candle timeframe, e.g. 1m, 15m, 1h")
    indicators: IndicatorParams = IndicatorParams()
    params: TieredParams[P]

    def params_hash(self) -> str:
        """Hash of everything that decides an entry: timeframe, indicator periods, every tier's values and
        the tier map (moving an asset to another tier changes its parameters)."""
        return params_hash({
            "timeframe": self.timeframe,
            "indicators": self.indicators.model_dump(mode="json"),
            "params": {tier: self.params.for_tier(tier).model_dump(mode="json") for tier in TIERS},
            "tier_map": self.params.tier_map.model_dump(mode="json"),
        })

    def params_hash_for(self, symbol: str) -> str:
        """Hash of the values that decide `symbol`'s entries (what a signal for `symbol` refers to)."""
        return params_hash({
            "timeframe": self.timeframe,
            "indicators": self.indicators.model_dump(mode="json"),
            "params": self.params.for_symbol(symbol).model_dump(mode="json"),
        })


class StrategiesConfig(Frozen):
    """`conf/strategies.yml`."""

    dca: StrategyConfig[DcaParams]
    swing: StrategyConfig[SwingParams]
    channel: StrategyConfig[ChannelParams]

    def items(self) -> list[tuple[str, StrategyConfig[Any]]]:
        return [("dca", self.dca), ("swing", self.swing), ("channel", self.channel)]

    def with_tier_map(self, tier_map: TierMap) -> StrategiesConfig:
        """A copy whose strategies resolve symbols through `tier_map`."""
        return self.model_copy(update={
            name: section.model_copy(update={"params": section.params.with_tier_map(tier_map)})
            for name, section in self.items()
        })


def load_tiers(path: Path = DEFAULT_TIERS) -> TierMap:
    """Load the tier map; errors name the file and the key."""
    return load_model(TierMap, path)


def load_strategies(path: Path = DEFAULT_STRATEGIES, tiers_path: Path = DEFAULT_TIERS) -> StrategiesConfig:
    """Load the strategies and attach the tier map; errors name the file and the key."""
    return load_model(StrategiesConfig, path).with_tier_map(load_tiers(tiers_path))
