"""Training and purged walk-forward evaluation of one strategy's confidence model.

The model is scikit-learn's `HistGradientBoostingClassifier` (NaN-aware, so a missing regime reading is a
value, not an error), calibrated with a sigmoid fitted on the latest fifth of its own training window (time
order, never shuffled; the trees fit only the entries whose labels ended before that fifth begins), so a
confidence of 0.7 means about 70 % of such entries won. Every entry is weighted by its label's uniqueness
(`uniqueness`): labels of one symbol open at the same time count about as one.

Walk-forward: events sorted by decision time are cut into `folds + 1` consecutive blocks; fold k tests block
k on a model trained only on events whose label ended (the later of decision + time limit and the real exit)
before block k began: that purges every training label that overlaps the test block.

The trading figures compare, on the same out-of-sample entries: rules only (every entry at size 1), and rules +
ML as deployed (size x `multiplier(confidence)` in [0.5, 1.5]; with the veto on, entries below the threshold
dropped). Returns are per unit of capital (sum of size x net return / sum of size), so sizing up cannot win
by spending more. The promotion gate's figures (`ml.gate`) are computed on the pooled predictions.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

from ml.compiled import cached_njit
from ml.config import GateParams, TrainParams
from ml.drift import DriftReference
from ml.features import FEATURES
from ml.gate import figures as gate_figures
from ml.gate import held_back_split
from ml.novelty import Novelty, nearest_mean


class TrainingRefused(ValueError):
    """The data cannot give an honest model (constant target, too few events)."""


def multiplier(confidence: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
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


# The scikit-learn internals `Forest.of` reads. They are private, so scikit-learn is pinned
# (requirements/constraints.txt) and `check_internals` names what changed instead of failing somewhere deep.
_PRIVATE_ATTRIBUTES = ("_predictors", "_baseline_prediction", "n_trees_per_iteration_")
_NODE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf",
                "is_categorical")


class ForestUnsupported(TypeError):
    """The fitted classifier cannot be flattened into a `Forest`: scikit-learn's private tree internals changed
    (an upgrade past the pinned version), or a model kind the walk does not implement."""


def check_internals(booster: HistGradientBoostingClassifier) -> None:
    """Raise `ForestUnsupported` naming the missing private attribute or node field of a fitted booster."""
    missing = [name for name in _PRIVATE_ATTRIBUTES if not hasattr(booster, name)]
    if not missing:
        predictors = booster._predictors
        nodes = getattr(predictors[0][0], "nodes", None) if predictors and predictors[0] else None
        fields = () if nodes is None or nodes.dtype.names is None else nodes.dtype.names
        missing = [f"nodes[{f!r}]" for f in _NODE_FIELDS if f not in fields]
    if missing:
        raise ForestUnsupported(
            f"scikit-learn {sklearn.__version__}: HistGradientBoostingClassifier lacks {', '.join(missing)}, "
            "which ml.train.Forest reads to score batches; pin scikit-learn to the version in "
            "requirements/constraints.txt or update Forest.of")


def _flat_tree(nodes: np.ndarray, n_features: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                         np.ndarray, int]:
    """One tree's nodes re-laid breadth first so that each split's two children are adjacent (right = left + 1):
    the walk then steps `child + (x > threshold)` without a branch. NaN follows `missing_go_to_left` by the
    column read: `feature` of the extended input holds NaN as -inf (goes left), `n_features + feature` as +inf
    (goes right). A leaf reads the constant-zero column `2 * n_features` against +inf and is its own child, so
    walking on from a leaf stays there. Returns column, threshold, child, value per node and the tree's depth."""
    order, child_of, depth = [0], {}, {0: 0}
    for old in order:  # the list grows while it is read: breadth first
        if not nodes["is_leaf"][old]:
            left, right = int(nodes["left"][old]), int(nodes["right"][old])
            child_of[old] = len(order)
            order += [left, right]
            depth[left] = depth[right] = depth[old] + 1
    o = np.asarray(order)
    leaf = nodes["is_leaf"][o].astype(bool)
    nan_right = ~nodes["missing_go_to_left"][o].astype(bool)
    column = np.where(leaf, 2 * n_features, nodes["feature_idx"][o].astype(np.int64) + n_features * nan_right)
    threshold = np.where(leaf, np.inf, nodes["num_threshold"][o])
    child = np.asarray([child_of.get(old, new) + offset for new, old in enumerate(order)], dtype=np.int64)
    return (column.astype(np.int64), threshold.astype(np.float64), child, nodes["value"][o].astype(np.float64),
            max(depth.values()))


@dataclass(frozen=True)
class Forest:
    """A fitted `CalibratedClassifierCV(HistGradientBoostingClassifier, sigmoid)` as flat NumPy arrays, so a
    batch is scored by one compiled walk instead of scikit-learn's Python loop over 200 trees (plus input
    validation and an OpenMP thread team per call: 20-40 ms for 200 rows, most of it overhead).

    Same decisions as scikit-learn's `_predict_one_from_raw_data` for numeric splits (NaN follows
    `missing_go_to_left`, else `x <= threshold` goes left), laid out by `_flat_tree` so that a step is
    branch-free. Raw score = baseline + the sum of the leaves; each calibrator maps it with expit(-(a * raw + b));
    the probabilities of the calibrated members are averaged, as `CalibratedClassifierCV.predict_proba` does.
    `tests/unit/ml` holds it equal to `predict_proba` (to float rounding) on rows with missing values."""

    n_features: int
    column: np.ndarray  # int64 per node: column of the extended input to compare
    threshold: np.ndarray  # float64 per node (+inf at leaves)
    child: np.ndarray  # int64 per node: the left child (right = left + 1); a leaf's own index
    value: np.ndarray  # float64 per node: the leaf value
    roots: np.ndarray  # (members, trees): each tree's first node
    depths: np.ndarray  # (members, trees): steps from the root to the deepest leaf
    baseline: np.ndarray  # (members,)
    slope: np.ndarray  # (members,) calibrator a
    intercept: np.ndarray  # (members,) calibrator b

    @classmethod
    def of(cls, calibrated: CalibratedClassifierCV) -> Forest:
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]] = []
        roots, depths, baseline, slope, intercept = [], [], [], [], []
        offset = 0
        n_features = int(calibrated.n_features_in_)
        for member in calibrated.calibrated_classifiers_:
            base = member.estimator
            base = getattr(base, "estimator", base)  # FrozenEstimator wraps the booster
            if not isinstance(base, HistGradientBoostingClassifier):
                raise ForestUnsupported("Forest compiles a HistGradientBoostingClassifier only")
            check_internals(base)
            if base.n_trees_per_iteration_ != 1:
                raise ForestUnsupported("Forest compiles a binary HistGradientBoostingClassifier only")
            [calibrator] = member.calibrators
            member_roots, member_depths = [], []
            for [predictor] in base._predictors:
                if predictor.nodes["is_categorical"].any():
                    raise ForestUnsupported("Forest does not compile categorical splits")
                part = _flat_tree(predictor.nodes, n_features, offset)
                member_roots.append(offset)
                member_depths.append(part[4])
                parts.append(part)
                offset += len(part[0])
            roots.append(member_roots)
            depths.append(member_depths)
            baseline.append(float(np.ravel(base._baseline_prediction)[0]))
            slope.append(float(calibrator.a_))
            intercept.append(float(calibrator.b_))
        column, threshold, child, value = (np.concatenate([p[k] for p in parts]) for k in range(4))
        return cls(n_features=n_features, column=column, threshold=threshold, child=child, value=value,
                   roots=np.asarray(roots, dtype=np.int64), depths=np.asarray(depths, dtype=np.int64),
                   baseline=np.asarray(baseline), slope=np.asarray(slope), intercept=np.asarray(intercept))

    def extended(self, x: np.ndarray) -> np.ndarray:
        """`x` (n, features) as the walk reads it: NaN as -inf, NaN as +inf, a zero column (see `_flat_tree`)."""
        n, f = x.shape
        out = np.empty((n, 2 * f + 1))
        nan = np.isnan(x)
        out[:, :f] = x
        out[:, f:2 * f] = x
        out[:, :f][nan] = -np.inf
        out[:, f:2 * f][nan] = np.inf
        out[:, 2 * f] = 0.0
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) per row of `x` (n, features)."""
        raw = _tree_sums(self.extended(np.asarray(x, dtype=np.float64)), self.roots, self.depths, self.column,
                         self.threshold, self.child, self.value, self.baseline)
        return (1.0 / (1.0 + np.exp(self.slope * raw + self.intercept))).mean(axis=1)


@cached_njit
def _tree_sums(x: np.ndarray, roots: np.ndarray, depths: np.ndarray, column: np.ndarray, threshold: np.ndarray,
               child: np.ndarray, value: np.ndarray,
               baseline: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled; tested through Forest.predict
    """Raw score per row and member: baseline plus the leaf values in tree order (scikit-learn's sum). One tree
    at a time over all rows, one depth level at a time: every row's step is independent and branch-free, so the
    CPU overlaps the loads of many rows (2-4x faster than walking one row to its leaf with a branch per step)."""
    n = x.shape[0]
    members, trees = roots.shape
    out = np.empty((n, members))
    node = np.empty(n, np.int64)
    for m in range(members):
        for i in range(n):
            out[i, m] = baseline[m]
        for t in range(trees):
            root = roots[m, t]
            for i in range(n):
                node[i] = root
            for _ in range(depths[m, t]):
                for i in range(n):
                    at = node[i]
                    node[i] = child[at] + (x[i, column[at]] > threshold[at])
            for i in range(n):
                out[i, m] += value[node[i]]
    return out


_WARM = threading.Event()


def warm_up() -> None:
    """Compile (or load from numba's cache) the tree walk on a one-tree forest, so a scan cycle never pays it.
    Idempotent; `ml.scoring.MlScorer` runs it in a background thread when it starts."""
    if _WARM.is_set():
        return
    # the argument types `Forest.predict` passes (one leaf that reads the zero column), so this is its compile
    one = np.zeros((1, 1), dtype=np.int64)
    _tree_sums(np.zeros((1, 3)), one, one, np.full(1, 2, dtype=np.int64), np.full(1, np.inf),
               np.zeros(1, dtype=np.int64), np.zeros(1), np.zeros(1))
    nearest_mean(np.zeros((1, 1)), np.zeros((1, 1)), 1)  # the dissimilarity index's distance kernel
    _WARM.set()


@dataclass
class ConfidenceModel:
    """What the registry stores: the calibrated classifier, the feature names in order, the features the
    training data never held (always NaN there: the model ignores them), the nearest-neighbour reference of
    the out-of-distribution score (`ml.novelty`) and the training distributions drift is measured against
    (`ml.drift`)."""

    features: tuple[str, ...]
    classifier: CalibratedClassifierCV
    unused: tuple[str, ...]
    novelty: Novelty
    drift: DriftReference

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
        """The dissimilarity index per row (`ml.novelty`): about 0.5 among the training points, 1 as far from
        the nearest ones as training points are from each other on average, infinite when a feature training
        always had is missing."""
        return self.novelty.index(self.raw(frame) if isinstance(frame, pd.DataFrame) else frame)

    def score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """`predict` and `dissimilarity` of one batch, reading the frame once (what the scan calls)."""
        x = self.raw(frame)
        return self.forest.predict(self.matrix(x)), self.novelty.index(x)


def uniqueness(events: pd.DataFrame) -> np.ndarray:
    """Each label's average uniqueness (López de Prado, AFML 4.4): the mean over its span, from decision to
    exit (or to its time limit without an exit), of 1 / the number of labels of the same symbol open at that
    instant. Labels of one symbol that overlap share one market path and so one outcome in part; weighting
    each by its uniqueness makes k labels over the same stretch count about as one. A label of zero length
    has uniqueness 1."""
    start = events["decided_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    stop = (events["exit_ts"] if "exit_ts" in events else events["horizon_end"]).to_numpy(
        dtype="datetime64[ns]").astype(np.int64)
    stop = np.maximum(stop, start)
    symbols = events["symbol"].to_numpy() if "symbol" in events else np.zeros(len(events))
    out = np.ones(len(events))
    for symbol in pd.unique(symbols):
        rows = np.flatnonzero(symbols == symbol)
        s, e = start[rows], stop[rows]
        edges = np.unique(np.concatenate([s, e]))
        # labels open on each elementary interval [edges[j], edges[j + 1])
        opened = np.zeros(len(edges))
        np.add.at(opened, np.searchsorted(edges, s), 1.0)
        np.add.at(opened, np.searchsorted(edges, e), -1.0)
        open_count = np.cumsum(opened)[:-1]
        share = np.where(open_count > 0, np.diff(edges) / np.maximum(open_count, 1.0), 0.0)
        cumulative = np.concatenate([[0.0], np.cumsum(share)])
        a, b = np.searchsorted(edges, s), np.searchsorted(edges, e)
        length = (e - s).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(length > 0, (cumulative[b] - cumulative[a]) / length, 1.0)
    return out


def fit(events: pd.DataFrame, params: TrainParams) -> ConfidenceModel:
    """A calibrated classifier on `events` with the `FEATURES` columns and `label` (fitted in time order)."""
    check_target(events["label"], params)
    events = events.sort_values("decided_at", kind="stable")
    raw = events[list(FEATURES)].to_numpy(dtype=np.float64)
    cut = int(len(events) * (1 - params.calibration_share))
    # the trees learn only from labels whose trade had closed (its real exit) when the calibration slice
    # begins: a label still open then shares its market path with the first calibration entries, and a
    # calibrator fitted on scores whose outcomes the trees partly saw would map confidence too high
    decided = events["decided_at"].to_numpy(dtype="datetime64[ns]")
    closed = (events["exit_ts"] if "exit_ts" in events else events["horizon_end"]).to_numpy(dtype="datetime64[ns]")
    grown = np.flatnonzero(closed[:cut] < decided[cut])
    # a feature the classifier's window never holds is unused (NaN everywhere there), even if later rows have it
    seen = np.isfinite(raw[grown]).any(axis=0)
    unused = tuple(name for name, ok in zip(FEATURES, seen, strict=True) if not ok)
    known = np.where(seen, raw, np.nan)  # what the model reads, for the novelty and drift references
    x = raw.copy()
    x[:, ~seen] = 0.0
    y = events["label"].to_numpy(dtype=np.int64)
    base = HistGradientBoostingClassifier(
        max_iter=params.max_iter, learning_rate=params.learning_rate, max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf, l2_regularization=params.l2_regularization,
        random_state=params.seed)
    if len(np.unique(y[grown])) < 2:
        raise TrainingRefused(f"refused: the {len(grown)} events whose labels ended before the calibration window "
                              "hold one class only")
    weight = uniqueness(events)
    base.fit(x[grown], y[grown], sample_weight=weight[grown])
    if len(np.unique(y[cut:])) < 2:
        raise TrainingRefused("refused: the calibration window (latest events) holds one class only")
    calibrated = CalibratedClassifierCV(FrozenEstimator(base), method="sigmoid")
    with warnings.catch_warnings():
        # scikit-learn warns that the frozen trees do not take the weights: they are meant for the calibrator
        # alone (the trees were fitted with theirs above)
        warnings.filterwarnings("ignore", message="Since FrozenEstimator does not appear to accept sample_weight")
        calibrated.fit(x[cut:], y[cut:], sample_weight=weight[cut:])
    novelty = Novelty.of(known, k=params.ood_neighbours, size=params.ood_reference, seed=params.seed)
    drift = DriftReference.of(FEATURES, known, seen, Forest.of(calibrated).predict(x[cut:]), params.drift_bins)
    return ConfidenceModel(tuple(FEATURES), calibrated, unused, novelty, drift)


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # row positions
    test: np.ndarray


def walk_forward_folds(events: pd.DataFrame, folds: int) -> list[Fold]:
    """Purged, embargoed, expanding-window folds over `events` sorted by `decided_at`."""
    decided = events["decided_at"].to_numpy(dtype="datetime64[ns]")
    horizon = _label_ends(events)  # purged by when each label really ended
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


def _sizes(p: np.ndarray, threshold: float | np.ndarray, veto: bool) -> np.ndarray:
    size = multiplier(p, threshold)
    return np.where(p >= threshold, size, 0.0) if veto else size


def trading_figures(returns: np.ndarray, y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray,
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
    }


def scores(y: np.ndarray, p: np.ndarray, returns: np.ndarray, threshold: float | np.ndarray,
           veto: bool = False) -> dict[str, Any]:
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


def _label_ends(events: pd.DataFrame) -> np.ndarray:
    """When each label really ended: the later of its time limit and its exit (an exit across a gap in the
    candles can come after the limit)."""
    horizon = events["horizon_end"].to_numpy(dtype="datetime64[ns]")
    if "exit_ts" not in events:
        return horizon
    return np.maximum(horizon, events["exit_ts"].to_numpy(dtype="datetime64[ns]"))


def held_back(events: pd.DataFrame, params: TrainParams, gate: GateParams,
              threshold: float | np.ndarray) -> dict[str, Any]:
    """The held-back-asset check (`ml.gate.held_back_split`): trading figures and AUC on the held-back assets'
    later entries of a model fitted without them."""
    train, test, assets = held_back_split(events, gate.held_back_share, params.seed)
    if not assets:
        return {"skipped": "one base asset only: nothing to hold back"}
    if not len(test):
        return {"skipped": f"no entries of the held-back assets ({', '.join(assets)}) in the later half"}
    try:
        model = fit(events.iloc[train], params)
    except TrainingRefused as exc:
        return {"skipped": f"the training window without {', '.join(assets)}: {exc}"}
    tested = events.iloc[test]
    p = model.predict(tested)
    y = tested["label"].to_numpy(dtype=np.int64)
    r = tested["net_return_pct"].to_numpy(dtype=np.float64)
    both = len(np.unique(y)) == 2
    return {"assets": assets, "train": len(train), "n": len(test),
            "auc": round(float(roc_auc_score(y, p)), 4) if both else None,
            "trading": trading_figures(r, y, p, threshold if np.ndim(threshold) == 0 else threshold[test])}


def walk_forward(events: pd.DataFrame, params: TrainParams, threshold: float | pd.Series,
                 progress: Any = None, gate: GateParams | None = None) -> dict[str, Any]:
    """Out-of-sample metrics over purged walk-forward folds, the promotion gate's figures on the pooled
    predictions, and the held-back-asset check; folds whose training window is refused are reported as
    skipped, never silently dropped. `threshold` is one for all entries or one per entry (a Series indexed as
    `events`: `ml.payoff.for_events`)."""
    gate = gate or GateParams()
    check_target(events["label"], params)
    events = events.sort_values("decided_at", kind="stable")
    if isinstance(threshold, pd.Series):
        th_all = threshold.reindex(events.index).to_numpy(dtype=np.float64)
        if np.isnan(th_all).any():
            raise ValueError("walk_forward: the threshold Series lacks some entries of `events`")
    else:
        th_all = np.full(len(events), float(threshold))
    events = events.reset_index(drop=True)
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
            fold_scores = scores(y_all[fold.test], p, r_all[fold.test], th_all[fold.test])
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
    pooled = scores(y_all[idx], p, r_all[idx], th_all[idx])
    decided = events["decided_at"].to_numpy(dtype="datetime64[ns]")
    pooled["gate"] = gate_figures(y_all[idx], p, r_all[idx], _sizes(p, th_all[idx], False), decided[idx],
                                  _label_ends(events)[idx], gate, seed=params.seed)
    return {"out_of_sample": pooled, "folds": per_fold, "skipped_folds": skipped,
            "threshold": round(float(np.median(th_all)), 4),
            "thresholds": sorted({round(float(t), 4) for t in th_all}),
            "events": len(events), "held_back": held_back(events, params, gate, th_all)}
