"""An observed rate with its interval (Wilson score, from statsmodels): how sure a benchmark's "0 of 200"
is (0 of 200 still allows a rate up to 1.9 %)."""

from __future__ import annotations

from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson interval of successes / trials."""
    if trials < 1 or not (0 <= successes <= trials):
        raise ValueError(f"need 0 <= successes ({successes}) <= trials ({trials}), trials >= 1")
    low, high = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def rate_difference(wins_a: int, n_a: int, wins_b: int, n_b: int,
                    confidence: float = 0.95) -> tuple[float, float, float]:
    """Win rate a minus b with Newcombe's hybrid-score interval (statsmodels `confint_proportions_2indep`),
    which keeps its coverage at small counts and rates near 0 or 1 where the Wald interval does not."""
    for wins, n in ((wins_a, n_a), (wins_b, n_b)):
        if n < 1 or not (0 <= wins <= n):
            raise ValueError(f"need 0 <= wins ({wins}) <= trades ({n}), trades >= 1")
    low, high = confint_proportions_2indep(wins_a, n_a, wins_b, n_b, method="newcomb", compare="diff",
                                           alpha=1 - confidence)
    return wins_a / n_a - wins_b / n_b, float(low), float(high)
