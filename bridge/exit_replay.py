"""Outcomes of K parameter variations x N entries at once, with the executor's exit rule on the market path.

`bridge.exits.step` is the one rule and `bridge.exits.walk` applies it to the points of `bridge.path`; this
module is its vectorised twin on the same points (open, the extreme nearer the open, the other extreme, close
of each candle), proven equal to `exits.walk` by `tests/unit/shadow/test_shadow_replay.py` on random and
recorded candles; the shadow replay and the ML labels use it (NumPy, which Hummingbot's image has too; the
script itself does not import this module). It is fast because most of the rule does not depend on the
variation: the peak before each point, the running low and high of the segments, and the time held are
properties of an entry's path. Per (variation, entry) pair only the first point at which each barrier is
crossed is needed, and for the monotone series (running segment low for the stop, running segment high for
the take profit, the peak for the trailing activation, time held for the time limit) that is a binary
search. The trailing stop is the one non-monotone condition; it is computed once per distinct trailing
distance, not once per variation.

At the first point where any barrier is crossed the rule decides the reason as `exits.step` does: the stop
or the trailing stop, the higher level first on a continuous fall and the stop at one price; then take
profit (which can never share a point with either), then time. The prices are the same expressions in the
same order, so the floats are bit-identical.

Net P&L: the entry fills `slippage_pct` above the reference price (barriers are set from the fill, as the
executor sets them), the exit fills `slippage_pct` below the rule's price, and a taker fee of `fee_pct`
is charged on both notionals, as the executor's trades record it: (exit - entry - fees) / entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.exits import REASONS
from bridge.path import MODES, POINTS_PER_CANDLE, Mode

NO_HIT = np.iinfo(np.int64).max
REASON_CODES = {reason: code for code, reason in enumerate(REASONS)}  # 0 stop_loss .. 3 time_limit
PENDING = -1  # the candles end before any exit: the horizon is not complete yet


@dataclass(frozen=True)
class Paths:
    """The candles after each of N entries, padded to a common length H, and how to order their insides.

    `opens`, `highs`, `lows`, `closes`, `times_s` (open times) are (N, H) arrays; `length[n]` is how many of
    entry n's columns are real candles (the rest is padding that never triggers a barrier). `candle_s` is the
    duration of each candle: (N,) when an entry's candles share one, (N, H) when finer recorded candles
    replace some coarse ones; `entry` and `entry_time_s` are (N,). `mode` is the `bridge.path` ordering.
    """

    entry: np.ndarray
    entry_time_s: np.ndarray
    times_s: np.ndarray
    opens: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    length: np.ndarray
    candle_s: np.ndarray
    mode: Mode = "adaptive"

    @classmethod
    def from_lists(cls, entry: list[float], entry_time_s: list[float], times_s: list[np.ndarray],
                   opens: list[np.ndarray], highs: list[np.ndarray], lows: list[np.ndarray],
                   closes: list[np.ndarray], candle_s: list[float] | list[np.ndarray],
                   mode: Mode = "adaptive") -> Paths:
        """Pad ragged per-entry candle arrays into (N, H) arrays."""
        n = len(entry)
        length = np.array([len(c) for c in closes], dtype=np.int64)
        h = max(1, int(length.max()) if n else 1)
        t = np.full((n, h), np.nan)
        op = np.full((n, h), np.nan)
        hi = np.full((n, h), -np.inf)
        lo = np.full((n, h), np.inf)
        cl = np.full((n, h), np.nan)
        per_candle = any(np.ndim(d) for d in candle_s)
        dur = np.full((n, h), np.nan) if per_candle else np.asarray(candle_s, dtype=np.float64)
        for i in range(n):
            k = length[i]
            t[i, :k], op[i, :k], hi[i, :k], lo[i, :k], cl[i, :k] = times_s[i], opens[i], highs[i], lows[i], closes[i]
            if per_candle:
                dur[i, :k] = candle_s[i]
        return cls(np.asarray(entry, dtype=np.float64), np.asarray(entry_time_s, dtype=np.float64), t, op, hi, lo,
                   cl, length, dur, mode)


@dataclass(frozen=True)
class Points:
    """An entry's path points, (N, P) with P = 4 H: the price, the high and low of the segment from the
    previous point (the price itself at a jump), whether the segment is continuous, the peak before the
    point (entry included) and the time held at it (padding: never a hit)."""

    price: np.ndarray
    seg_high: np.ndarray
    seg_low: np.ndarray
    continuous: np.ndarray
    peak_before: np.ndarray
    held: np.ndarray
    time_s: np.ndarray


def points(paths: Paths, entry: np.ndarray) -> Points:
    """The `bridge.path` points of every entry's candles, as arrays (same expressions, same floats)."""
    n, h = paths.highs.shape
    o, hi, lo, c = paths.opens, paths.highs, paths.lows, paths.closes
    if paths.mode == "ohlc":
        high_first = np.ones((n, h), dtype=bool)
    elif paths.mode == "olhc":
        high_first = np.zeros((n, h), dtype=bool)
    elif paths.mode == "adaptive":
        with np.errstate(invalid="ignore"):
            high_first = hi - o < o - lo
    else:
        raise ValueError(f"unknown path mode {paths.mode!r}: expected one of {', '.join(MODES)}")
    valid = np.arange(h)[None, :] < paths.length[:, None]
    price = np.stack([o, np.where(high_first, hi, lo), np.where(high_first, lo, hi), c], axis=2)
    price = np.where(valid[:, :, None], price, np.nan).reshape(n, 4 * h)
    continuous = np.broadcast_to(np.arange(4 * h) % 4 != 0, (n, 4 * h))
    previous = np.empty_like(price)
    previous[:, 0] = price[:, 0]
    previous[:, 1:] = price[:, :-1]
    mask = np.repeat(valid, 4, axis=1)
    seg_high = np.where(mask, np.where(continuous, np.maximum(previous, price), price), -np.inf)
    seg_low = np.where(mask, np.where(continuous, np.minimum(previous, price), price), np.inf)
    passed = np.where(mask, price, -np.inf)
    peak_before = np.empty_like(price)
    peak_before[:, 0] = entry
    peak_before[:, 1:] = passed[:, :-1]
    peak_before = np.maximum.accumulate(np.maximum(peak_before, entry[:, None]), axis=1)
    t = paths.times_s
    d = np.broadcast_to(paths.candle_s if paths.candle_s.ndim == 2 else paths.candle_s[:, None], (n, h))
    third = d / 3
    times = np.stack([t, t + third, t + 2 * third, t + d], axis=2).reshape(n, 4 * h)
    held = np.where(mask, times - paths.entry_time_s[:, None], -np.inf)
    held = np.maximum.accumulate(held, axis=1)  # padding repeats the last real value: never a new hit
    return Points(price, seg_high, seg_low, continuous, peak_before, held, times)


@dataclass(frozen=True)
class BarrierGrid:
    """Barriers per (variation, entry): (K, N) arrays, percent units and seconds; NaN = no such barrier."""

    take_profit_pct: np.ndarray
    stop_loss_pct: np.ndarray
    time_limit_s: np.ndarray
    trailing_activation_pct: np.ndarray
    trailing_delta_pct: np.ndarray


@dataclass(frozen=True)
class Result:
    """(K, N) arrays: the exit candle's index (PENDING when none yet), the exit's path point (4 per candle),
    the reason code (index into `bridge.exits.REASONS`, PENDING when none), the rule's exit price, net
    P&L in percent, and the time of the exit's path point (NaN when none)."""

    index: np.ndarray
    point: np.ndarray
    reason: np.ndarray
    exit_price: np.ndarray
    pnl_pct: np.ndarray
    exit_time_s: np.ndarray


def first_at_or_above(series: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per row n of a non-decreasing (N, H) `series`, the first column whose value is >= levels[:, n]
    (NO_HIT when none; NaN levels never hit). `levels` is (K, N)."""
    k, n = levels.shape
    out = np.full((k, n), NO_HIT, dtype=np.int64)
    h = series.shape[1]
    if k == 1:  # one variation (the ML labels): count the values below the level, all entries at once
        with np.errstate(invalid="ignore"):
            idx = (series < levels[0][:, None]).sum(axis=1)
        ok = np.isfinite(levels[0]) & (idx < h)
        out[0, ok] = idx[ok]
        return out
    for j in range(n):  # one binary search per entry, over all K variations at once
        col = levels[:, j]
        idx = np.searchsorted(series[j], col, side="left")
        ok = np.isfinite(col) & (idx < h)
        out[ok, j] = idx[ok]
    return out


def suffix_first(mask: np.ndarray) -> np.ndarray:
    """(N, H+1): for each column i, the first column >= i where `mask` is true (NO_HIT when none)."""
    n, h = mask.shape
    cols = np.where(mask, np.arange(h, dtype=np.int64), NO_HIT)
    out = np.full((n, h + 1), NO_HIT, dtype=np.int64)
    out[:, :h] = np.minimum.accumulate(cols[:, ::-1], axis=1)[:, ::-1]
    return out


def replay(paths: Paths, grid: BarrierGrid, *, fee_pct: float = 0.0, slippage_pct: float = 0.0,
           entry_is_filled: bool = False) -> Result:
    """Apply the exit rule to every (variation, entry) pair.

    `paths.entry` is the reference price; with `entry_is_filled` it is already the fill price (no entry
    slippage), which is how calibration replays a real trade from its real entry.
    """
    k, n = grid.take_profit_pct.shape
    entry_ref = paths.entry
    entry = entry_ref if entry_is_filled or slippage_pct == 0 else entry_ref * (100 + slippage_pct) / 100
    e = entry[None, :]  # (1, N): broadcast over variations
    pts = points(paths, entry)

    # Stop loss: first point whose segment reaches down to the level == first where the running low does.
    sl_level = e * (100 - grid.stop_loss_pct) / 100
    sl_idx = first_at_or_above(-np.minimum.accumulate(pts.seg_low, axis=1), -sl_level)
    # Take profit: first point whose segment reaches up to the level.
    tp_level = e * (100 + grid.take_profit_pct) / 100
    tp_idx = first_at_or_above(np.maximum.accumulate(pts.seg_high, axis=1), tp_level)
    # Time limit: first point at least the limit after the entry.
    tm_idx = first_at_or_above(pts.held, grid.time_limit_s.astype(np.float64))
    # Trailing: armed from the first point whose peak before it reaches the activation level; fires at the
    # first armed point whose segment reaches down to peak * (100 - delta) / 100. One mask per distinct delta.
    act = grid.trailing_activation_pct
    delta = grid.trailing_delta_pct
    has_trailing = np.isfinite(act) & np.isfinite(delta)
    act_idx = first_at_or_above(pts.peak_before, np.where(has_trailing, e * (100 + act) / 100, np.nan))
    tr_idx = np.full((k, n), NO_HIT, dtype=np.int64)
    for d in np.unique(delta[has_trailing]):
        following = suffix_first(pts.seg_low <= pts.peak_before * (100 - d) / 100)  # (N, P+1)
        rows, cols = np.nonzero(has_trailing & (delta == d) & (act_idx != NO_HIT))
        tr_idx[rows, cols] = following[cols, act_idx[rows, cols]]

    # The earliest barrier wins; at one point the stop before the trailing stop before take profit before
    # time, except that on a continuous fall a trailing level above the stop level is crossed first.
    stacked = np.stack([sl_idx, tr_idx, tp_idx, tm_idx])  # (4, K, N) in REASONS order
    reason = np.argmin(stacked, axis=0)  # argmin returns the first of equal minima: the rule's order
    index = np.take_along_axis(stacked, reason[None], axis=0)[0]
    hit = index != NO_HIT
    cols = np.broadcast_to(np.arange(n)[None, :], (k, n))
    at = np.where(hit, index, 0)
    trail_level = pts.peak_before[cols, at] * (100 - delta) / 100
    trailing_first = (reason == 0) & (tr_idx == sl_idx) & pts.continuous[cols, at] & (trail_level > sl_level)
    reason = np.where(trailing_first, 1, reason)
    index = np.where(hit, index, PENDING)
    reason = np.where(hit, reason, PENDING)

    high_at = pts.seg_high[cols, at]
    low_at = pts.seg_low[cols, at]
    price_at = pts.price[cols, at]
    price = np.full((k, n), np.nan)
    price = np.where(reason == 0, np.where(sl_level < high_at, sl_level, high_at), price)
    price = np.where(reason == 1, np.where(trail_level < high_at, trail_level, high_at), price)
    price = np.where(reason == 2, np.where(tp_level > low_at, tp_level, low_at), price)
    price = np.where(reason == 3, price_at, price)

    exit_fill = price * (100 - slippage_pct) / 100
    gross = exit_fill / e
    pnl = (gross - 1 - fee_pct / 100 * (1 + gross)) * 100
    candle = np.where(hit, index // POINTS_PER_CANDLE, PENDING)
    exit_time = np.where(hit, pts.time_s[cols, at], np.nan)
    return Result(candle, index, reason, price, np.where(hit, pnl, np.nan), exit_time)


def net_pnl_pct(entry_fill: float, exit_price: float, fee_pct: float, slippage_pct: float) -> float:
    """The scalar net P&L of one trade, the same formula as `replay` (for the per-trade reference loop)."""
    exit_fill = exit_price * (100 - slippage_pct) / 100
    gross = exit_fill / entry_fill
    return (gross - 1 - fee_pct / 100 * (1 + gross)) * 100
