"""What the executor tracks: its orders and positions, with the money arithmetic of a position."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from hummingbot.core.data_type.common import TradeType

from bridge.schemas import Signal

ZERO = Decimal(0)
HUNDRED = Decimal(100)
NOISE = Decimal("1e-9")  # relative: below this share of the position, a remainder is rounding, never sold


def dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def timestamp(value: Any) -> float | None:
    """Seconds since the epoch from a datetime (direct transport) or an ISO string (PostgREST)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.timestamp()


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00:00"


@dataclass
class TrackedOrder:
    order_id: str
    purpose: Literal["entry", "exit"]
    side: TradeType
    amount: Decimal
    price: Decimal | None
    created_at: float
    filled: Decimal = ZERO
    fills: int = 0
    done: bool = False
    repriced: bool = False
    missing_since: float | None = None
    cancel_sent_at: float | None = None  # cancel_pending: asked, not yet confirmed
    replace: str | None = None           # what to place once the cancel is confirmed: "market", "reprice"
    reconciling_since: float | None = None  # handed to the connector's tracker to ask the exchange its status
    level: int | None = None             # a DCA grid level (1 = nearest the entry): rests until filled or exit


@dataclass
class Position:
    signal: Signal
    opened_at: float | None = None
    entry_amount: Decimal = ZERO     # base bought (gross, as filled)
    entry_quote: Decimal = ZERO      # quote paid (before fees)
    entry_fee_base: Decimal = ZERO   # of which the exchange kept as its fee (Binance: buy fee in the base coin)
    exit_amount: Decimal = ZERO      # base sold
    exit_quote: Decimal = ZERO       # quote received (before fees)
    fees_quote: Decimal = ZERO       # every fee, valued in quote where a rate exists
    base_fee_quote: Decimal = ZERO   # the part of fees_quote taken in the base coin (already out of open_amount)
    unpriced_fees: dict[str, Decimal] = field(default_factory=dict)  # fees in a third asset with no rate
    peak: Decimal = ZERO             # highest bid since entry, for the trailing stop
    peak_reported: Decimal = ZERO
    peak_reported_at: float = 0.0
    exit_reason: str | None = None
    failures: int = 0                # failed exit orders in a row
    retry_at: float = 0.0            # no new exit before this time (backoff after a failure)
    stuck: str | None = None         # why the bot gave up on this position (it needs a person)
    manual_close: str | None = None  # who asked for a close at market (a person, or the controller's exit signal)
    close_reason: str = "manual"     # the exit reason that close records: manual, or strategy_exit
    orders: dict[str, TrackedOrder] = field(default_factory=dict)
    closed: bool = False
    grid_placed: bool = False        # the DCA grid's levels were placed (once, after the entry filled)

    @property
    def entry_price(self) -> Decimal:
        return self.entry_quote / self.entry_amount if self.entry_amount else ZERO

    @property
    def open_amount(self) -> Decimal:
        """What the position holds in the wallet: bought, less the fee kept in the coin, less sold."""
        return self.entry_amount - self.entry_fee_base - self.exit_amount

    def open_orders(self, purpose: str | None = None) -> list[TrackedOrder]:
        return [o for o in self.orders.values() if not o.done and (purpose is None or o.purpose == purpose)]

    def busy(self) -> bool:
        """An order is working or a cancel awaits confirmation: no exit may be placed. A resting grid level
        alone leaves the position to its barriers."""
        return any(o.level is None or o.cancel_sent_at is not None for o in self.open_orders())

    def add_fill(self, order: TrackedOrder, price: Decimal, amount: Decimal, base_taken: Decimal, ts: float) -> None:
        """One fill of one of this position's orders (`base_taken`: the fee the exchange kept in the coin)."""
        order.filled += amount
        order.fills += 1
        if order.purpose == "entry":
            self.entry_amount += amount
            self.entry_quote += price * amount
            self.entry_fee_base += base_taken
            self.opened_at = self.opened_at or ts
        else:
            self.exit_amount += amount
            self.exit_quote += price * amount

    def add_fee(self, asset: str, amount: Decimal, in_quote: Decimal | None, base: str) -> None:
        """A fill's fee; one with no quote value is kept in its own asset."""
        if in_quote is None:
            self.unpriced_fees[asset] = self.unpriced_fees.get(asset, ZERO) + amount
            return
        self.fees_quote += in_quote
        if asset == base:
            self.base_fee_quote += in_quote

    def request_close(self, who: str, reason: str) -> None:
        """Exit at market once nothing rests, whatever the barriers say; a person asked, so a stuck position is
        tried again from the start."""
        self.manual_close, self.close_reason = who, reason
        self.stuck, self.failures, self.retry_at = None, 0, 0.0

    def result(self, last_bid: Decimal) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(dust, exit price, P&L in quote, P&L in percent) of the closed position.

        Net of every fee. A fee taken in the base coin is already out of what was sold, so only fees paid in
        quote (or valued from a third asset) are subtracted; dust stays in the wallet and is valued at the
        exit price, so the P&L is the wallet's change. `last_bid` prices an exit that sold nothing."""
        dust = max(self.open_amount, ZERO)
        exit_price = self.exit_quote / self.exit_amount if self.exit_amount > 0 else last_bid
        pnl = self.exit_quote - self.entry_quote - (self.fees_quote - self.base_fee_quote) + dust * exit_price
        pnl_pct = pnl / self.entry_quote * HUNDRED if self.entry_quote else ZERO
        return dust, exit_price, pnl, pnl_pct


@dataclass
class PendingSignal:
    signal: Signal
    started_at: float

