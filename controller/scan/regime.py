"""Market-regime guard from a BTC market, and per-symbol protection after stop losses. Pure functions.

Regimes (thresholds from SEED_SYSTEM.md §3 "Protection", all configurable), checked in this order:
- PANIC: BTC 1h change <= -3%, or 24h <= -5%, or 24h volatility >= 12%, or a decline from the recent peak
  of 3% within 24h or 5% within 48h                                      -> entries blocked
- CAUTION: 1h <= -2%, or 4h <= -3%, or 24h <= -3%, or volatility >= 8%  -> size halved
- EUPHORIA: 1h >= +3%, or 24h >= +8%                                    -> size x0.7
- NORMAL otherwise                                                      -> size x1
Volatility is the 24h high-low range as a percentage of the last close. The seed lists "volatility >= 8
while rising" under EUPHORIA too, but checks CAUTION first, so a volatile market is CAUTION either way.

The regime market is resolved per exchange (`markets`, else the first of `candidates` with fresh candles).
With no fresh candles the regime is UNKNOWN and blocks entries, unless `on_missing` says to act as
CAUTION or NORMAL: never a silent guess.

Per strategy: BTC volatility turns a strategy off (CHANNEL at 8 %, back on at <= 6 % after 2 h; SWING 15 %;
DCA 20 %). Stops widen with volatility and regime, up to a cap per tier.

Per symbol: a cooldown after a stop loss (by tier), and a 24 h ban after 3 consecutive stop losses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

from pydantic import Field, StringConstraints, field_validator, model_validator

from controller.config_base import Frozen

if TYPE_CHECKING:
    import pandas as pd


class Regime(StrEnum):
    PANIC = "PANIC"
    CAUTION = "CAUTION"
    NORMAL = "NORMAL"
    EUPHORIA = "EUPHORIA"
    UNKNOWN = "UNKNOWN"


class VolatilityGate(Frozen):
    """A strategy is off while BTC's 24h volatility is at or above `off_at_pct`; it comes back once the
    volatility has stayed at or below `on_at_pct` for `on_after_h` (defaults: back as soon as it is below)."""

    off_at_pct: float = Field(gt=0)
    on_at_pct: float | None = Field(None, gt=0)
    on_after_h: float = Field(0.0, ge=0)


class StopWidening(Frozen):
    """Stops widen with BTC volatility, then by regime, and never beyond the tier's cap (seed §3): the stop
    is max(base, min(base x (1 + (vol - from) x per_point) x regime factor, cap)); a base stop already
    wider than the cap is kept as configured."""

    enabled: bool = True
    from_volatility_pct: float = Field(5.0, ge=0)
    per_volatility_point: float = Field(0.003, ge=0, description="0.3 % wider per volatility point above `from`")
    regime_factor: dict[Regime, float] = Field(default_factory=lambda: {
        Regime.PANIC: 1.5, Regime.CAUTION: 1.3, Regime.EUPHORIA: 1.2, Regime.NORMAL: 1.0})
    cap_pct: dict[str, float] = Field(default_factory=lambda: {"large": 10.0, "mid": 12.0, "small": 15.0,
                                                               "meme": 15.0})


def _default_gates() -> dict[str, VolatilityGate]:
    return {"channel": VolatilityGate(off_at_pct=8.0, on_at_pct=6.0, on_after_h=2.0),
            "swing": VolatilityGate(off_at_pct=15.0), "dca": VolatilityGate(off_at_pct=20.0)}


Market = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]+-[A-Z0-9]+$")]
Hours = Annotated[float, Field(ge=0, le=720)]


class RegimeParams(Frozen):
    markets: dict[str, Market] = Field(
        default_factory=lambda: {"binance": "BTC-USDT", "binanceusdm": "BTC-USDT", "bybit": "BTC-USDT",
                                 "okx": "BTC-USDT", "kraken": "BTC-USD", "coinbase": "BTC-USD",
                                 "binanceus": "BTC-USD", "bitstamp": "BTC-USD"},
        description="exchange -> the market whose moves set the regime on it")
    candidates: tuple[Market, ...] = Field(("BTC-USDT", "BTC-USD", "BTC-USDC", "BTC-PERP"), min_length=1,
                                        description="tried in order on an exchange not in `markets`")
    on_missing: Literal["block", "caution", "normal"] = Field(
        "block", description="with no fresh regime candles: block entries, or act as CAUTION / NORMAL")
    max_age_s: float = Field(1800.0, gt=0, description="regime candles older than this are not fresh")
    panic_1h_pct: float = Field(-3.0, lt=0, ge=-100)
    panic_24h_pct: float = Field(-5.0, lt=0, ge=-100)
    panic_volatility_pct: float = Field(12.0, gt=0)
    panic_peak_decline_24h_pct: float = Field(3.0, gt=0, le=100,
                                              description="decline from the 24 h peak that is PANIC")
    panic_peak_decline_48h_pct: float = Field(5.0, gt=0, le=100,
                                              description="decline from the 48 h peak that is PANIC")
    caution_1h_pct: float = Field(-2.0, lt=0, ge=-100)
    caution_4h_pct: float = Field(-3.0, lt=0, ge=-100)
    caution_24h_pct: float = Field(-3.0, lt=0, ge=-100)
    caution_volatility_pct: float = Field(8.0, gt=0)
    euphoria_1h_pct: float = Field(3.0, gt=0)
    euphoria_24h_pct: float = Field(8.0, gt=0)
    size_multiplier: dict[Regime, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {Regime.PANIC: 0.0, Regime.CAUTION: 0.5, Regime.EUPHORIA: 0.7, Regime.NORMAL: 1.0,
                                 Regime.UNKNOWN: 0.0},
        description="entry size factor per regime, 0 (no entries) to 1 (full size); every regime needs one")
    volatility_gates: dict[str, VolatilityGate] = Field(default_factory=_default_gates)
    stops: StopWidening = StopWidening()

    def markets_for(self, exchange: str) -> tuple[str, ...]:
        """The regime markets to try on `exchange`, in order."""
        configured = self.markets.get(exchange)
        return (configured,) if configured else self.candidates

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        # A missing regime would fail only when the market enters it; a panic milder than caution would never fire.
        missing = [r.value for r in Regime if r not in self.size_multiplier]
        if missing:
            raise ValueError(f"size_multiplier needs a value for every regime; missing: {', '.join(missing)}")
        if self.panic_1h_pct > self.caution_1h_pct or self.panic_24h_pct > self.caution_24h_pct:
            raise ValueError("panic_*_pct must be at or below the matching caution_*_pct")
        if self.panic_volatility_pct < self.caution_volatility_pct:
            raise ValueError("panic_volatility_pct must be at or above caution_volatility_pct")
        return self


class ProtectionParams(Frozen):
    cooldown_after_stop_h: dict[str, Hours] = Field(
        default_factory=lambda: {"large": 4.0, "mid": 6.0, "small": 12.0, "meme": 24.0},
        description="tier -> no new entry on a symbol this long after a stop (seed: 4 / 6 / 12 / 24 h)")
    ban_after_consecutive_stops: int = Field(3, ge=1, le=100)
    ban_h: float = Field(24.0, ge=0, le=720)

    @field_validator("cooldown_after_stop_h", mode="before")
    @classmethod
    def _one_for_every_tier(cls, value: Any) -> Any:
        # A single number (the earlier form of this key) applies to every tier.
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            return dict.fromkeys(("large", "mid", "small", "meme"), value)
        return value

    def cooldown_h(self, tier: str) -> float:
        return self.cooldown_after_stop_h.get(tier, max(self.cooldown_after_stop_h.values(), default=0.0))

    def longest_h(self) -> float:
        return max(self.ban_h, *self.cooldown_after_stop_h.values(), 0.0)


@dataclass(frozen=True)
class RegimeReading:
    regime: Regime
    size_multiplier: float
    reason: str
    change_1h_pct: float | None = None
    change_4h_pct: float | None = None
    change_24h_pct: float | None = None
    volatility_24h_pct: float | None = None
    market: str | None = None
    peak_decline_24h_pct: float | None = None
    peak_decline_48h_pct: float | None = None
    disabled: Mapping[str, str] = field(default_factory=dict)  # strategy -> why volatility turned it off

    @property
    def blocks_entries(self) -> bool:
        return self.size_multiplier <= 0

    def features(self) -> dict[str, float | str | None]:
        return {"regime": self.regime.value, "regime_market": self.market, "btc_change_1h_pct": self.change_1h_pct,
                "btc_change_4h_pct": self.change_4h_pct, "btc_change_24h_pct": self.change_24h_pct,
                "btc_volatility_24h_pct": self.volatility_24h_pct}


def _change_pct(closes: pd.Series, now: pd.Timestamp, hours: float) -> float | None:
    """Percent change from the last close at or before now-hours to the last close."""
    import pandas as pd  # here: controller.config imports this module, and every CLI command would pay for pandas
    past = closes[closes.index <= now - pd.Timedelta(hours=hours)]
    if past.empty:
        return None
    return (closes.iloc[-1] / past.iloc[-1] - 1) * 100


def _decline_pct(seen: pd.DataFrame, now: pd.Timestamp, hours: float) -> float | None:
    """Percent the last close lies below the highest close of the last `hours` (None without that history)."""
    import pandas as pd  # here: controller.config imports this module, and every CLI command would pay for pandas
    if seen["ts"].iloc[0] > now - pd.Timedelta(hours=hours * 0.5):
        return None
    peak = seen.loc[seen["ts"] > now - pd.Timedelta(hours=hours), "close"].max()
    return float((1 - seen["close"].iloc[-1] / peak) * 100)


def unknown(params: RegimeParams, why: str) -> RegimeReading:
    """The reading when the regime market has no fresh candles: UNKNOWN (blocks), or what `on_missing` says."""
    if params.on_missing == "block":
        return RegimeReading(Regime.UNKNOWN, params.size_multiplier[Regime.UNKNOWN], f"regime unknown: {why}")
    regime = Regime.CAUTION if params.on_missing == "caution" else Regime.NORMAL
    return RegimeReading(regime, params.size_multiplier[regime],
                         f"regime unknown: {why}; acting as {regime.value} (regime.on_missing: {params.on_missing})")


def classify(btc: pd.DataFrame, now: datetime, params: RegimeParams, market: str = "BTC",
             timeframe_s: int = 300) -> RegimeReading:
    """The regime at `now` from the regime market's candles (columns ts = open time, high, low, close;
    ideally 48 h of them), using only candles up to `now`."""
    import pandas as pd  # here: controller.config imports this module, and every CLI command would pay for pandas
    now_ts = pd.Timestamp(now)
    seen = btc[btc["ts"] <= now_ts] if not btc.empty else btc
    if seen.empty:
        return unknown(params, f"no {market} candles")
    last = pd.Timestamp(seen["ts"].iloc[-1])
    closed = last + pd.Timedelta(seconds=timeframe_s)
    if closed < now_ts - pd.Timedelta(seconds=params.max_age_s):
        return unknown(params, f"last {market} candle closed at {closed:%Y-%m-%d %H:%M}, not fresh")
    seen = seen.reset_index(drop=True)
    closes = pd.Series(seen["close"].to_numpy(), index=pd.DatetimeIndex(seen["ts"]))
    c1, c4, c24 = (_change_pct(closes, now_ts, h) for h in (1, 4, 24))
    d24, d48 = _decline_pct(seen, now_ts, 24), _decline_pct(seen, now_ts, 48)
    vol_series = _volatility_series(seen)
    vol = float(vol_series.iloc[-1])

    def at_most(value: float | None, limit: float) -> bool:
        return value is not None and value <= limit

    def at_least(value: float | None, limit: float) -> bool:
        return value is not None and value >= limit

    p = params
    falling = at_most(c1, p.caution_1h_pct) or at_most(c4, p.caution_4h_pct) or at_most(c24, p.caution_24h_pct)
    if at_most(c1, p.panic_1h_pct) or at_most(c24, p.panic_24h_pct) or vol >= p.panic_volatility_pct:
        regime, why = Regime.PANIC, "BTC falling hard or too volatile"
    elif at_least(d24, p.panic_peak_decline_24h_pct) or at_least(d48, p.panic_peak_decline_48h_pct):
        regime, why = Regime.PANIC, "BTC declining from its peak"
    elif falling or vol >= p.caution_volatility_pct:
        regime, why = Regime.CAUTION, "BTC falling or volatile"
    elif at_least(c1, p.euphoria_1h_pct) or at_least(c24, p.euphoria_24h_pct):
        regime, why = Regime.EUPHORIA, "BTC rising fast"
    else:
        regime, why = Regime.NORMAL, "BTC steady"

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.2f}%"

    reason = (f"{why} ({market}): 1h {fmt(c1)}, 4h {fmt(c4)}, 24h {fmt(c24)}, volatility {vol:.2f}%, "
              f"from peak 24h {fmt(None if d24 is None else -d24)} 48h {fmt(None if d48 is None else -d48)}")
    disabled = disabled_strategies(vol_series, now_ts, p.volatility_gates)
    return RegimeReading(regime, p.size_multiplier[regime], reason, c1, c4, c24, vol, market, d24, d48, disabled)


def _volatility_series(seen: pd.DataFrame) -> pd.Series:
    """The 24 h high-low range as a percentage of the close, at every candle (trailing window)."""
    import pandas as pd  # here: controller.config imports this module, and every CLI command would pay for pandas
    frame = seen.set_index(pd.DatetimeIndex(seen["ts"]))
    high = frame["high"].rolling("24h").max()
    low = frame["low"].rolling("24h").min()
    return (high - low) / frame["close"] * 100


def disabled_strategies(volatility: pd.Series, now: pd.Timestamp,
                        gates: Mapping[str, VolatilityGate]) -> dict[str, str]:
    """Strategies that BTC volatility turns off at `now`, with why (hysteresis read from the history)."""
    import pandas as pd  # here: controller.config imports this module, and every CLI command would pay for pandas
    current = float(volatility.iloc[-1])
    off: dict[str, str] = {}
    for name, gate in gates.items():
        if current >= gate.off_at_pct:
            off[name] = f"BTC volatility {current:.2f}% >= {gate.off_at_pct:g}% turns {name} off"
            continue
        if gate.on_at_pct is None:
            continue
        breached = volatility[volatility >= gate.off_at_pct]
        if breached.empty:
            continue
        since = volatility[volatility.index > breached.index[-1]]
        calm = since[since <= gate.on_at_pct]
        # Back on once every reading of the last `on_after_h` is calm (and there were such readings).
        recent = since[since.index > now - pd.Timedelta(hours=gate.on_after_h)]
        calm_long_enough = (not calm.empty and calm.index[0] <= now - pd.Timedelta(hours=gate.on_after_h)
                            and bool((recent <= gate.on_at_pct).all()))
        if not calm_long_enough:
            off[name] = (f"{name} off since BTC volatility reached {gate.off_at_pct:g}%: back on at <= "
                         f"{gate.on_at_pct:g}% for {gate.on_after_h:g} h (now {current:.2f}%)")
    return off


def widened_stop(stop_pct: float | None, reading: RegimeReading, tier: str, params: StopWidening) -> float | None:
    """The stop loss for an entry now: wider in volatile or nervous markets, capped per tier."""
    if stop_pct is None or not params.enabled:
        return stop_pct
    vol = reading.volatility_24h_pct or 0.0
    factor = (1 + max(0.0, vol - params.from_volatility_pct) * params.per_volatility_point)
    factor *= params.regime_factor.get(reading.regime, 1.0)
    cap = params.cap_pct.get(tier, max(params.cap_pct.values(), default=stop_pct))
    return max(stop_pct, min(stop_pct * factor, cap))


@dataclass(frozen=True)
class ClosedTrade:
    symbol: str
    exit_reason: str
    closed_at: datetime


def symbol_block(trades: Sequence[ClosedTrade], symbol: str, now: datetime,
                 params: ProtectionParams, tier: str = "small") -> str | None:
    """Why `symbol` (of `tier`) may not be entered at `now` (cooldown or ban after stop losses), or None."""
    mine = sorted((t for t in trades if t.symbol == symbol and t.closed_at <= now), key=lambda t: t.closed_at)
    if not mine:
        return None
    streak = 0
    for trade in reversed(mine):
        if trade.exit_reason != "stop_loss":
            break
        streak += 1
    last = mine[-1]
    if streak >= params.ban_after_consecutive_stops:
        until = last.closed_at + timedelta(hours=params.ban_h)
        if now < until:
            return f"banned until {until:%Y-%m-%d %H:%M} after {streak} consecutive stop losses"
    if last.exit_reason == "stop_loss":
        hours = params.cooldown_h(tier)
        until = last.closed_at + timedelta(hours=hours)
        if now < until:
            return f"cooling down until {until:%Y-%m-%d %H:%M} after a stop loss ({hours:g} h for {tier})"
    return None
