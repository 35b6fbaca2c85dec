"""The one exit rule: stop loss, trailing stop, take profit and time limit of a long position.

The Hummingbot executor calls `check` on every tick (a tick is a candle whose high, low and close are the
price it sees), the ML labels and the shadow replay call `walk` over recorded candles after an entry. One rule,
so a label, a shadow outcome and a real trade of the same entry can only differ where the market did.

Order, as in the seed's V2 executor: stop loss, then trailing, then take profit, then time. A candle that
touches both the stop and the take profit is therefore a stop (the pessimistic reading of a candle whose path
inside is unknown). The peak is raised by the candle's high before the trailing stop is checked, for the
same reason. Works on `Decimal` (the executor) and on `float` (analytics) alike: no constant of either type
is mixed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

ExitReason = Literal["stop_loss", "trailing_stop", "take_profit", "time_limit"]
REASONS: tuple[ExitReason, ...] = ("stop_loss", "trailing_stop", "take_profit", "time_limit")


class Barriers(Protocol):
    """What a signal (or a strategy's exit params) carries: percentages of the entry price, seconds."""

    @property
    def take_profit_pct(self) -> object: ...

    @property
    def stop_loss_pct(self) -> object: ...

    @property
    def time_limit_s(self) -> object: ...

    @property
    def trailing_activation_pct(self) -> object: ...

    @property
    def trailing_delta_pct(self) -> object: ...


@dataclass(frozen=True)
class Hit:
    """An exit the rule calls for: why, at what price the order would be expected to fill, and the peak."""

    reason: ExitReason
    price: Any
    peak: Any


def _below(price: Any, pct: Any) -> Any:
    return price * (100 - pct) / 100


def _above(price: Any, pct: Any) -> Any:
    return price * (100 + pct) / 100


def check(barriers: Barriers, entry: Any, peak: Any, high: Any, low: Any, close: Any,
          held_s: float | None) -> tuple[Hit | None, Any]:
    """Apply the rule to one candle (or one tick: high = low = close = the price).

    `peak` is the highest price seen since entry before this candle; the returned second value is the peak
    after it. `held_s` is the time from the entry to the end of this candle (None: not known, no time limit).
    """
    new_peak = high if high > peak else peak
    if entry <= 0:
        return None, new_peak
    stop_loss = barriers.stop_loss_pct
    if stop_loss is not None:
        level = _below(entry, stop_loss)
        if low <= level:
            return Hit("stop_loss", level if level < high else high, new_peak), new_peak
    activation, delta = barriers.trailing_activation_pct, barriers.trailing_delta_pct
    if activation is not None and delta is not None and new_peak >= _above(entry, activation):
        level = _below(new_peak, delta)
        if low <= level:
            return Hit("trailing_stop", level if level < high else high, new_peak), new_peak
    take_profit = barriers.take_profit_pct
    if take_profit is not None:
        level = _above(entry, take_profit)
        if high >= level:
            return Hit("take_profit", level if level > low else low, new_peak), new_peak
    limit = barriers.time_limit_s
    if limit is not None and held_s is not None and held_s >= limit:
        return Hit("time_limit", close, new_peak), new_peak
    return None, new_peak


@dataclass(frozen=True)
class Outcome:
    """Where a walk over candles ended: the exit (None while the horizon is not complete) and its index."""

    hit: Hit | None
    index: int | None


def walk(barriers: Barriers, entry: float, entry_time_s: float, times_s: Sequence[float], highs: Sequence[float],
         lows: Sequence[float], closes: Sequence[float], candle_s: float) -> Outcome:
    """Walk the candles after an entry (each row's time is its open) until the rule calls an exit.

    Returns `Outcome(None, None)` when the candles end first: the horizon is incomplete, nothing is known yet.
    """
    peak = entry
    for i in range(len(closes)):
        held = times_s[i] + candle_s - entry_time_s
        hit, peak = check(barriers, entry, peak, highs[i], lows[i], closes[i], held)
        if hit is not None:
            return Outcome(hit, i)
    return Outcome(None, None)
