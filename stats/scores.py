"""Probability scores against a reference."""

from __future__ import annotations

import numpy as np


def brier(y: np.ndarray, p: np.ndarray) -> float:
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def brier_skill(y: np.ndarray, p: np.ndarray, reference: float | None = None) -> float:
    """1 - Brier(p) / Brier(constant `reference`); the reference defaults to the outcomes' own base rate (what
    always saying the base rate scores, known only in hindsight: the strictest constant). > 0: p is better
    than that constant; NaN when the outcomes are constant."""
    y = np.asarray(y, dtype=np.float64)
    if not len(y):
        raise ValueError("no outcomes")
    base = float(y.mean()) if reference is None else float(reference)
    ref = brier(y, np.full(len(y), base))
    return float("nan") if ref == 0 else 1.0 - brier(y, p) / ref
