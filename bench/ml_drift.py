"""Drift and novelty on the recorded history: how often PSI demotes and the dissimilarity index calls an entry
out of distribution when nothing changed, and on what happened next.

Events are built from the shared history (`../shared/data/ohlcv-history`, or $OHLCV_HISTORY_DIR). Per
strategy, a model is fitted on the earliest `--train-share` of its entries (by decision time), as `ml train`
fits one; then, with live windows of `--window` scores (the `ml.drift.window` default):

1. A/A, i.i.d.: windows drawn with replacement from the model's own calibration rows (the score reference):
   the rate PSI passes `ml.drift.level` from sampling alone.
2. A/A in time: consecutive windows of the training entries in decision order, scored by the model,
   against the histogram of its scores on all of them: the same population, but each window a stretch of
   time, as live predictions come (the calibration rows alone are too few for a window).
3. Later: consecutive windows of the entries after the training window (what a live model would have seen
   next): the share of windows past the level, and the largest score PSI.
4. Novelty: the share of later entries with a dissimilarity index above `ml.ood_max_dissimilarity`.

Last line: one JSON object.

    .venv/bin/python bench/ml_drift.py [--window 500] [--runs 2000]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
from _support import PROJECT_ROOT
from threadpoolctl import threadpool_limits

from controller.scan.strategy_params import load_strategies
from ml.config import MlConfig
from ml.drift import Histogram, psi
from ml.events import build_events
from ml.features import FEATURES
from ml.train import TrainingRefused, fit

HISTORY = Path(os.environ.get("OHLCV_HISTORY_DIR", PROJECT_ROOT.parent / "shared" / "data" / "ohlcv-history"))


def windows(n: int, size: int, step: int) -> list[slice]:
    return [slice(start, start + size) for start in range(0, n - size + 1, step)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config = MlConfig()
    parser.add_argument("--window", type=int, default=config.drift.window)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--train-share", type=float, default=0.6)
    args = parser.parse_args()
    level, di_max = config.drift.level, config.ood_max_dissimilarity
    events, _ = build_events(HISTORY, load_strategies(), config.costs)
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, float | int | str]] = {}
    for name, group in events.groupby("strategy", sort=True):
        group = group.sort_values("decided_at", kind="stable").reset_index(drop=True)
        cut = int(len(group) * args.train_share)
        train, later = group.iloc[:cut], group.iloc[cut:]
        try:
            with threadpool_limits(1):
                model = fit(train, config.train)
        except TrainingRefused as exc:
            out[str(name)] = {"skipped": str(exc)}
            continue
        calibration = train.iloc[int(len(train) * (1 - config.train.calibration_share)):]
        reference = model.drift.score
        cal_scores = model.predict(calibration)
        iid = [psi(reference, rng.choice(cal_scores, size=args.window)) for _ in range(args.runs)]
        step = max(1, args.window // 10)
        train_scores = model.predict(train)
        in_sample = Histogram.of(train_scores, config.train.drift_bins)
        in_time = [psi(in_sample, train_scores[w]) for w in windows(len(train_scores), args.window, step)]
        later_scores = model.predict(later)
        ahead = [psi(reference, later_scores[w]) for w in windows(len(later_scores), args.window, step)]
        di = model.dissimilarity(later[list(FEATURES)])
        out[str(name)] = {
            "train": cut, "calibration": len(calibration), "later": len(later),
            "aa_iid_rate": float(np.mean(np.asarray(iid) > level)), "aa_iid_p99": float(np.quantile(iid, 0.99)),
            "aa_time_windows": len(in_time),
            "aa_time_rate": float(np.mean(np.asarray(in_time) > level)) if in_time else float("nan"),
            "aa_time_max": float(max(in_time)) if in_time else float("nan"),
            "later_windows": len(ahead), "later_rate": float(np.mean(np.asarray(ahead) > level)) if ahead else 0.0,
            "later_max": float(max(ahead)) if ahead else float("nan"),
            "later_ood_share": float(np.mean(di > di_max)), "later_di_median": float(np.median(di)),
            "later_di_p99": float(np.quantile(di[np.isfinite(di)], 0.99)),
        }
        r = out[str(name)]
        print(f"{name}: trained on {cut} entries ({len(calibration)} calibration rows), {len(later)} later; "
              f"window {args.window}: PSI > {level:g} in {r['aa_iid_rate']:.2%} of {args.runs} i.i.d. A/A windows "
              f"(p99 {r['aa_iid_p99']:.3f}), {r['aa_time_rate']:.2%} of {len(in_time)} consecutive A/A windows "
              f"(max {r['aa_time_max']:.3f}), {r['later_rate']:.2%} of {len(ahead)} later windows (max "
              f"{r['later_max']:.3f}); later entries OOD (DI > {di_max:g}) {r['later_ood_share']:.2%}, DI median "
              f"{r['later_di_median']:.2f}, p99 {r['later_di_p99']:.2f}")
    print(json.dumps({"benchmark": "ml_drift", "window": args.window, "level": level, "di_max": di_max,
                      "strategies": {k: {m: (round(v, 4) if isinstance(v, float) else v) for m, v in r.items()}
                                     for k, r in out.items()}}))


if __name__ == "__main__":
    main()
