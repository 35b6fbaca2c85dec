"""From strategy decisions to signals: sizing, position caps, expiry, and the scan log. Pure functions.

A decision that passes every rule becomes a `NewSignal`; every decision, entered or not, becomes a
scan row saying what was decided and why, with the features and thresholds it was decided on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Self

from pydantic import Field, model_validator

from bridge.schemas import NewSignal
from controller.model import Frozen
from controller.scan.regime import RegimeReading


class SizingParams(Frozen):
    """Seed values: $50 a trade, at most 50% of a $10k paper balance deployed, 150 / 50 / 3 positions."""

    quote_amount: float = Field(50.0, gt=0, description="quote currency per entry before the regime multiplier")
    balance: float = Field(10_000.0, gt=0, description="balance the exposure cap is a share of")
    max_balance_share: float = Field(0.5, gt=0, le=1, description="share of balance open positions may use")
    max_open_total: int = Field(150, ge=1)
    max_open_per_strategy: int = Field(50, ge=1)
    max_open_per_symbol: int = Field(3, ge=1)
    expiry_candles: int = Field(2, ge=1, description="a signal expires this many candles after its candle closed")

    @model_validator(mode="after")
    def _one_entry_fits(self) -> Self:
        # Otherwise the exposure cap refuses every full-size entry and the controller emits nothing, silently.
        allowed = self.balance * self.max_balance_share
        if self.quote_amount > allowed:
            raise ValueError(f"quote_amount ({self.quote_amount:g}) is above what the exposure cap allows "
                             f"(balance x max_balance_share = {allowed:g}): no entry could ever be made")
        return self


@dataclass(frozen=True)
class Decision:
    """One strategy's verdict on one symbol, on the candle that closed at `candle_close`."""

    strategy: str
    exchange: str
    symbol: str
    timeframe_s: int
    candle_close: datetime
    price: float
    entry: bool
    confidence: float
    reason: str
    exits: Mapping[str, float | int | None]  # take_profit_pct, stop_loss_pct, time_limit_s, trailing_*
    features: Mapping[str, Any] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    params_hash: str | None = None


@dataclass
class OpenBook:
    """What is open now, for the caps: counts per strategy and symbol, and quote exposure."""

    total: int = 0
    by_strategy: Counter[str] = field(default_factory=Counter)
    by_symbol: Counter[str] = field(default_factory=Counter)
    exposure: float = 0.0

    @classmethod
    def from_signals(cls, rows: Iterable[Mapping[str, Any]]) -> OpenBook:
        book = cls()
        for row in rows:
            book.add(str(row["strategy"]), str(row["symbol"]), float(row["quote_amount"]))
        return book

    def add(self, strategy: str, symbol: str, quote_amount: float) -> None:
        self.total += 1
        self.by_strategy[strategy] += 1
        self.by_symbol[symbol] += 1
        self.exposure += quote_amount


@dataclass(frozen=True)
class Planned:
    decision: Decision
    outcome: str  # enter / skip / blocked (the scans.decision values)
    reason: str
    signal: NewSignal | None = None


def size_for(decision: Decision, regime: RegimeReading, book: OpenBook, sizing: SizingParams) -> tuple[float, str]:
    """The quote amount for an entry (0.0 when refused) and why."""
    if regime.blocks_entries:
        return 0.0, f"regime {regime.regime.value} blocks entries ({regime.reason})"
    if book.total >= sizing.max_open_total:
        return 0.0, f"max open positions reached ({book.total}/{sizing.max_open_total})"
    if book.by_strategy[decision.strategy] >= sizing.max_open_per_strategy:
        return 0.0, f"max open positions for {decision.strategy} reached ({sizing.max_open_per_strategy})"
    if book.by_symbol[decision.symbol] >= sizing.max_open_per_symbol:
        return 0.0, f"max open positions for {decision.symbol} reached ({sizing.max_open_per_symbol})"
    amount = sizing.quote_amount * regime.size_multiplier
    room = sizing.balance * sizing.max_balance_share - book.exposure
    if amount > room:
        return 0.0, f"exposure cap: {book.exposure:.2f} open of {sizing.balance * sizing.max_balance_share:.2f} allowed"
    note = "" if regime.size_multiplier == 1 else f" (x{regime.size_multiplier:g} for {regime.regime.value})"
    return amount, f"{decision.reason}; size {amount:g}{note}"


def plan(decisions: Sequence[Decision], regime: RegimeReading, book: OpenBook, sizing: SizingParams,
         blocked_symbols: Mapping[str, str], sim_now: datetime, wall_now: datetime) -> list[Planned]:
    """Decide what to emit. `sim_now` is the scan's clock (replayed or live), `wall_now` the database's:
    a signal stays valid for as long after `wall_now` as its candle leaves it in scan time."""
    planned: list[Planned] = []
    for decision in sorted(decisions, key=lambda d: (-d.confidence, d.strategy, d.symbol)):
        if not decision.entry:
            planned.append(Planned(decision, "skip", decision.reason))
            continue
        if block := blocked_symbols.get(decision.symbol):
            planned.append(Planned(decision, "blocked", block))
            continue
        valid_until = decision.candle_close + timedelta(seconds=sizing.expiry_candles * decision.timeframe_s)
        if valid_until <= sim_now:
            planned.append(Planned(decision, "blocked", f"stale: its candle closed at {decision.candle_close}"))
            continue
        amount, why = size_for(decision, regime, book, sizing)
        if amount <= 0:
            planned.append(Planned(decision, "blocked", why))
            continue
        exits = decision.exits
        signal = NewSignal(
            strategy=decision.strategy, exchange=decision.exchange, symbol=decision.symbol, side="buy",
            price=decision.price, quote_amount=amount, take_profit_pct=float(exits["take_profit_pct"]),
            stop_loss_pct=_optional(exits.get("stop_loss_pct")), time_limit_s=_optional_int(exits.get("time_limit_s")),
            trailing_activation_pct=_optional(exits.get("trailing_activation_pct")),
            trailing_delta_pct=_optional(exits.get("trailing_delta_pct")),
            expires_at=wall_now + (valid_until - sim_now), confidence=min(1.0, max(0.0, decision.confidence)),
            params_hash=decision.params_hash, features=dict(decision.features),
        )
        book.add(decision.strategy, decision.symbol, amount)
        planned.append(Planned(decision, "enter", why, signal))
    return planned


def _optional(value: float | int | None) -> float | None:
    if value is None or value != value or value <= 0:  # NaN or not set
        return None
    return float(value)


def _optional_int(value: float | int | None) -> int | None:
    number = _optional(value)
    return None if number is None else int(number)


def scan_row(item: Planned, timeframe: str, signal_id: str | None = None) -> dict[str, Any]:
    d = item.decision
    return {"candle_ts": d.candle_close, "strategy": d.strategy, "exchange": d.exchange, "symbol": d.symbol,
            "timeframe": timeframe, "decision": item.outcome, "reason": item.reason, "features": dict(d.features),
            "thresholds": dict(d.thresholds), "params_hash": d.params_hash, "signal_id": signal_id}
