"""Outcomes of K parameter variations x N entries at once, with the executor's exit rule.

`bridge.exits.check` is the one rule; this module is its vectorised twin, proven equal to `exits.walk`
by `tests/unit/shadow/test_shadow_replay.py` on random cases; the shadow replay and the ML labels use it
(NumPy, which Hummingbot's image has too; the script itself does not import this module). It is fast
because most of the rule does not depend on the variation: the running peak, the running low and high,
and the time held are properties of an entry's candles. Per (variation, entry) pair only the first index
at which each barrier is crossed is needed, and for the monotone series (running low for the stop, running
high for the take profit and the trailing activation, time held for the time limit) that is a binary search.
The trailing stop is the one non-monotone condition; it is computed once per distinct trailing distance, not
once per variation.

At the first index where any barrier is crossed, the rule's order decides the reason: stop loss, then
trailing, then take profit, then time. Each barrier's "first index" is exactly the first candle at which
`exits.check` would see it crossed, so the minimum of the four, ties broken in that order, is the
candle and reason `exits.walk` returns. The prices are the same expressions in the same order, so the
floats are bit-identical.

Net P&L: the entry fills `slippage_pct` above the reference price (barriers are set from the fill, as the
executor sets them), the exit fills `slippage_pct` below the rule's price, and a taker fee of `fee_pct`
is charged on both notionals, as the executor's trades record it: (exit - entry - fees) / entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.exits import REASONS

NO_HIT = np.iinfo(np.int64).max
REASON_CODES = {reason: code for code, reason in enumerate(REASONS)}  # 0 stop_loss .. 3 time_limit
PENDING = -1  # the candles end before any exit: the horizon is not complete yet


@dataclass(frozen=True)
class Paths:
    """The candles after each of N entries, padded to a common length H.

    `highs`, `lows`, `closes`, `times_s` are (N, H) arrays; `length[n]` is how many of entry n's columns
    are real candles (the rest is padding that never triggers a barrier). `candle_s[n]` is the duration of
    entry n's candles (60 for 1m, 300 for the 5m fallback); `entry` and `entry_time_s` are (N,).
    """

    entry: np.ndarray
    entry_time_s: np.ndarray
    times_s: np.ndarray
    highs: np.ndarray
    lows: np.ndarray
    closes: np.ndarray
    length: np.ndarray
    candle_s: np.ndarray

    @classmethod
    def from_lists(cls, entry: list[float], entry_time_s: list[float], times_s: list[np.ndarray],
                   highs: list[np.ndarray], lows: list[np.ndarray], closes: list[np.ndarray],
                   candle_s: list[float]) -> Paths:
        """Pad ragged per-entry candle arrays into (N, H) arrays."""
        n = len(entry)
        length = np.array([len(c) for c in closes], dtype=np.int64)
        h = max(1, int(length.max()) if n else 1)
        t = np.full((n, h), np.nan)
        hi = np.full((n, h), -np.inf)
        lo = np.full((n, h), np.inf)
        cl = np.full((n, h), np.nan)
        for i in range(n):
            k = length[i]
            t[i, :k], hi[i, :k], lo[i, :k], cl[i, :k] = times_s[i], highs[i], lows[i], closes[i]
        return cls(np.asarray(entry, dtype=np.float64), np.asarray(entry_time_s, dtype=np.float64), t, hi, lo, cl,
                   length, np.asarray(candle_s, dtype=np.float64))


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
    """(K, N) arrays: the exit candle's index (PENDING when none yet), the reason code (index into
    `bridge.exits.REASONS`, PENDING when none), the rule's exit price, and net P&L in percent."""

    index: np.ndarray
    reason: np.ndarray
    exit_price: np.ndarray
    pnl_pct: np.ndarray


def _first_at_or_above(series: np.ndarray, levels: np.ndarray) -> np.ndarray:
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


def _suffix_first(mask: np.ndarray) -> np.ndarray:
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
    h = paths.highs.shape[1]

    # Shared by every variation: the peak after each candle (entry included), running low and high, time held.
    peak = np.maximum.accumulate(np.maximum(paths.highs, entry[:, None]), axis=1)
    run_low = np.minimum.accumulate(paths.lows, axis=1)
    run_high = np.maximum.accumulate(paths.highs, axis=1)
    held = paths.times_s + paths.candle_s[:, None] - paths.entry_time_s[:, None]
    valid = np.arange(h)[None, :] < paths.length[:, None]
    held = np.where(valid, held, -np.inf)
    held = np.maximum.accumulate(held, axis=1)  # padding repeats the last real value: never a new hit

    # Stop loss: first candle whose low <= level == first where the running low <= level.
    sl_level = e * (100 - grid.stop_loss_pct) / 100
    sl_idx = _first_at_or_above(-run_low, -sl_level)
    # Take profit: first candle whose high >= level.
    tp_level = e * (100 + grid.take_profit_pct) / 100
    tp_idx = _first_at_or_above(run_high, tp_level)
    # Time limit: first candle whose end is at least the limit after the entry.
    tm_idx = _first_at_or_above(held, grid.time_limit_s.astype(np.float64))
    # Trailing: armed from the first candle whose peak reaches the activation level; fires at the first
    # armed candle whose low <= peak * (100 - delta) / 100. One mask per distinct delta.
    act = grid.trailing_activation_pct
    delta = grid.trailing_delta_pct
    has_trailing = np.isfinite(act) & np.isfinite(delta)
    act_idx = _first_at_or_above(peak, np.where(has_trailing, e * (100 + act) / 100, np.nan))
    tr_idx = np.full((k, n), NO_HIT, dtype=np.int64)
    for d in np.unique(delta[has_trailing]):
        following = _suffix_first(paths.lows <= peak * (100 - d) / 100)  # (N, H+1)
        rows, cols = np.nonzero(has_trailing & (delta == d) & (act_idx != NO_HIT))
        tr_idx[rows, cols] = following[cols, act_idx[rows, cols]]

    # The earliest barrier wins; on a tie the rule's order (stop, trailing, take profit, time) decides.
    stacked = np.stack([sl_idx, tr_idx, tp_idx, tm_idx])  # (4, K, N) in REASONS order
    reason = np.argmin(stacked, axis=0)  # argmin returns the first of equal minima: the rule's order
    index = np.take_along_axis(stacked, reason[None], axis=0)[0]
    hit = index != NO_HIT
    index = np.where(hit, index, PENDING)
    reason = np.where(hit, reason, PENDING)

    cols = np.broadcast_to(np.arange(n)[None, :], (k, n))
    at = np.where(hit, index, 0)
    high_at = paths.highs[cols, at]
    low_at = paths.lows[cols, at]
    close_at = paths.closes[cols, at]
    trail_level = peak[cols, at] * (100 - delta) / 100
    price = np.full((k, n), np.nan)
    price = np.where(reason == 0, np.where(sl_level < high_at, sl_level, high_at), price)
    price = np.where(reason == 1, np.where(trail_level < high_at, trail_level, high_at), price)
    price = np.where(reason == 2, np.where(tp_level > low_at, tp_level, low_at), price)
    price = np.where(reason == 3, close_at, price)

    exit_fill = price * (100 - slippage_pct) / 100
    gross = exit_fill / e
    pnl = (gross - 1 - fee_pct / 100 * (1 + gross)) * 100
    return Result(index, reason, price, np.where(hit, pnl, np.nan))


def net_pnl_pct(entry_fill: float, exit_price: float, fee_pct: float, slippage_pct: float) -> float:
    """The scalar net P&L of one trade, the same formula as `replay` (for the per-trade reference loop)."""
    exit_fill = exit_price * (100 - slippage_pct) / 100
    gross = exit_fill / entry_fill
    return (gross - 1 - fee_pct / 100 * (1 + gross)) * 100
