"""Market-regime guard from BTC, and per-symbol protection after stop losses. Pure functions.

Regimes (thresholds from SEED_SYSTEM.md "Protection", all configurable):
- PANIC: BTC 1h change <= -3%, or 24h <= -5%, or 24h volatility >= 12%  -> entries blocked
- CAUTION: 1h <= -2%, or 4h <= -3%, or 24h <= -3%, or volatility >= 8%  -> size halved
- EUPHORIA: 1h >= +3%, or 24h >= +8%, or volatility >= 8% while rising  -> size x0.7
- NORMAL otherwise                                                      -> size x1
Checked in that order. Volatility is the 24h high-low range as a percentage of the last close. When
volatility alone would say CAUTION and BTC is up over 24h, the reading is EUPHORIA (the seed's
"volatility >= 8 while rising").

Per symbol: a cooldown after a stop loss, and a 24 h ban after 3 consecutive stop losses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Self

import pandas as pd
from pydantic import Field, model_validator

from controller.model import Frozen


class Regime(StrEnum):
    PANIC = "PANIC"
    CAUTION = "CAUTION"
    NORMAL = "NORMAL"
    EUPHORIA = "EUPHORIA"


class RegimeParams(Frozen):
    symbol: str = Field("BTC-USDT", pattern=r"^[A-Z0-9]+-[A-Z0-9]+$",
                        description="the market whose moves set the regime")
    panic_1h_pct: float = Field(-3.0, lt=0, ge=-100)
    panic_24h_pct: float = Field(-5.0, lt=0, ge=-100)
    panic_volatility_pct: float = Field(12.0, gt=0)
    caution_1h_pct: float = Field(-2.0, lt=0, ge=-100)
    caution_4h_pct: float = Field(-3.0, lt=0, ge=-100)
    caution_24h_pct: float = Field(-3.0, lt=0, ge=-100)
    caution_volatility_pct: float = Field(8.0, gt=0)
    euphoria_1h_pct: float = Field(3.0, gt=0)
    euphoria_24h_pct: float = Field(8.0, gt=0)
    size_multiplier: dict[Regime, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: {Regime.PANIC: 0.0, Regime.CAUTION: 0.5, Regime.EUPHORIA: 0.7, Regime.NORMAL: 1.0},
        description="entry size factor per regime, 0 (no entries) to 1 (full size); every regime needs one")
    unknown_is: Regime = Field(Regime.CAUTION, description="regime when there is no BTC data to judge by")

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
    cooldown_after_stop_h: float = Field(4.0, ge=0, le=720,
                                         description="no new entry on a symbol this long after a stop")
    ban_after_consecutive_stops: int = Field(3, ge=1, le=100)
    ban_h: float = Field(24.0, ge=0, le=720)


@dataclass(frozen=True)
class RegimeReading:
    regime: Regime
    size_multiplier: float
    reason: str
    change_1h_pct: float | None = None
    change_4h_pct: float | None = None
    change_24h_pct: float | None = None
    volatility_24h_pct: float | None = None

    @property
    def blocks_entries(self) -> bool:
        return self.size_multiplier <= 0

    def features(self) -> dict[str, float | str | None]:
        return {"regime": self.regime.value, "btc_change_1h_pct": self.change_1h_pct,
                "btc_change_4h_pct": self.change_4h_pct, "btc_change_24h_pct": self.change_24h_pct,
                "btc_volatility_24h_pct": self.volatility_24h_pct}


def _change_pct(closes: pd.Series, now: pd.Timestamp, hours: float) -> float | None:
    """Percent change from the last close at or before now-hours to the last close."""
    past = closes[closes.index <= now - pd.Timedelta(hours=hours)]
    if past.empty:
        return None
    return (closes.iloc[-1] / past.iloc[-1] - 1) * 100


def classify(btc: pd.DataFrame, now: datetime, params: RegimeParams) -> RegimeReading:
    """The regime at `now` from BTC candles (columns ts, high, low, close), using only candles up to `now`."""
    now_ts = pd.Timestamp(now)
    seen = btc[btc["ts"] <= now_ts] if not btc.empty else btc
    if seen.empty or seen["ts"].iloc[-1] < now_ts - pd.Timedelta(hours=2):
        return RegimeReading(params.unknown_is, params.size_multiplier[params.unknown_is],
                             f"no recent {params.symbol} candles: treated as {params.unknown_is.value}")
    closes = pd.Series(seen["close"].to_numpy(), index=pd.DatetimeIndex(seen["ts"]))
    c1, c4, c24 = (_change_pct(closes, now_ts, h) for h in (1, 4, 24))
    day = seen[seen["ts"] > now_ts - pd.Timedelta(hours=24)]
    vol = (day["high"].max() - day["low"].min()) / closes.iloc[-1] * 100

    def at_most(value: float | None, limit: float) -> bool:
        return value is not None and value <= limit

    def at_least(value: float | None, limit: float) -> bool:
        return value is not None and value >= limit

    p = params
    falling = at_most(c1, p.caution_1h_pct) or at_most(c4, p.caution_4h_pct) or at_most(c24, p.caution_24h_pct)
    volatile = vol >= p.caution_volatility_pct
    rising = at_least(c24, 0.0)
    if at_most(c1, p.panic_1h_pct) or at_most(c24, p.panic_24h_pct) or vol >= p.panic_volatility_pct:
        regime, why = Regime.PANIC, "BTC falling hard or too volatile"
    elif falling or (volatile and not rising):
        regime, why = Regime.CAUTION, "BTC falling or volatile"
    elif at_least(c1, p.euphoria_1h_pct) or at_least(c24, p.euphoria_24h_pct) or volatile:
        regime, why = Regime.EUPHORIA, "BTC rising fast"
    else:
        regime, why = Regime.NORMAL, "BTC steady"

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:+.2f}%"

    reason = f"{why}: 1h {fmt(c1)}, 4h {fmt(c4)}, 24h {fmt(c24)}, volatility {vol:.2f}%"
    return RegimeReading(regime, p.size_multiplier[regime], reason, c1, c4, c24, float(vol))


@dataclass(frozen=True)
class ClosedTrade:
    symbol: str
    exit_reason: str
    closed_at: datetime


def symbol_block(trades: Sequence[ClosedTrade], symbol: str, now: datetime,
                 params: ProtectionParams) -> str | None:
    """Why `symbol` may not be entered at `now` (cooldown or ban after stop losses), or None."""
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
        until = last.closed_at + timedelta(hours=params.cooldown_after_stop_h)
        if now < until:
            return f"cooling down until {until:%Y-%m-%d %H:%M} after a stop loss"
    return None
