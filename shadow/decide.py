"""Shadow decisions: each variation re-runs its strategy's pure entry rule with its own parameters.

The same indicator frame the scan computed (same candles, same indicator periods) goes through
`controller.scan.strategies` with the variation's parameters, so a variation enters where the champion
skipped and skips where the champion entered, for the rule's own reasons. An ML threshold applies only
where an ML confidence is known: an absent confidence is not a confidence of 0 (the seed's shadows gated
on `ml_confidence >= threshold` with 0 on most scans, and almost never traded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from controller.scan import strategies
from shadow.variations import Variation

DECISION = ("entry", "size_multiplier", *strategies.EXIT_COLUMNS)


def decide(frame: pd.DataFrame, variation: Variation, ml_confidence: np.ndarray | None = None,
           strategy_fn: Callable[[pd.DataFrame, Any], pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per row of an indicator frame: does `variation` enter, at what relative size, with which barriers.

    `ml_confidence` (one per row, NaN where unknown) gates entries at the variation's `ml_threshold`.
    """
    fn = strategy_fn or strategies.STRATEGIES[variation.strategy]
    decided = fn(frame, variation.section.params)
    entry = decided["entry"].to_numpy(dtype=bool).copy()
    if variation.ml_threshold is not None and ml_confidence is not None:
        known = np.isfinite(ml_confidence)
        entry &= ~known | (np.nan_to_num(ml_confidence, nan=0.0) >= variation.ml_threshold)
    size = np.full(len(frame), variation.size_multiplier)
    sizing = variation.volatility_sizing
    if sizing is not None and len(frame):
        with np.errstate(divide="ignore", invalid="ignore"):
            volatility = frame["atr"].to_numpy(dtype=np.float64) / frame["close"].to_numpy(dtype=np.float64)
        size = np.where(volatility < sizing.low_below, size * sizing.low_multiplier, size)
        size = np.where(volatility > sizing.high_above, size * sizing.high_multiplier, size)
    out = {"entry": entry, "size_multiplier": size}
    for column in strategies.EXIT_COLUMNS:
        out[column] = np.where(entry, decided[column].to_numpy(dtype=np.float64), np.nan)
    return pd.DataFrame(out, index=frame.index)
