"""Triple-barrier labels: did an entry win, net of fees and slippage, under the executor's own exit rule?

Each entry is walked through the candles after it with `bridge.exits.walk` (the rule the Hummingbot executor
applies: stop loss before trailing before take profit before time, a candle touching both barriers is a stop),
with the strategy's own barriers from the decision row. The entry fills at the decision candle's close plus the
slippage allowance; the exit at the rule's price minus it; a fee is paid on each side. Label 1 when the net
return is above zero, else 0 (integers, never strings). An entry whose horizon is not complete yet (the
candles end before the rule calls an exit) gets no label: it is left out, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bridge import exits
from ml.config import CostParams

LABEL_COLUMNS = ("label", "net_return_pct", "exit_reason", "exit_ts", "held_s")


@dataclass(frozen=True)
class _Barriers:
    take_profit_pct: float | None
    stop_loss_pct: float | None
    time_limit_s: float | None
    trailing_activation_pct: float | None
    trailing_delta_pct: float | None


def _opt(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) or value <= 0 else float(value)


def net_return_pct(entry: float, exit_price: float, costs: CostParams) -> float:
    """Percent return of a long after paying slippage and a fee on each side."""
    slip, fee = costs.slippage_pct / 100.0, costs.fee_pct / 100.0
    bought = entry * (1 + slip)
    sold = exit_price * (1 - slip)
    return ((sold * (1 - fee)) / (bought * (1 + fee)) - 1.0) * 100.0


def label_entries(candles: pd.DataFrame, entries: pd.DataFrame, timeframe_s: int, costs: CostParams) -> pd.DataFrame:
    """Label `entries` (rows of one symbol's evaluated frame with the exit columns) against `candles`
    (that symbol's candles, ts = open time, sorted). Returns `LABEL_COLUMNS` for the labelled entries only,
    indexed like `entries`."""
    times = (candles["ts"].to_numpy(dtype="datetime64[s]").view(np.int64)).astype(float).tolist()
    highs = candles["high"].to_numpy(dtype=np.float64).tolist()
    lows = candles["low"].to_numpy(dtype=np.float64).tolist()
    closes = candles["close"].to_numpy(dtype=np.float64).tolist()
    position = np.searchsorted(np.asarray(times), entries["ts"].to_numpy(dtype="datetime64[s]").view(np.int64))
    rows: dict[object, tuple[int, float, str, pd.Timestamp, float]] = {}
    columns = {c: entries[c].to_numpy(dtype=np.float64) for c in (
        "take_profit_pct", "stop_loss_pct", "time_limit_s", "trailing_activation_pct", "trailing_delta_pct")}
    for k, (index, at) in enumerate(zip(entries.index, position, strict=True)):
        barriers = _Barriers(*(_opt(columns[c][k]) for c in columns))
        entry_price = closes[at]
        entry_time = times[at] + timeframe_s  # the decision candle's close
        nxt = at + 1
        # The time limit ends every walk within limit / timeframe candles: slice no further than that.
        end = len(times) if barriers.time_limit_s is None else nxt + int(barriers.time_limit_s // timeframe_s) + 2
        outcome = exits.walk(barriers, entry_price, entry_time, times[nxt:end], highs[nxt:end], lows[nxt:end],
                             closes[nxt:end], timeframe_s)
        if outcome.hit is None or outcome.index is None:
            continue  # horizon not complete: no label
        exit_at = nxt + outcome.index
        ret = net_return_pct(entry_price, float(outcome.hit.price), costs)
        rows[index] = (int(ret > 0), ret, outcome.hit.reason,
                       pd.Timestamp(times[exit_at] + timeframe_s, unit="s", tz="UTC"),
                       times[exit_at] + timeframe_s - entry_time)
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(LABEL_COLUMNS))
    frame["label"] = frame["label"].astype(np.int64)
    return frame
