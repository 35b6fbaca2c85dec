"""Labelled entries made up for the ML tests: features drawn at random, and a label that follows the rule's
confidence or is a coin flip."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ml.features import FEATURES


def synthetic_events(n: int = 2400, *, informative: bool, seed: int = 0) -> pd.DataFrame:
    """Entries an hour apart with a 6 h horizon; when `informative`, `rule_confidence` sets the odds of a win
    (a win returns +2 %, a loss -2 %)."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=list(FEATURES))
    frame["btc_change_1h_pct"] = np.nan  # a feature the training data never holds
    p_win = 1 / (1 + np.exp(-2.5 * frame["rule_confidence"])) if informative else np.full(n, 0.5)
    label = (rng.uniform(size=n) < p_win).astype(np.int64)
    decided = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h")
    frame["decided_at"] = decided
    frame["horizon_end"] = decided + pd.Timedelta(hours=6)
    frame["label"] = label
    frame["net_return_pct"] = np.where(label == 1, 2.0, -2.0)
    frame["strategy"] = "dca"
    frame["symbol"] = [f"C{k % 8}-USDT" for k in range(n)]  # eight base assets, for the held-back check
    return frame
