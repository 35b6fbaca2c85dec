"""Statistics of shadow outcomes: per-variation summaries, the paired difference to CHAMPION with a
bootstrap confidence interval and p-value, and Benjamini-Hochberg across the variations tested together.

Paired: every variation is compared with CHAMPION on the same candidates (the same scans), each
candidate's value being the size-weighted net P&L of its trade, or 0 where that side did not trade. The
candidate-to-candidate market noise is common to both sides and cancels in the difference, which an
unpaired comparison of two win rates (the seed's two-proportion z-test) cannot do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Summary:
    """Closed (simulated) trades of one variation in one window. P&L in percent of the quote size."""

    trades: int
    wins: int
    win_rate_pct: float | None
    mean_pnl_pct: float | None
    total_pnl_pct: float
    sharpe: float | None  # per trade: mean / standard deviation (not annualised)
    max_drawdown_pct: float


def summarize(pnl_pct: np.ndarray) -> Summary:
    """Summary of trade P&Ls in time order."""
    pnl = np.asarray(pnl_pct, dtype=np.float64)
    n = len(pnl)
    if n == 0:
        return Summary(0, 0, None, None, 0.0, None, 0.0)
    wins = int((pnl > 0).sum())
    cumulative = np.cumsum(pnl)
    peak = np.maximum.accumulate(np.concatenate(([0.0], cumulative)))[1:]
    drawdown = float((peak - cumulative).max())
    std = float(pnl.std(ddof=1)) if n > 1 else 0.0
    return Summary(n, wins, wins / n * 100, float(pnl.mean()), float(pnl.sum()),
                   float(pnl.mean() / std) if std > 0 else None, drawdown)


@dataclass(frozen=True)
class Paired:
    """Variation minus CHAMPION per candidate: mean, 95 % bootstrap interval, two-sided p-value."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float


def paired(variation: np.ndarray, champion: np.ndarray, *, samples: int = 2000, seed: int = 13,
           confidence: float = 0.95) -> Paired:
    """Bootstrap the mean of the per-candidate differences.

    The interval is the percentile interval of resampled means. The p-value tests "no difference": the
    differences are centred on 0 (the null) and resampled; p = (1 + resampled means at least as far from 0
    as the observed one) / (1 + samples), so it is never 0.
    """
    diff = np.asarray(variation, dtype=np.float64) - np.asarray(champion, dtype=np.float64)
    n = len(diff)
    if n == 0:
        return Paired(0, 0.0, 0.0, 0.0, 1.0)
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    chunk = max(1, 2_000_000 // n)  # bounded memory for large n
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        means[start:stop] = diff[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    # the null distribution: the same resampled means, shifted so that their centre is 0
    extreme = np.abs(means - observed) >= abs(observed) - 1e-12
    if np.ptp(diff) == 0:  # no variation at all: the difference is exactly what was observed
        extreme = np.full(samples, observed == 0)
    p = (1 + int(extreme.sum())) / (1 + samples)
    return Paired(n, observed, float(low), float(high), float(min(1.0, p)))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Adjusted p-values (q) controlling the false discovery rate across tests run together."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return q
