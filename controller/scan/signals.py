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
from controller.config_base import Frozen
from controller.scan.regime import Regime, RegimeReading, StopWidening, widened_stop


class QuoteSizing(Frozen):
    """Sizing in one quote currency: the amount per entry and the balance the exposure cap is a share of."""

    amount: float = Field(gt=0, description="quote currency per entry before the regime multiplier")
    balance: float = Field(gt=0, description="balance in this quote currency the exposure cap is a share of")


def _usd_like() -> dict[str, QuoteSizing]:
    return {q: QuoteSizing(amount=50.0, balance=10_000.0) for q in ("USDT", "USD", "USDC")}


class SizingParams(Frozen):
    """Seed values: $50 a trade, at most 50% of a $10k paper balance deployed, 150 / 50 / 3 positions.

    Amounts are in the pair's quote currency (25 on BTC-USDT is 25 USDT; on ETH-BTC it would be 25 BTC), so
    each quote currency has its own rule, and the caps (exposure and counts) are kept per quote currency.
    A pair whose quote has no rule is skipped: `no sizing for quote BTC`."""

    quotes: dict[str, QuoteSizing] = Field(default_factory=_usd_like,
                                           description="quote currency -> amount per entry and balance")
    max_balance_share: float = Field(0.5, gt=0, le=1, description="share of balance open positions may use")
    max_open_total: int = Field(150, ge=1, description="per quote currency")
    max_open_per_strategy: int = Field(50, ge=1, description="per quote currency")
    max_open_per_symbol: int = Field(3, ge=1)
    expiry_candles: int = Field(2, ge=1, description="a signal expires this many candles after its candle closed")

    @model_validator(mode="before")
    @classmethod
    def _no_single_amount(cls, data: Any) -> Any:
        # The earlier `quote_amount` / `balance` meant 50 of whatever the quote was (25 BTC on a BTC pair).
        if isinstance(data, dict) and ({"quote_amount", "balance"} & set(data)):
            raise ValueError("quote_amount and balance are now per quote currency: write "
                             "quotes: {USDT: {amount: 50, balance: 10000}, BTC: {amount: 0.0005, balance: 0.1}}")
        return data

    @model_validator(mode="after")
    def _one_entry_fits(self) -> Self:
        # Otherwise the exposure cap refuses every full-size entry in that quote and nothing is emitted, silently.
        for quote, rule in self.quotes.items():
            allowed = rule.balance * self.max_balance_share
            if rule.amount > allowed:
                raise ValueError(f"quotes.{quote}.amount ({rule.amount:g}) is above what the exposure cap allows "
                                 f"(balance x max_balance_share = {allowed:g}): no {quote} entry could ever be made")
        return self


def quote_of(symbol: str) -> str:
    """`USDT` of `BTC-USDT`."""
    return symbol.rsplit("-", 1)[-1].upper()


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
    grid: Mapping[str, float] | None = None  # DCA: grid_levels, grid_spacing_pct, grid_level_share
    exit: bool = False  # the strategy's exit rule holds at this candle (for an open position)
    exit_reason: str | None = None


@dataclass
class QuoteBook:
    """What is open in one quote currency: counts per strategy and symbol, and exposure."""

    total: int = 0
    by_strategy: Counter[str] = field(default_factory=Counter)
    by_symbol: Counter[str] = field(default_factory=Counter)
    exposure: float = 0.0


@dataclass
class OpenBook:
    """What is open now, per quote currency, for the caps."""

    quotes: dict[str, QuoteBook] = field(default_factory=dict)

    @classmethod
    def from_signals(cls, rows: Iterable[Mapping[str, Any]]) -> OpenBook:
        book = cls()
        for row in rows:
            book.add(str(row["strategy"]), str(row["symbol"]), float(row["quote_amount"]))
        return book

    def of(self, quote: str) -> QuoteBook:
        return self.quotes.setdefault(quote, QuoteBook())

    def add(self, strategy: str, symbol: str, quote_amount: float) -> None:
        book = self.of(quote_of(symbol))
        book.total += 1
        book.by_strategy[strategy] += 1
        book.by_symbol[symbol] += 1
        book.exposure += quote_amount


@dataclass(frozen=True)
class Planned:
    decision: Decision
    outcome: str  # enter / skip / blocked (the scans.decision values)
    reason: str
    signal: NewSignal | None = None


@dataclass(frozen=True)
class Boost:
    """What the ML booster says about one entry, as `plan` applies it. Every arm's score and model are stamped
    on the signal (they are the evidence the arms are compared on); only the boosted arm also takes its place
    in the cycle's order (by the model's confidence instead of the rule's) and scales the size, before the caps."""

    confidence: float
    multiplier: float = 1.0
    model_version: str | None = None
    arm: str = "boosted"

    @property
    def steers(self) -> bool:
        return self.arm == "boosted"


def size_for(decision: Decision, regime: RegimeReading, open_book: OpenBook,
             sizing: SizingParams, boost: float = 1.0) -> tuple[float, str]:
    """The amount in the pair's quote currency for an entry (0.0 when refused) and why. `boost` (the ML size
    multiplier) scales the amount before the exposure cap is applied: a boost never exceeds the cap, it is cut
    to it; an entry whose unboosted size does not fit is refused as without ML."""
    if regime.blocks_entries:
        if regime.regime is Regime.UNKNOWN:
            return 0.0, regime.reason
        return 0.0, f"regime {regime.regime.value} blocks entries ({regime.reason})"
    quote = quote_of(decision.symbol)
    rule = sizing.quotes.get(quote)
    if rule is None:
        return 0.0, f"no sizing for quote {quote}"
    book = open_book.of(quote)
    if book.total >= sizing.max_open_total:
        return 0.0, f"max open {quote} positions reached ({book.total}/{sizing.max_open_total})"
    if book.by_strategy[decision.strategy] >= sizing.max_open_per_strategy:
        return 0.0, (f"max open {quote} positions for {decision.strategy} reached "
                     f"({sizing.max_open_per_strategy})")
    if book.by_symbol[decision.symbol] >= sizing.max_open_per_symbol:
        return 0.0, f"max open positions for {decision.symbol} reached ({sizing.max_open_per_symbol})"
    base = rule.amount * regime.size_multiplier
    amount = base * boost
    allowed = rule.balance * sizing.max_balance_share
    room = (allowed - book.exposure) / (1 + grid_share(decision))  # the whole grid may fill
    note = "" if regime.size_multiplier == 1 else f" (x{regime.size_multiplier:g} for {regime.regime.value})"
    if boost != 1:
        note += f" (ml x{boost:.3g})"
    if amount > room:
        if not (boost > 1 and base <= room):
            return 0.0, f"exposure cap: {book.exposure:g} {quote} open of {allowed:g} {quote} allowed"
        amount = room
        note += f", cut to the exposure cap ({allowed:g} {quote})"
    return amount, f"{decision.reason}; size {amount:g} {quote}{note}"


def plan(decisions: Sequence[Decision], regime: RegimeReading, book: OpenBook, sizing: SizingParams,
         blocked_symbols: Mapping[str, str], sim_now: datetime, wall_now: datetime,
         stops: StopWidening | None = None, boosts: Mapping[tuple[str, str], Boost] | None = None) -> list[Planned]:
    """Decide what to emit. `sim_now` is the scan's clock (replayed or live), `wall_now` the database's:
    a signal stays valid for as long after `wall_now` as its candle leaves it in scan time.

    Entries take the caps in order of confidence, the highest first: the ML confidence for an entry of the
    boosted arm in `boosts` (keyed (strategy, symbol)), the rule's otherwise; a boosted entry is also scaled
    (within the caps). Every entry in `boosts` carries its ML confidence and model version on its signal."""
    boosts = boosts or {}

    def order(d: Decision) -> tuple[float, str, str]:
        boost = boosts.get((d.strategy, d.symbol))
        return (-(boost.confidence if boost is not None and boost.steers else d.confidence), d.strategy, d.symbol)

    planned: list[Planned] = []
    for decision in sorted(decisions, key=order):
        if not decision.entry:
            planned.append(Planned(decision, "skip", decision.reason))
            continue
        if off := regime.disabled.get(decision.strategy):
            planned.append(Planned(decision, "blocked", off))
            continue
        if block := blocked_symbols.get(decision.symbol):
            planned.append(Planned(decision, "blocked", block))
            continue
        valid_until = decision.candle_close + timedelta(seconds=sizing.expiry_candles * decision.timeframe_s)
        if valid_until <= sim_now:
            planned.append(Planned(decision, "blocked", f"stale: its candle closed at {decision.candle_close}"))
            continue
        if quote_of(decision.symbol) not in sizing.quotes:
            planned.append(Planned(decision, "skip", f"no sizing for quote {quote_of(decision.symbol)}"))
            continue
        boost = boosts.get((decision.strategy, decision.symbol))
        amount, why = size_for(decision, regime, book, sizing,
                               boost.multiplier if boost is not None and boost.steers else 1.0)
        if amount <= 0:
            planned.append(Planned(decision, "blocked", why))
            continue
        exits = decision.exits
        stop = _optional(exits.get("stop_loss_pct"))
        if stops is not None:
            stop = widened_stop(stop, regime, str(decision.thresholds.get("tier", "small")), stops)
        signal = NewSignal(
            strategy=decision.strategy, exchange=decision.exchange, symbol=decision.symbol, side="buy",
            price=decision.price, quote_amount=amount, take_profit_pct=float(exits["take_profit_pct"]),
            stop_loss_pct=stop, time_limit_s=_optional_int(exits.get("time_limit_s")),
            trailing_activation_pct=_optional(exits.get("trailing_activation_pct")),
            trailing_delta_pct=_optional(exits.get("trailing_delta_pct")),
            expires_at=wall_now + (valid_until - sim_now), confidence=min(1.0, max(0.0, decision.confidence)),
            params_hash=decision.params_hash, features=dict(decision.features),
            ml_confidence=boost.confidence if boost is not None else None,
            model_version=boost.model_version if boost is not None else None,
            timeframe_s=decision.timeframe_s, candle_ts=decision.candle_close,
            **_grid_fields(decision, amount),
        )
        if boost is not None:
            why = f"{why}; ml {boost.arm} {boost.confidence:.2f}, size {amount:g}"
        book.add(decision.strategy, decision.symbol, amount * (1 + grid_share(decision)))
        planned.append(Planned(decision, "enter", why, signal))
    return planned


def grid_share(decision: Decision) -> float:
    """What the grid adds to the entry's exposure, as a multiple of the entry amount."""
    grid = decision.grid
    if not grid or not _optional(grid.get("grid_levels")):
        return 0.0
    return float(grid["grid_levels"]) * float(grid["grid_level_share"])


def _grid_fields(decision: Decision, amount: float) -> dict[str, Any]:
    if not grid_share(decision):
        return {}
    grid = decision.grid or {}
    return {"grid_levels": int(grid["grid_levels"]), "grid_spacing_pct": round(float(grid["grid_spacing_pct"]), 6),
            "grid_level_quote": amount * float(grid["grid_level_share"])}


EXIT_STATUSES = ("claimed", "executing")  # an entry the executor holds: a position that may be open


def plan_exits(decisions: Sequence[Decision], open_rows: Iterable[Mapping[str, Any]], sim_now: datetime,
               wall_now: datetime, sizing: SizingParams) -> list[Planned]:
    """Exit signals for open positions whose strategy's exit rule holds on the candle that just closed.
    Each refers to its entry signal; the queue keeps one open exit per entry."""
    by_key = {(d.strategy, d.symbol): d for d in decisions if d.exit}
    planned = []
    for row in open_rows:
        if row.get("kind", "entry") != "entry" or row.get("status") not in EXIT_STATUSES:
            continue
        decision = by_key.get((str(row["strategy"]), str(row["symbol"])))
        if decision is None or decision.exchange != row.get("exchange", decision.exchange):
            continue
        valid_until = decision.candle_close + timedelta(seconds=sizing.expiry_candles * decision.timeframe_s)
        if valid_until <= sim_now:
            continue
        reason = f"exit: {decision.exit_reason}"
        signal = NewSignal(
            strategy=decision.strategy, exchange=decision.exchange, symbol=decision.symbol, side="sell",
            price=decision.price, quote_amount=float(row["quote_amount"]),
            take_profit_pct=float(row["take_profit_pct"]), expires_at=wall_now + (valid_until - sim_now),
            confidence=1.0, params_hash=decision.params_hash,
            features={**decision.features, "exit_reason": decision.exit_reason}, kind="exit",
            entry_signal_id=row["id"], timeframe_s=decision.timeframe_s, candle_ts=decision.candle_close)
        planned.append(Planned(decision, "exit", reason, signal))
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
