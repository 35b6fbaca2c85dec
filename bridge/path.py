"""The prices a live observer would have seen inside a candle, in the order they came.

A candle records four prices and hides their order. Every simulated world here (the exit rule's replay,
shadow outcomes, ML labels, the paper book) walks the same ordered points: the open, the extreme nearer
the open, the other extreme, the close (nautilus_trader's adaptive bar ordering); or a fixed order
(O-H-L-C, O-L-H-C) when asked. Where finer candles were recorded inside a coarse one (1m in 5m, 5m in 15m
or 1h) and they agree with it, their points replace the coarse candle's: the finest consistent recording
wins, as freqtrade's `--timeframe-detail` does. A finer recording that disagrees with its coarse candle (an
extreme beyond the coarse one, minutes missing) is not used for that candle, and the fallback is counted.

Between two points of one candle the market traded through every price in between (`continuous`); the
step from a candle's close to the next candle's open is a jump (no price in between is known to have
traded). Standard library only: the executor imports this module too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["adaptive", "ohlc", "olhc"]
MODES: tuple[Mode, ...] = ("adaptive", "ohlc", "olhc")
POINTS_PER_CANDLE = 4
_REL_TOL = 1e-9  # recorded files round-trip their floats; an aggregate that differs beyond this disagrees


@dataclass(frozen=True)
class Candle:
    """One recorded candle: its open time and duration in seconds, and its four prices."""

    ts_s: float
    duration_s: float
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True)
class Point:
    """One observed price at a time; `continuous`: reached from the previous point by trading through every
    price in between (False: a jump, such as a candle's open after the previous close)."""

    time_s: float
    price: float
    continuous: bool


@dataclass(frozen=True)
class Assumption:
    """How a path was built, recorded beside every result that comes from it.

    `detail_s`: the finest timeframe whose candles were used (None: the coarse candles only);
    `fallbacks`: coarse candles for which detail was offered but disagreed or was incomplete."""

    mode: Mode
    detail_s: float | None
    fallbacks: int

    def as_dict(self) -> dict[str, object]:
        return {"path_mode": self.mode, "path_detail_s": self.detail_s, "path_fallbacks": self.fallbacks}


@dataclass(frozen=True)
class MarketPath:
    """Ordered points over a run of candles; `candle[i]` is the index of the coarse candle point i lies in."""

    points: tuple[Point, ...]
    candle: tuple[int, ...]
    assumption: Assumption


def high_first(open_: float, high: float, low: float, mode: Mode) -> bool:
    """Whether the high comes before the low: adaptive visits the extreme nearer the open first (a tie goes
    low first: for a long position, the pessimistic reading)."""
    if mode == "ohlc":
        return True
    if mode == "olhc":
        return False
    if mode != "adaptive":
        raise ValueError(f"unknown path mode {mode!r}: expected one of {', '.join(MODES)}")
    return high - open_ < open_ - low


def candle_points(candle: Candle, mode: Mode = "adaptive") -> list[Point]:
    """The four points of one candle, spread evenly over its duration (open at its start, close at its end)."""
    if not candle.low <= min(candle.open, candle.close) or not max(candle.open, candle.close) <= candle.high:
        raise ValueError(f"candle at {candle.ts_s} is not a candle: open {candle.open}, high {candle.high}, "
                         f"low {candle.low}, close {candle.close}")
    first, second = (candle.high, candle.low) if high_first(candle.open, candle.high, candle.low, mode) \
        else (candle.low, candle.high)
    step = candle.duration_s / 3
    t = candle.ts_s
    return [Point(t, candle.open, False), Point(t + step, first, True), Point(t + 2 * step, second, True),
            Point(t + candle.duration_s, candle.close, True)]


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=0.0)


def consistent(coarse: Candle, fine: Sequence[Candle]) -> bool:
    """Whether `fine` covers `coarse` completely (every finer candle present, none outside) and aggregates to
    the same open, high, low and close."""
    if not fine:
        return False
    width = fine[0].duration_s
    count = coarse.duration_s / width
    if count != int(count) or len(fine) != int(count):
        return False
    for i, c in enumerate(fine):
        if c.duration_s != width or c.ts_s != coarse.ts_s + i * width:
            return False
    return (_close(fine[0].open, coarse.open) and _close(fine[-1].close, coarse.close)
            and _close(max(c.high for c in fine), coarse.high) and _close(min(c.low for c in fine), coarse.low))


def finest(coarse: Sequence[Candle], details: Mapping[float, Sequence[Candle]] | None = None
           ) -> tuple[list[Candle], list[int], float | None, int]:
    """Replace each coarse candle by the finest consistent recording inside it.

    `details` maps a timeframe in seconds to its candles (any order). Returns the candles to walk, the index
    of the coarse candle each one lies in, the finest timeframe used (None: none) and the fallback count
    (coarse candles for which some detail was recorded but none was consistent)."""
    if not details:
        return list(coarse), list(range(len(coarse))), None, 0
    by_tf = {tf: {c.ts_s: c for c in candles} for tf, candles in details.items()}
    out: list[Candle] = []
    owner: list[int] = []
    used: float | None = None
    fallbacks = 0
    for i, c in enumerate(coarse):
        chosen: list[Candle] | None = None
        offered = False
        for tf in sorted(by_tf):
            if tf >= c.duration_s:
                continue
            index = by_tf[tf]
            inside = [index[c.ts_s + j * tf] for j in range(int(c.duration_s // tf)) if c.ts_s + j * tf in index]
            offered = offered or bool(inside)
            if consistent(c, inside):
                chosen = inside
                used = tf if used is None else min(used, tf)
                break
        if chosen is None:
            fallbacks += offered
            chosen = [c]
        out.extend(chosen)
        owner.extend([i] * len(chosen))
    return out, owner, used, fallbacks


def market_path(coarse: Sequence[Candle], details: Mapping[float, Sequence[Candle]] | None = None,
                mode: Mode = "adaptive") -> MarketPath:
    """The ordered points a live observer would have seen over `coarse` (finer recordings used where they
    agree), with the assumption they rest on."""
    candles, owner, used, fallbacks = finest(coarse, details)
    points: list[Point] = []
    candle: list[int] = []
    for c, i in zip(candles, owner, strict=True):
        points.extend(candle_points(c, mode))
        candle.extend([i] * POINTS_PER_CANDLE)
    return MarketPath(tuple(points), tuple(candle), Assumption(mode, used, fallbacks))
