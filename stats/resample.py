"""Bootstraps for dependent trades, as weight matrices: row b of `weights(...)` says how often each entry was
drawn in resample b, so every statistic is a weighted sum and any scheme fits any statistic.

- `iid`: entries drawn independently (Efron). Right only when entries are independent.
- `block`: circular blocks of `block` consecutive entries (Politis & Romano 1992): keeps the dependence
  within a block, for entries in time order whose outcomes overlap.
- `stationary`: blocks of geometric length with mean `block` (Politis & Romano 1994): the same, less
  sensitive to the exact block length.
- `cluster`: whole clusters (e.g. symbol-day) drawn with replacement: dependence within a cluster kept.

Written in NumPy rather than taken from `arch`: its bootstraps yield one resample at a time from Python,
and the gate's benchmark needs thousands of resamples per fit; the index rules are the published ones and
`tests/unit/stats` checks their defining properties (mean block length, a dependent series' variance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from stats.pvalues import PValue, from_resamples

Scheme = Literal["iid", "block", "stationary", "cluster"]
SCHEMES: tuple[str, ...] = ("iid", "block", "stationary", "cluster")


def default_block(n: int) -> int:
    """n^(1/3), the rate-optimal order of a block length for the variance of a mean (Hall, Horowitz & Jing
    1995), when the caller knows nothing better (such as the number of entries one label spans)."""
    return max(1, round(n ** (1 / 3)))


def _counts(indices: np.ndarray, n: int) -> np.ndarray:
    b = indices.shape[0]
    flat = (indices + (np.arange(b) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def indices(n: int, resamples: int, rng: np.random.Generator, *, scheme: Scheme = "iid",
            block: int | None = None) -> np.ndarray:
    """(resamples, n) positions drawn by the iid, circular-block or stationary rule."""
    if n < 1 or resamples < 1:
        raise ValueError(f"need n >= 1 and resamples >= 1, got n={n}, resamples={resamples}")
    if scheme == "iid":
        return rng.integers(0, n, size=(resamples, n))
    if scheme not in ("block", "stationary"):
        raise ValueError(f"unknown bootstrap scheme {scheme!r} for positions: choose from iid, block, stationary")
    length = block or default_block(n)
    if length < 1:
        raise ValueError(f"block length must be >= 1, got {length}")
    if scheme == "block":
        per = -(-n // length)
        starts = rng.integers(0, n, size=(resamples, per))
        return (starts[:, :, None] + np.arange(length)[None, None, :]).reshape(resamples, -1)[:, :n] % n
    pos = np.arange(n)
    new = rng.random((resamples, n)) < 1.0 / length  # a new block begins here
    new[:, 0] = True
    last = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # where the current block began
    starts = rng.integers(0, n, size=(resamples, n))
    return (np.take_along_axis(starts, last, axis=1) + (pos - last)) % n


def weights(n: int, resamples: int, rng: np.random.Generator, *, scheme: Scheme = "iid", block: int | None = None,
            clusters: np.ndarray | None = None) -> np.ndarray:
    """(resamples, n) draw counts of each entry per resample."""
    if scheme == "cluster":
        if clusters is None or len(clusters) != n:
            raise ValueError("the cluster bootstrap needs one cluster label per entry")
        _, which = np.unique(np.asarray(clusters), return_inverse=True)
        k = int(which.max()) + 1
        drawn = _counts(rng.integers(0, k, size=(resamples, k)), k)  # times each cluster is drawn
        return drawn[:, which]
    if scheme not in SCHEMES:
        raise ValueError(f"unknown bootstrap scheme {scheme!r}: choose from {', '.join(SCHEMES)}")
    return _counts(indices(n, resamples, rng, scheme=scheme, block=block), n)


@dataclass(frozen=True)
class Interval:
    """A statistic, its bootstrap percentile interval, and the test of "statistic = 0"."""

    estimate: float
    low: float
    high: float
    confidence: float
    resamples: int
    scheme: str
    p_two_sided: PValue
    p_above_zero: PValue  # one-sided: H0 statistic <= 0

    def as_dict(self) -> dict[str, object]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "confidence": self.confidence,
                "resamples": self.resamples, "scheme": self.scheme, "p_two_sided": self.p_two_sided.value,
                "p_above_zero": self.p_above_zero.value, "p_resolution": self.p_two_sided.resolution}


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n: int, *, resamples: int = 2000, seed: int = 0,
              scheme: Scheme = "iid", block: int | None = None, clusters: np.ndarray | None = None,
              confidence: float = 0.95) -> Interval:
    """`statistic(w)` maps a (B, n) weight matrix to B values (a row of ones gives the estimate).

    The interval is the percentile interval. The p-values shift the resampled values so that they centre on
    0 (the null) and count those at least as extreme as the estimate: (1 + k) / (1 + B), never 0."""
    rng = np.random.default_rng(seed)
    estimate = float(statistic(np.ones((1, n)))[0])
    values = np.empty(resamples)
    chunk = max(1, 4_000_000 // max(n, 1))  # bounded memory for long series
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        values[start:stop] = statistic(weights(n, stop - start, rng, scheme=scheme, block=block, clusters=clusters))
    values = values[np.isfinite(values)]
    if not len(values) or not np.isfinite(estimate):
        nan = float("nan")
        one = PValue(1.0, 1 / (1 + resamples), f"{scheme} bootstrap")
        return Interval(estimate, nan, nan, confidence, resamples, scheme, one, one)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    centred = values - values.mean()
    tol = 1e-12 * max(1.0, abs(estimate))
    two = int((np.abs(centred) >= abs(estimate) - tol).sum())
    above = int((centred >= estimate - tol).sum())
    if np.ptp(values) == 0:  # no variation: the estimate is what it is
        two = len(values) if estimate == 0 else 0
        above = len(values) if estimate <= 0 else 0
    method = f"{scheme} bootstrap"
    return Interval(estimate, float(low), float(high), confidence, len(values), scheme,
                    from_resamples(min(two, len(values)), len(values), method),
                    from_resamples(min(above, len(values)), len(values), method))


def mean(values: np.ndarray, **options: object) -> Interval:
    """The mean of `values` with a bootstrap interval (options: see `bootstrap`)."""
    x = np.asarray(values, dtype=np.float64)
    if not len(x):
        raise ValueError("the mean of no values")
    return bootstrap(lambda w: (w @ x) / w.sum(axis=1), len(x), **options)  # type: ignore[arg-type]


def paired_difference(a: np.ndarray, b: np.ndarray, **options: object) -> Interval:
    """Mean of a - b over the same entries (paired: noise common to both cancels), with its interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"a paired difference needs equal lengths, got {a.shape} and {b.shape}")
    return mean(a - b, **options)


def ratio_difference(values: np.ndarray, size: np.ndarray, **options: object) -> Interval:
    """Per unit of capital, sized minus unsized: sum(size * v) / sum(size) - mean(v), on the same entries.
    What a sizing rule adds per unit it puts at risk (spending more cannot win by itself)."""
    v, s = np.asarray(values, dtype=np.float64), np.asarray(size, dtype=np.float64)
    if v.shape != s.shape or not len(v):
        raise ValueError("values and sizes must be non-empty and of equal length")
    sv = s * v

    def statistic(w: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ sv) / (w @ s) - (w @ v) / w.sum(axis=1)

    return bootstrap(statistic, len(v), **options)  # type: ignore[arg-type]
