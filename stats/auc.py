"""ROC AUC with DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988), in the fast midrank form of
Sun & Xu (2014): O(n log n), no resampling, so the gate's interval costs nothing beside a fit.

DeLong treats the entries as independent. Entries whose labels overlap in time are not, which makes the
interval too narrow; the promotion gate therefore also requires a block-bootstrapped edge and a held-back
check, and `bench/ml_gate.py` measures the whole gate's false-promotion rate on labels shifted in time
(dependence kept) as well as shuffled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from stats.pvalues import PValue


@dataclass(frozen=True)
class AucInterval:
    auc: float
    se: float
    low: float  # two-sided `confidence` interval
    high: float
    positives: int
    negatives: int
    p_above_half: PValue  # one-sided: H0 AUC <= 0.5

    def as_dict(self) -> dict[str, object]:
        return {"auc": round(self.auc, 4), "se": round(self.se, 4), "low": round(self.low, 4),
                "high": round(self.high, 4), "positives": self.positives, "negatives": self.negatives,
                "p_above_half": self.p_above_half.value, "method": "DeLong"}


def delong(y: np.ndarray, score: np.ndarray, confidence: float = 0.95) -> AucInterval:
    """AUC of `score` for binary `y`, its DeLong standard error, interval, and the one-sided p of AUC > 0.5."""
    y = np.asarray(y)
    s = np.asarray(score, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("y and score must be 1-d arrays of the same length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold 0 and 1 only")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    pos, neg = s[y == 1], s[y == 0]
    m, n = len(pos), len(neg)
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs at least 2 of each class, got {m} positives and {n} negatives")
    tx, ty = rankdata(pos), rankdata(neg)
    tz = rankdata(np.concatenate([pos, neg]))
    auc = float((tz[:m].sum() - m * (m + 1) / 2) / (m * n))
    v10 = (tz[:m] - tx) / n  # per positive: share of negatives it outranks (ties count half)
    v01 = 1.0 - (tz[m:] - ty) / m  # per negative: share of positives that outrank it
    var = v10.var(ddof=1) / m + v01.var(ddof=1) / n
    se = float(np.sqrt(max(var, 0.0)))
    z = norm.ppf(0.5 + confidence / 2)
    if se == 0.0:
        p = 0.0 if auc > 0.5 else 1.0
    else:
        p = float(norm.sf((auc - 0.5) / se))
    return AucInterval(auc, se, float(max(0.0, auc - z * se)), float(min(1.0, auc + z * se)), m, n,
                       PValue(p, 0.0, "DeLong"))
