"""An observed rate with its interval (Wilson score, from statsmodels): how sure a benchmark's "0 of 200"
is (0 of 200 still allows a rate up to 1.9 %)."""

from __future__ import annotations

from statsmodels.stats.proportion import proportion_confint


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson interval of successes / trials."""
    if trials < 1 or not (0 <= successes <= trials):
        raise ValueError(f"need 0 <= successes ({successes}) <= trials ({trials}), trials >= 1")
    low, high = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    return float(low), float(high)
