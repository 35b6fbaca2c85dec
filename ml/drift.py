"""Drift of a model's inputs and scores between its training set and its live predictions: PSI.

The population stability index of a quantity between a reference distribution (shares e_i over bins) and
a live one (a_i over the same bins) is sum((a_i - e_i) * ln(a_i / e_i)). The bins are the training set's
deciles (edges stored with the model, fewer where a feature has few distinct values) plus one bin for a
missing value; an empty bin counts as a share of `FLOOR`, so a live value where training never had one is
a large term, not a division by zero.

A model is demoted on the PSI of its score: the score is what the model acts on, and a feature that moves
without moving the score changes nothing the booster does. The features' PSIs are measured and reported
beside it, to say which input moved. The common reading of PSI: below 0.1 stable, 0.1-0.25 a shift worth a
look, above 0.25 a different population.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FLOOR = 1e-4  # the share an empty bin counts as: ln of a share of 0 is undefined


@dataclass(frozen=True)
class Histogram:
    edges: np.ndarray  # interior bin edges, increasing; a value equal to an edge falls in the bin above it
    shares: np.ndarray  # len(edges) + 1 value bins, then the missing bin; sums to 1

    @classmethod
    def of(cls, values: np.ndarray, bins: int) -> Histogram:
        v = np.asarray(values, dtype=np.float64)
        finite = v[np.isfinite(v)]
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])) if len(finite) else np.empty(0)
        return cls(edges, shares(edges, v))


def shares(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Share of `values` in each bin of `edges`, the missing bin last."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    counts = np.bincount(np.searchsorted(edges, v[finite], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, int((~finite).sum())).astype(np.float64)
    return counts / max(len(v), 1)


def psi(reference: Histogram, values: np.ndarray) -> float:
    """PSI of `values` against `reference`."""
    e = np.maximum(reference.shares, FLOOR)
    a = np.maximum(shares(reference.edges, values), FLOOR)
    return float(((a - e) * np.log(a / e)).sum())


@dataclass(frozen=True)
class DriftReference:
    """What the model is compared against: its training set's features and its scores on its calibration
    rows (rows the trees never fitted, so their scores are spread as live scores are)."""

    features: dict[str, Histogram]  # the features the model reads
    score: Histogram
    rows: int  # training rows behind the feature histograms
    scored: int  # calibration rows behind the score histogram

    @classmethod
    def of(cls, names: Sequence[str], raw: np.ndarray, used: np.ndarray, scores: np.ndarray,
           bins: int) -> DriftReference:
        features = {name: Histogram.of(raw[:, j], bins) for j, name in enumerate(names) if used[j]}
        return cls(features, Histogram.of(scores, bins), len(raw), len(scores))


@dataclass(frozen=True)
class DriftReading:
    n: int  # live predictions compared
    score_psi: float
    feature_psi: dict[str, float]

    def worst(self, count: int = 3) -> list[tuple[str, float]]:
        return sorted(self.feature_psi.items(), key=lambda item: -item[1])[:count]

    def summary(self) -> dict[str, object]:
        # pairs, largest first: a JSON object's key order does not survive jsonb
        return {"n": self.n, "score_psi": round(self.score_psi, 4),
                "features": [[name, round(value, 4)] for name, value in self.worst()]}


def measure(reference: DriftReference, live_scores: np.ndarray,
            live_features: Mapping[str, np.ndarray]) -> DriftReading:
    """PSI of the live scores and of each referenced feature (a feature absent from every live row reads as
    missing everywhere)."""
    n = len(live_scores)
    missing = np.full(n, np.nan)
    feature_psi = {name: psi(hist, live_features.get(name, missing)) for name, hist in reference.features.items()}
    return DriftReading(n, psi(reference.score, live_scores), feature_psi)


def demotion(reading: DriftReading, *, level: float, min_predictions: int) -> str | None:
    """Why the model must be demoted, or None: the score's PSI above `level` over at least `min_predictions`
    live predictions (fewer: PSI's sampling noise alone would decide)."""
    if reading.n < min_predictions or reading.score_psi <= level:
        return None
    moved = ", ".join(f"{name} {value:.2f}" for name, value in reading.worst())
    return (f"drift: score PSI {reading.score_psi:.3f} above {level:g} over the last {reading.n} live predictions "
            f"(largest feature PSIs: {moved})")
