"""Statistics of shadow outcomes: per-variation summaries, the paired comparison with CHAMPION, and
Benjamini-Hochberg across the comparisons of a pass. The arithmetic is `stats/`'s; this module says which
comparison a variation gets.

- Equal size: every variation is compared with CHAMPION on the same candidates, each candidate's value being
  the net P&L per unit of capital of its trade (0 where that side did not enter). Size is left out: a copy of
  CHAMPION at 1.5x size earns 1.5x the P&L and also risks 1.5x the capital, which is no better.
- A variation that differs from CHAMPION only in its size (a multiplier or a volatility rule) enters where
  CHAMPION enters; it is judged per unit at risk on CHAMPION's trades (sum(size x P&L) / sum(size) minus the
  unsized mean): a constant multiplier is exactly 0, a sizing rule is better only if it puts more capital
  where the P&L per unit is higher.
- Dependence: trades on one symbol on one day share the market's moves, so the bootstrap draws whole
  symbol-days (`clusters`) when they are given.
- A variation identical to CHAMPION on every candidate (same entries, same P&L, same size) tests nothing and
  is left out of the family before the correction (`is_noop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stats import multiple
from stats.power import detectable_from_interval
from stats.pvalues import PValue
from stats.resample import Interval, paired_difference, ratio_difference


@dataclass(frozen=True)
class Summary:
    """Closed (simulated) trades of one variation in one window. P&L in percent of the quote size."""

    trades: int
    wins: int
    win_rate_pct: float | None
    mean_pnl_pct: float | None
    total_pnl_pct: float
    sharpe: float | None  # per trade: mean / standard deviation (not annualised); None without variance
    max_drawdown_pct: float  # on the compounding equity curve of the per-unit returns: within 100 %


def summarize(pnl_pct: np.ndarray) -> Summary:
    """Summary of trade P&Ls in time order."""
    pnl = np.asarray(pnl_pct, dtype=np.float64)
    n = len(pnl)
    if n == 0:
        return Summary(0, 0, None, None, 0.0, None, 0.0)
    wins = int((pnl > 0).sum())
    return Summary(n, wins, wins / n * 100, float(pnl.mean()), float(pnl.sum()), sharpe(pnl), max_drawdown_pct(pnl))


def max_drawdown_pct(pnl_pct: np.ndarray) -> float:
    """The deepest fall from a peak of an equity curve that reinvests each trade's per-unit return in turn, in
    percent of the peak. Compounding keeps it within 100 %: summed percentages (2 losses of 80 % "fall" 160 %)
    describe no portfolio. A return below -100 % (a loss larger than the capital) counts as -100 %."""
    pnl = np.asarray(pnl_pct, dtype=np.float64)
    if len(pnl) == 0:
        return 0.0
    equity = np.cumprod(np.maximum(1.0 + pnl / 100.0, 0.0))
    peak = np.maximum.accumulate(np.concatenate(([1.0], equity)))[1:]
    return float(((peak - equity) / peak).max() * 100.0)


def sharpe(pnl_pct: np.ndarray) -> float | None:
    """Mean over standard deviation per trade (not annualised); None without variance."""
    pnl = np.asarray(pnl_pct, dtype=np.float64)
    n = len(pnl)
    std = float(pnl.std(ddof=1)) if n > 1 else 0.0
    # a standard deviation at rounding level is no variance: a ratio over it is noise (3e14 on equal trades)
    varies = std > 1e-9 * max(1.0, float(np.abs(pnl).max()))
    return float(pnl.mean() / std) if varies else None


@dataclass(frozen=True)
class Paired:
    """Variation minus CHAMPION: mean per candidate (or per unit at risk), 95 % bootstrap interval,
    two-sided p-value with its resolution, and the smallest difference these candidates detect."""

    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    p_value: float
    resolution: float = 0.0
    mde: float | None = None  # at 80 % power, two-sided 5 %
    basis: str = "equal size"  # or "per unit at risk"
    scheme: str = "iid"

    @property
    def p(self) -> PValue:
        return PValue(self.p_value, self.resolution, f"{self.scheme} bootstrap")


def _paired(interval: Interval, n: int, basis: str) -> Paired:
    low, high = interval.low, interval.high
    mde = detectable_from_interval(low, high, confidence=interval.confidence) if np.isfinite(low) else None
    return Paired(n, interval.estimate, float(low), float(high), interval.p_two_sided.value,
                  interval.p_two_sided.resolution, mde, basis, interval.scheme)


def _options(samples: int, seed: int, confidence: float, clusters: np.ndarray | None) -> dict[str, object]:
    options: dict[str, object] = {"resamples": samples, "seed": seed, "confidence": confidence}
    if clusters is not None:
        options.update(scheme="cluster", clusters=np.asarray(clusters))
    return options


def paired(variation: np.ndarray, champion: np.ndarray, *, samples: int = 2000, seed: int = 13,
           confidence: float = 0.95, clusters: np.ndarray | None = None) -> Paired:
    """Equal size: the mean of the per-candidate differences (per-unit P&L, 0 where a side did not enter),
    bootstrapped i.i.d. or, with `clusters` (one label per candidate, e.g. symbol-day), by whole clusters."""
    v, c = np.asarray(variation, dtype=np.float64), np.asarray(champion, dtype=np.float64)
    if v.shape != c.shape:
        raise ValueError(f"a paired comparison needs equal lengths, got {v.shape} and {c.shape}")
    if len(v) == 0:
        return Paired(0, 0.0, 0.0, 0.0, 1.0, basis="equal size")
    return _paired(paired_difference(v, c, **_options(samples, seed, confidence, clusters)), len(v), "equal size")


def per_unit_at_risk(pnl: np.ndarray, size: np.ndarray, *, samples: int = 2000, seed: int = 13,
                     confidence: float = 0.95, clusters: np.ndarray | None = None) -> Paired:
    """A size-only variation on CHAMPION's trades: what its sizing adds per unit of capital at risk."""
    v, s = np.asarray(pnl, dtype=np.float64), np.asarray(size, dtype=np.float64)
    if len(v) == 0:
        return Paired(0, 0.0, 0.0, 0.0, 1.0, basis="per unit at risk")
    return _paired(ratio_difference(v, s, **_options(samples, seed, confidence, clusters)), len(v),
                   "per unit at risk")


def is_noop(variation: np.ndarray, champion: np.ndarray, variation_entered: np.ndarray,
            champion_entered: np.ndarray, variation_size: np.ndarray, champion_size: np.ndarray) -> bool:
    """True when the variation did exactly what CHAMPION did on every candidate: nothing to test."""
    same_entries = np.array_equal(np.asarray(variation_entered, bool), np.asarray(champion_entered, bool))
    entered = np.asarray(champion_entered, bool)
    return bool(same_entries and np.allclose(np.asarray(variation)[entered], np.asarray(champion)[entered],
                                             equal_nan=True)
                and np.allclose(np.asarray(variation_size)[entered], np.asarray(champion_size)[entered]))


def size_only(variation_entered: np.ndarray, champion_entered: np.ndarray, variation: np.ndarray,
              champion: np.ndarray) -> bool:
    """True when the variation entered exactly where CHAMPION did with the same per-unit P&L (only its size
    may differ): it is judged per unit at risk."""
    ve, ce = np.asarray(variation_entered, bool), np.asarray(champion_entered, bool)
    return bool(np.array_equal(ve, ce) and np.allclose(np.asarray(variation)[ce], np.asarray(champion)[ce],
                                                       equal_nan=True))


def compare(variation: np.ndarray, champion: np.ndarray, variation_entered: np.ndarray,
            champion_entered: np.ndarray, variation_size: np.ndarray, champion_size: np.ndarray, *,
            clusters: np.ndarray | None = None, samples: int = 2000, seed: int = 13) -> Paired | None:
    """The comparison a variation gets against CHAMPION on the same candidates (per-unit P&L, 0 where not
    entered): None for a no-op, per unit at risk for a size-only variation, else at equal size."""
    if is_noop(variation, champion, variation_entered, champion_entered, variation_size, champion_size):
        return None
    ce = np.asarray(champion_entered, bool)
    if size_only(variation_entered, champion_entered, variation, champion):
        sizes = np.asarray(variation_size, dtype=np.float64)[ce] / np.asarray(champion_size, dtype=np.float64)[ce]
        return per_unit_at_risk(np.asarray(champion, dtype=np.float64)[ce], sizes, samples=samples, seed=seed,
                                clusters=None if clusters is None else np.asarray(clusters)[ce])
    return paired(variation, champion, samples=samples, seed=seed, clusters=clusters)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Adjusted p-values (q) controlling the false discovery rate across tests run together."""
    return multiple.benjamini_hochberg(p_values)


def symbol_days(symbols: np.ndarray, times: np.ndarray) -> np.ndarray:
    """A cluster label per candidate: its symbol and the UTC day of its decision."""
    days = np.asarray(times, dtype="datetime64[D]").astype(str)
    return np.char.add(np.char.add(np.asarray(symbols).astype(str), "|"), days)
