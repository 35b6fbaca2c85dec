"""Triple-barrier labels: did an entry win, net of fees and slippage, under the executor's own exit rule?

Each entry is walked along the market path of the candles after it (`bridge.path`: open, the extreme nearer
the open, the other extreme, close) with the executor's exit rule, with the strategy's own barriers from the
decision row. The walk is `bridge.exit_replay.replay`, the vectorised twin of `bridge.exits.walk` that the
shadow replay uses too (a property test holds the two equal, and `tests/unit/ml` holds the labels equal to a
per-entry `exits.walk_candles`): every entry of a series at once instead of a Python loop per candle. The
labels carry no finer recorded candles: the candles of the strategy's timeframe are the path (assumption:
adaptive order, no detail).

The entry fills at the decision candle's close plus the slippage allowance; the exit at the rule's price minus
it; a fee is paid on each side. Barriers are set from the decision candle's close. Label 1 when the net return
is above zero, else 0 (integers, never strings). An entry whose horizon is not complete yet (the candles end
before the rule calls an exit) gets no label: it is left out, not guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from bridge.exit_replay import PENDING, BarrierGrid, Paths, replay
from bridge.exits import REASONS
from ml.config import CostParams

LABEL_COLUMNS = ("label", "net_return_pct", "exit_reason", "exit_ts", "held_s")
BARRIER_COLUMNS = ("take_profit_pct", "stop_loss_pct", "time_limit_s", "trailing_activation_pct",
                   "trailing_delta_pct")
_CELLS_PER_CHUNK = 2_000_000  # entries x candles walked at once (memory bound, ~100 MB of float arrays)


def net_return_pct(entry: Any, exit_price: Any, costs: CostParams) -> Any:
    """Percent return of a long after paying slippage and a fee on each side (scalars or arrays)."""
    slip, fee = costs.slippage_pct / 100.0, costs.fee_pct / 100.0
    bought = entry * (1 + slip)
    sold = exit_price * (1 - slip)
    return ((sold * (1 - fee)) / (bought * (1 + fee)) - 1.0) * 100.0


def _barrier(values: np.ndarray) -> np.ndarray:
    """A barrier as the rule reads it: missing, non-finite or non-positive means none (NaN)."""
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def label_positions(times_s: np.ndarray, highs: np.ndarray, lows: np.ndarray, closes: np.ndarray,
                    at: np.ndarray, end: np.ndarray, barriers: Mapping[str, np.ndarray], timeframe_s: int,
                    costs: CostParams, *, opens: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Labels of the entries decided on the candles at positions `at` of one array of candles (ts = open time
    in seconds); entry k walks the candles after it up to position `end[k]` (exclusive: its series' end, so a
    walk never runs into the next series of a stacked frame). Returns per entry `labelled` (False: horizon
    incomplete) and the `LABEL_COLUMNS` (meaningful where labelled); `exit_ts` in seconds, the time of the
    path point the exit happened at. Without `opens` each candle is taken to open at the previous close
    (clipped into its own range): a market without gaps between candles."""
    at = np.asarray(at, dtype=np.int64)
    if opens is None:
        previous = np.concatenate([closes[:1], closes[:-1]])
        opens = np.minimum(np.maximum(previous, lows), highs)
    n = len(at)
    grid = {c: _barrier(barriers[c]) for c in BARRIER_COLUMNS}
    nxt = at + 1
    available = np.maximum(np.asarray(end, dtype=np.int64) - nxt, 0)
    limit = grid["time_limit_s"]
    # The time limit ends every walk within limit / timeframe candles: walk no further than that.
    with np.errstate(invalid="ignore"):
        cap = np.where(np.isfinite(limit), np.floor(limit / timeframe_s) + 2, available)
    length = np.minimum(available, cap).astype(np.int64)
    index = np.full(n, PENDING, dtype=np.int64)
    exit_time = np.full(n, np.nan)
    reason = np.full(n, PENDING, dtype=np.int64)
    price = np.full(n, np.nan)
    entry = closes[at] if n else np.zeros(0)
    entry_time = times_s[at] + timeframe_s if n else np.zeros(0)

    def walk(which: np.ndarray, horizon: int) -> None:
        """Replay entries `which` over at most `horizon` candles each (in chunks that bound the memory)."""
        for chunk in np.array_split(which, max(1, len(which) * horizon // _CELLS_PER_CHUNK + 1)):
            if not len(chunk):
                continue
            span = np.minimum(length[chunk], horizon)
            widest = max(1, int(span.max()))
            offsets = np.arange(widest)
            valid = offsets[None, :] < span[:, None]
            take = np.where(valid, nxt[chunk, None] + offsets[None, :], 0)
            paths = Paths(entry=entry[chunk], entry_time_s=entry_time[chunk],
                          times_s=np.where(valid, times_s[take], np.nan),
                          opens=np.where(valid, opens[take], np.nan), highs=np.where(valid, highs[take], -np.inf),
                          lows=np.where(valid, lows[take], np.inf),
                          closes=np.where(valid, closes[take], np.nan), length=span,
                          candle_s=np.full(len(chunk), float(timeframe_s)))
            result = replay(paths, BarrierGrid(*(grid[c][None, chunk] for c in BARRIER_COLUMNS)),
                            entry_is_filled=True)  # no costs here: the exit price is the rule's, costs come below
            index[chunk], reason[chunk], price[chunk] = result.index[0], result.reason[0], result.exit_price[0]
            exit_time[chunk] = result.exit_time_s[0]

    # Most entries exit within a few candles, but a time limit of days pads every path to its length: walk a
    # short horizon first and only the entries still open further. The rule is causal, so an exit found within
    # the first h candles is the exit of the full walk.
    horizon, todo = 32, np.arange(n)
    while todo.size:
        walk(todo, horizon)
        todo = todo[(index[todo] == PENDING) & (length[todo] > horizon)]
        horizon *= 4
    labelled = index != PENDING
    exit_ts = np.where(labelled, exit_time, 0.0)
    ret = net_return_pct(entry, price, costs)
    names = np.asarray(REASONS, dtype=object)
    return {"labelled": labelled, "label": (ret > 0).astype(np.int64), "net_return_pct": ret,
            "exit_reason": np.where(labelled, names[np.maximum(reason, 0)], None), "exit_ts": exit_ts,
            "held_s": exit_ts - entry_time}


def label_entries(candles: pd.DataFrame, entries: pd.DataFrame, timeframe_s: int, costs: CostParams) -> pd.DataFrame:
    """Label `entries` (rows of one symbol's evaluated frame with the exit columns) against `candles`
    (that symbol's candles, ts = open time, sorted). Returns `LABEL_COLUMNS` for the labelled entries only,
    indexed like `entries`."""
    times = candles["ts"].to_numpy(dtype="datetime64[s]").view(np.int64).astype(np.float64)
    at = np.searchsorted(times, entries["ts"].to_numpy(dtype="datetime64[s]").view(np.int64))
    out = label_positions(times, candles["high"].to_numpy(dtype=np.float64),
                          candles["low"].to_numpy(dtype=np.float64), candles["close"].to_numpy(dtype=np.float64),
                          at, np.full(len(at), len(times)),
                          {c: entries[c].to_numpy(dtype=np.float64) for c in BARRIER_COLUMNS}, timeframe_s, costs,
                          opens=candles["open"].to_numpy(dtype=np.float64) if "open" in candles else None)
    keep = out["labelled"]
    return pd.DataFrame({
        "label": out["label"][keep], "net_return_pct": out["net_return_pct"][keep],
        "exit_reason": out["exit_reason"][keep],
        "exit_ts": pd.to_datetime(out["exit_ts"][keep], unit="s", utc=True),
        "held_s": out["held_s"][keep]}, index=entries.index[keep])
