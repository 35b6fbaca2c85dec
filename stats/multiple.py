"""Corrections for several tests read together, from statsmodels (`multipletests`).

Holm controls the family-wise error (the chance of any false positive) and suits a few tests that each
decide something alone, such as promoting one model per strategy. Benjamini-Hochberg controls the expected
share of false discoveries and suits a long list (strategy x window x variation)."""

from __future__ import annotations

import numpy as np
from statsmodels.stats.multitest import multipletests


def _adjust(p_values: np.ndarray | list[float], method: str) -> np.ndarray:
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("p-values must be a 1-d sequence")
    if not len(p):
        return p
    if not ((p >= 0) & (p <= 1)).all():
        raise ValueError("p-values lie in [0, 1]")
    return multipletests(p, method=method)[1]


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm-adjusted p-values (family-wise error)."""
    return _adjust(p_values, "holm")


def benjamini_hochberg(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate)."""
    return _adjust(p_values, "fdr_bh")
