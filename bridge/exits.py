"""The one exit rule: stop loss, trailing stop, take profit and time limit of a long position.

The Hummingbot executor calls `check` on every tick (a tick is a candle whose high, low and close are the
price it sees). The ML labels, the shadow replay and the paper book's parity tests call `walk` over the
ordered points of the recorded candles after an entry (`bridge.path`: open, the extreme nearer the open, the
other extreme, close), so a candle is read as the sequence of prices a live bot would have ticked through,
not as four numbers at once. One rule on the same points, so a label, a shadow outcome and a real trade of
the same entry can only differ where the market did.

At one tick the order is: stop loss, then trailing, then take profit, then time (a price exactly at two
levels is a stop). Along a path, `step` checks each point against the segment from the previous point: on
the way up only the take profit can be crossed, on the way down the stop and the trailing stop, whichever
level lies higher being crossed first. The peak is raised only by points already passed, so no candle is
both a take profit and a trailing stop. Works on `Decimal` (the executor) and on `float` (analytics) alike:
no constant of either type is mixed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from bridge.path import Assumption, Candle, Mode, Point, market_path

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


def _take_profit_or_time(barriers: Barriers, entry: Any, high: Any, low: Any, last: Any, held_s: float | None,
                         peak: Any) -> Hit | None:
    """The exits checked after the stops, alike for a tick and a path point: take profit at its level (at the
    low when the move opened above it), then the time limit at the last price."""
    take_profit = barriers.take_profit_pct
    if take_profit is not None:
        level = _above(entry, take_profit)
        if high >= level:
            return Hit("take_profit", level if level > low else low, peak)
    limit = barriers.time_limit_s
    if limit is not None and held_s is not None and held_s >= limit:
        return Hit("time_limit", last, peak)
    return None


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
    return _take_profit_or_time(barriers, entry, high, low, close, held_s, new_peak), new_peak


def step(barriers: Barriers, entry: Any, peak: Any, start: Any, price: Any, continuous: bool,
         held_s: float | None) -> tuple[Hit | None, Any]:
    """Apply the rule to the move from `start` to `price` (one path point).

    `continuous`: the market traded through every price between them, so a level crossed fills at the level;
    otherwise the move is a jump (a gap at a candle's open) and a level jumped over fills at `price`.
    `peak` is the highest point passed before this one; the second value returned is the peak after it.
    """
    new_peak = price if price > peak else peak
    if entry <= 0:
        return None, new_peak
    high, low = (max(start, price), min(start, price)) if continuous else (price, price)
    stop: tuple[Any, Hit] | None = None
    stop_loss = barriers.stop_loss_pct
    if stop_loss is not None:
        level = _below(entry, stop_loss)
        if low <= level:
            stop = (level, Hit("stop_loss", level if level < high else high, new_peak))
    activation, delta = barriers.trailing_activation_pct, barriers.trailing_delta_pct
    if activation is not None and delta is not None and peak >= _above(entry, activation):
        level = _below(peak, delta)
        # on a continuous fall the higher level is crossed first; at one price the stop wins
        if low <= level and (stop is None or (continuous and level > stop[0])):
            stop = (level, Hit("trailing_stop", level if level < high else high, new_peak))
    if stop is not None:
        return stop[1], new_peak
    return _take_profit_or_time(barriers, entry, high, low, price, held_s, new_peak), new_peak


@dataclass(frozen=True)
class Outcome:
    """Where a walk ended: the exit (None while the horizon is not complete), the index of the path point it
    happened at, the index of the candle that point lies in, and the path's assumption."""

    hit: Hit | None
    index: int | None
    candle: int | None = None
    assumption: Assumption | None = None


def walk(barriers: Barriers, entry: Any, entry_time_s: float, points: Sequence[Point],
         candle: Sequence[int] | None = None) -> Outcome:
    """Walk the path points after an entry in order until the rule calls an exit (`candle[i]`: the candle
    point i lies in; default: the point's own index).

    The peak is raised only by points already passed, so one candle cannot be a take profit and a trailing
    stop at once. Returns `Outcome(None, None)` when the points end first: the horizon is incomplete.
    """
    peak, previous = entry, entry
    for i, point in enumerate(points):
        hit, peak = step(barriers, entry, peak, previous, point.price, point.continuous, point.time_s - entry_time_s)
        if hit is not None:
            return Outcome(hit, i, i if candle is None else candle[i])
        previous = point.price
    return Outcome(None, None)


def walk_candles(barriers: Barriers, entry: Any, entry_time_s: float, candles: Sequence[Candle],
                 details: Mapping[float, Sequence[Candle]] | None = None, mode: Mode = "adaptive") -> Outcome:
    """`walk` over the market path of `candles` (finer recorded `details` used where they agree); the
    outcome's `candle` indexes `candles` and it carries the path's assumption."""
    market = market_path(candles, details, mode)
    outcome = walk(barriers, entry, entry_time_s, market.points, market.candle)
    return Outcome(outcome.hit, outcome.index, outcome.candle, market.assumption)
