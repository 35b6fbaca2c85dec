"""Training and purged walk-forward evaluation of one strategy's confidence model.

The model is scikit-learn's `HistGradientBoostingClassifier` (NaN-aware, so a missing regime reading is a
value, not an error), calibrated with a sigmoid fitted on the latest fifth of its own training window (time
order, never shuffled), so a confidence of 0.7 means about 70 % of such entries won.

Walk-forward: events sorted by decision time are cut into `folds + 1` consecutive blocks; fold k tests block
k on a model trained only on events whose label horizon (decision + time limit) ended before block k began:
that purges every training label that overlaps the test block and embargoes the time limit before it.

The trading figures compare, on the same out-of-sample entries: rules only (every entry at size 1), and rules +
ML as deployed (size x `multiplier(confidence)` in [0.5, 1.5]; with the veto on, entries below the threshold
dropped). Returns are per unit of capital (sum of size x net return / sum of size), so sizing up cannot win
by spending more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from ml.config import TrainParams
from ml.features import FEATURES


class TrainingRefused(ValueError):
    """The data cannot give an honest model (constant target, too few events)."""


def multiplier(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Size multiplier of the booster: 1 at the threshold, +-2x the distance, clipped to [0.5, 1.5]."""
    return np.clip(1.0 + 2.0 * (np.asarray(confidence, dtype=np.float64) - threshold), 0.5, 1.5)


def check_target(labels: pd.Series | np.ndarray, params: TrainParams, what: str = "") -> None:
    """Refuse a target a model cannot honestly learn: too few events, one class, or a near-constant one."""
    y = np.asarray(labels)
    where = f" for {what}" if what else ""
    if len(y) < params.min_events:
        raise TrainingRefused(f"refused{where}: {len(y)} labelled events, at least {params.min_events} needed")
    if not np.isin(y, (0, 1)).all():
        raise TrainingRefused(f"refused{where}: labels must be the integers 0 and 1")
    wins = int(y.sum())
    minority = min(wins, len(y) - wins)
    if minority == 0:
        raise TrainingRefused(f"refused{where}: the target is constant (all {len(y)} labels are {int(y[0])}); "
                              "a model of a constant reports any accuracy it likes and predicts nothing")
    if minority < params.min_minority_events or minority / len(y) < params.min_minority_share:
        raise TrainingRefused(f"refused{where}: the target is near-constant ({wins} wins of {len(y)} events; the "
                              f"rarer class needs at least {params.min_minority_events} events and "
                              f"{params.min_minority_share:.0%} of them)")


@dataclass(frozen=True)
class Forest:
    """A fitted `CalibratedClassifierCV(HistGradientBoostingClassifier, sigmoid)` as flat NumPy arrays, so a
    batch is scored by walking all trees at once instead of scikit-learn's Python loop over 200 trees (plus
    input validation and an OpenMP thread team per call: 20-40 ms for 200 rows, most of it overhead).

    The walk is scikit-learn's `_predict_one_from_raw_data` for numeric splits: NaN follows `missing_go_to_left`,
    else `x <= threshold` goes left; compiled with numba (in Hummingbot's runtime set, so already installed).
    Raw score = baseline + the sum of the leaves; each calibrator maps it with expit(-(a * raw + b)); the
    probabilities of the calibrated members are averaged, as `CalibratedClassifierCV.predict_proba` does.
    `tests/unit/ml` holds it equal to `predict_proba` (to float rounding) on rows with missing values."""

    nodes: np.ndarray  # int64 (node, 4): feature, left, right, flags (1: NaN goes left, 2: leaf); all trees
    splits: np.ndarray  # float64 (node, 2): threshold, leaf value (packed: one cache line per visited node)
    roots: np.ndarray  # (members, trees): each tree's first node
    baseline: np.ndarray  # (members,)
    slope: np.ndarray  # (members,) calibrator a
    intercept: np.ndarray  # (members,) calibrator b

    @classmethod
    def of(cls, calibrated: CalibratedClassifierCV) -> Forest:
        parts: list[np.ndarray] = []
        roots, baseline, slope, intercept = [], [], [], []
        offset = 0
        for member in calibrated.calibrated_classifiers_:
            base = member.estimator
            base = getattr(base, "estimator", base)  # FrozenEstimator wraps the booster
            if not isinstance(base, HistGradientBoostingClassifier) or base.n_trees_per_iteration_ != 1:
                raise TypeError("Forest compiles a binary HistGradientBoostingClassifier only")
            [calibrator] = member.calibrators
            member_roots = []
            for [predictor] in base._predictors:
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise TypeError("Forest does not compile categorical splits")
                member_roots.append(offset)
                parts.append(nodes)
                offset += len(nodes)
            roots.append(member_roots)
            baseline.append(float(np.ravel(base._baseline_prediction)[0]))
            slope.append(float(calibrator.a_))
            intercept.append(float(calibrator.b_))
        nodes = np.concatenate(parts)
        starts = np.repeat(np.asarray([r for member in roots for r in member]),
                           [len(p) for p in parts])
        own = np.arange(len(nodes))
        leaf = nodes["is_leaf"].astype(bool)
        packed = np.stack([np.where(leaf, 0, nodes["feature_idx"]), np.where(leaf, own, nodes["left"] + starts),
                           np.where(leaf, own, nodes["right"] + starts),
                           nodes["missing_go_to_left"].astype(np.int64) | (leaf.astype(np.int64) << 1)],
                          axis=1).astype(np.int64)
        return cls(nodes=packed, splits=np.stack([nodes["num_threshold"], nodes["value"]], axis=1).astype(np.float64),
                   roots=np.asarray(roots, dtype=np.int64), baseline=np.asarray(baseline), slope=np.asarray(slope),
                   intercept=np.asarray(intercept))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) per row of `x` (n, features)."""
        raw = _tree_sums(np.ascontiguousarray(x, dtype=np.float64), self.roots, self.nodes, self.splits, self.baseline)
        return (1.0 / (1.0 + np.exp(self.slope * raw + self.intercept))).mean(axis=1)


@numba.njit(nogil=True, cache=False)
def _tree_sums(x: np.ndarray, roots: np.ndarray, nodes: np.ndarray, splits: np.ndarray,
               baseline: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled; tested through Forest.predict
    """Raw score per row and member: baseline plus the leaf values in tree order (scikit-learn's sum), the walk
    compiled, one tree at a time over all rows (its nodes stay in cache). NumPy's per-step fancy indexing was
    3-5x slower for 200 rows x 200 trees; separate node arrays (one load each) 2x slower than packed rows."""
    n = x.shape[0]
    members, trees = roots.shape
    out = np.empty((n, members))
    for m in range(members):
        out[:, m] = baseline[m]
    for m in range(members):
        for t in range(trees):
            root = roots[m, t]
            for i in range(n):
                node = root
                while not nodes[node, 3] & 2:
                    v = x[i, nodes[node, 0]]
                    if np.isnan(v):
                        node = nodes[node, 1] if nodes[node, 3] & 1 else nodes[node, 2]
                    elif v <= splits[node, 0]:
                        node = nodes[node, 1]
                    else:
                        node = nodes[node, 2]
                out[i, m] += splits[node, 1]
    return out


@dataclass
class ConfidenceModel:
    """What the registry stores: the calibrated classifier, the feature names in order, the features the
    training data never held (always NaN there: the model ignores them), and the training set's per-feature
    quantiles for the out-of-distribution score."""

    features: tuple[str, ...]
    classifier: CalibratedClassifierCV
    unused: tuple[str, ...]
    low: np.ndarray  # 0.5 % quantile per feature (NaN where unused)
    high: np.ndarray  # 99.5 % quantile per feature

    def raw(self, frame: pd.DataFrame) -> np.ndarray:
        """The feature columns in the model's order, as one float array (one block copy when the frame holds
        exactly those columns, as `ml.features.build` returns them; else column by column)."""
        if tuple(frame.columns) == self.features:
            return frame.to_numpy(dtype=np.float64, copy=True)
        return np.column_stack([frame[name].to_numpy(dtype=np.float64) for name in self.features])

    def matrix(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """What the classifier reads: the raw features with the unused ones zeroed."""
        x = self.raw(frame) if isinstance(frame, pd.DataFrame) else np.array(frame, dtype=np.float64)
        for name in self.unused:
            x[:, self.features.index(name)] = 0.0
        return x

    @property
    def forest(self) -> Forest:
        """The classifier compiled once per process (also for artefacts saved before it existed)."""
        compiled = self.__dict__.get("_forest")
        if compiled is None:
            compiled = self.__dict__["_forest"] = Forest.of(self.classifier)
        return compiled

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_forest"}  # the artefact holds the classifier

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(win) per row, one batch: the compiled forest (equal to `classifier.predict_proba`)."""
        return self.forest.predict(self.matrix(frame))

    def dissimilarity(self, frame: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Share of the used features outside the training set's 0.5-99.5 % range (or missing where training
        always had them): 0 looks like the training data, 1 like nothing it saw."""
        x = self.raw(frame) if isinstance(frame, pd.DataFrame) else frame
        used = np.isfinite(self.low) & np.isfinite(self.high)
        if not used.any():
            return np.zeros(len(x))
        xs = x[:, used]
        outside = ~np.isfinite(xs) | (xs < self.low[used]) | (xs > self.high[used])
        return outside.mean(axis=1)

    def score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """`predict` and `dissimilarity` of one batch, reading the frame once (what the scan calls)."""
        x = self.raw(frame)
        return self.forest.predict(self.matrix(x)), self.dissimilarity(x)


def fit(events: pd.DataFrame, params: TrainParams) -> ConfidenceModel:
    """A calibrated classifier on `events` with the `FEATURES` columns and `label` (fitted in time order)."""
    check_target(events["label"], params)
    events = events.sort_values("decided_at", kind="stable")
    raw = events[list(FEATURES)].to_numpy(dtype=np.float64)
    cut = int(len(events) * (1 - params.calibration_share))
    # a feature the classifier's window never holds is unused (NaN everywhere there), even if later rows have it
    seen = np.isfinite(raw[:cut]).any(axis=0)
    unused = tuple(name for name, ok in zip(FEATURES, seen, strict=True) if not ok)
    with np.errstate(all="ignore"):
        low = np.where(seen, np.nanquantile(np.where(seen, raw[:cut], 0.0), 0.005, axis=0), np.nan)
        high = np.where(seen, np.nanquantile(np.where(seen, raw[:cut], 0.0), 0.995, axis=0), np.nan)
    x = raw.copy()
    x[:, ~seen] = 0.0
    y = events["label"].to_numpy(dtype=np.int64)
    base = HistGradientBoostingClassifier(
        max_iter=params.max_iter, learning_rate=params.learning_rate, max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf, l2_regularization=params.l2_regularization,
        random_state=params.seed)
    base.fit(x[:cut], y[:cut])
    if len(np.unique(y[cut:])) < 2:
        raise TrainingRefused("refused: the calibration window (latest events) holds one class only")
    calibrated = CalibratedClassifierCV(FrozenEstimator(base), method="sigmoid")
    calibrated.fit(x[cut:], y[cut:])
    return ConfidenceModel(tuple(FEATURES), calibrated, unused, low, high)


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # row positions
    test: np.ndarray


def walk_forward_folds(events: pd.DataFrame, folds: int) -> list[Fold]:
    """Purged, embargoed, expanding-window folds over `events` sorted by `decided_at`."""
    decided = events["decided_at"].to_numpy(dtype="datetime64[ns]")
    horizon = events["horizon_end"].to_numpy(dtype="datetime64[ns]")
    n = len(events)
    edges = np.linspace(0, n, folds + 2).astype(int)
    out = []
    for k in range(1, folds + 1):
        start, stop = edges[k], edges[k + 1]
        if stop <= start:
            continue
        test_start = decided[start]
        train = np.flatnonzero((decided < test_start) & (horizon < test_start))
        out.append(Fold(k, train, np.arange(start, stop)))
    return out


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict[str, float | int]]:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            table.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": int(mask.sum()),
                          "mean_confidence": round(float(p[mask].mean()), 4),
                          "win_rate": round(float(y[mask].mean()), 4)})
    return table


def _sizes(p: np.ndarray, threshold: float, veto: bool) -> np.ndarray:
    size = multiplier(p, threshold)
    return np.where(p >= threshold, size, 0.0) if veto else size


def edge_lower_bound(returns: np.ndarray, p: np.ndarray, threshold: float, veto: bool = False,
                     resamples: int = 1000, seed: int = 0) -> float:
    """5th percentile of (rules+ML minus rules-only) return per unit over a paired bootstrap of the entries:
    above zero means the edge is unlikely to be noise."""
    if len(returns) == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    size = _sizes(p, threshold, veto)
    picks = rng.integers(0, len(returns), size=(resamples, len(returns)))
    r, s = returns[picks], size[picks]
    with np.errstate(invalid="ignore", divide="ignore"):
        edge = (s * r).sum(axis=1) / s.sum(axis=1) - r.mean(axis=1)
    return float(np.nanquantile(edge, 0.05))


def trading_figures(returns: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float,
                    veto: bool = False) -> dict[str, float | int]:
    """Rules only vs rules + ML on the same entries: trades, win rate, net return per unit of capital."""
    size = _sizes(p, threshold, veto)
    taken = size > 0
    rules_pnl = float(returns.sum())
    ml_pnl = float((size * returns).sum())
    above = p >= threshold
    return {
        "rules_trades": len(returns),
        "rules_win_rate": round(float(y.mean()), 4) if len(y) else 0.0,
        "rules_net_pnl_pct": round(rules_pnl, 4),
        "rules_return_per_unit_pct": round(rules_pnl / len(returns), 4) if len(returns) else 0.0,
        "ml_trades": int(taken.sum()),
        "ml_win_rate": round(float(np.average(y[taken], weights=size[taken])), 4) if taken.any() else 0.0,
        "ml_net_pnl_pct": round(ml_pnl, 4),
        "ml_return_per_unit_pct": round(ml_pnl / float(size.sum()), 4) if size.sum() > 0 else 0.0,
        "above_threshold_trades": int(above.sum()),
        "above_threshold_win_rate": round(float(y[above].mean()), 4) if above.any() else 0.0,
        "edge_per_unit_p05_pct": round(edge_lower_bound(returns, p, threshold, veto), 4),
    }


def scores(y: np.ndarray, p: np.ndarray, returns: np.ndarray, threshold: float, veto: bool = False) -> dict[str, Any]:
    """Every metric of one set of out-of-sample predictions."""
    both = len(np.unique(y)) == 2
    above = p >= threshold
    return {
        "n": len(y),
        "base_rate": round(float(y.mean()), 4),
        "auc": round(float(roc_auc_score(y, p)), 4) if both else None,
        "brier": round(float(brier_score_loss(y, p)), 4),
        "log_loss": round(float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])), 4),
        "precision_at_threshold": round(float(y[above].mean()), 4) if above.any() else None,
        "coverage_at_threshold": round(float(above.mean()), 4),
        "calibration": calibration_table(y, p),
        "trading": trading_figures(returns, y, p, threshold, veto),
    }


def walk_forward(events: pd.DataFrame, params: TrainParams, threshold: float,
                 progress: Any = None) -> dict[str, Any]:
    """Out-of-sample metrics over purged walk-forward folds; folds whose training window is refused are
    reported as skipped, never silently dropped."""
    check_target(events["label"], params)
    events = events.sort_values("decided_at", kind="stable").reset_index(drop=True)
    y_all = events["label"].to_numpy(dtype=np.int64)
    r_all = events["net_return_pct"].to_numpy(dtype=np.float64)
    tested, predicted, per_fold, skipped = [], [], [], []
    for fold in walk_forward_folds(events, params.folds):
        try:
            model = fit(events.iloc[fold.train], params)
        except TrainingRefused as exc:
            skipped.append({"fold": fold.index, "reason": str(exc)})
        else:
            p = model.predict(events.iloc[fold.test])
            tested.append(fold.test)
            predicted.append(p)
            fold_scores = scores(y_all[fold.test], p, r_all[fold.test], threshold)
            fold_scores.pop("calibration")
            per_fold.append({"fold": fold.index, "train": len(fold.train),
                             "test_from": str(events["decided_at"].iloc[fold.test[0]]), **fold_scores})
        if progress is not None:
            progress(fold.index)
    if not tested:
        largest = max((len(f.train) for f in walk_forward_folds(events, params.folds)), default=0)
        raise TrainingRefused(f"refused: {len(events)} events leave no trainable walk-forward window (the largest "
                              f"purged training window holds {largest} events; its refusal: "
                              f"{skipped[-1]['reason'] if skipped else 'none'})")
    idx = np.concatenate(tested)
    p = np.concatenate(predicted)
    pooled = scores(y_all[idx], p, r_all[idx], threshold)
    return {"out_of_sample": pooled, "folds": per_fold, "skipped_folds": skipped, "threshold": threshold,
            "events": len(events)}


def beats_rules(metrics: dict[str, Any], min_auc: float = 0.55) -> tuple[bool, str]:
    """Whether the walk-forward figures favour rules + ML over rules only, and why. All three must hold out of
    sample: the model ranks entries (AUC at least `min_auc`), rules + ML earns more per unit of capital, and
    that edge is not bootstrap noise (its 5th percentile above zero)."""
    o = metrics["out_of_sample"]
    t = o["trading"]
    ml, rules, low = t["ml_return_per_unit_pct"], t["rules_return_per_unit_pct"], t["edge_per_unit_p05_pct"]
    figures = f"rules+ML {ml:+.4f}% vs rules only {rules:+.4f}% per unit out of sample, AUC {o['auc']}"
    if o["auc"] is None or o["auc"] < min_auc:
        return False, f"{figures}: the model does not rank entries (AUC below {min_auc:g})"
    if ml <= rules:
        return False, f"{figures}: ML does not beat rules"
    if low <= 0:
        return False, f"{figures}: the edge is within noise (bootstrap 5th percentile {low:+.4f}%)"
    return True, f"{figures}, bootstrap 5th percentile of the edge {low:+.4f}%"
