"""The promotion gate's false-promotion rate: how often it promotes a model when there is nothing to learn.

Events are built once from the shared history (`../shared/data/ohlcv-history`, or $OHLCV_HISTORY_DIR) with
the project's strategies and costs. Then:

1. The real gate: every strategy's purged walk-forward on the real labels, the Holm family of that retrain,
   and the gate's decision (`ml.gate.decide`) with each failing figure.
2. Null runs (`--runs`, default 200), each one retrain of all strategies on outcomes that carry no
   information about the features, decided exactly as the real retrain is:
   - `shuffled`: each strategy's (label, net return) pairs permuted against its entries;
   - `shifted`: the pairs rotated in decision order by a random offset (at least a tenth of the entries),
     which keeps the outcomes' own dependence in time (overlapping labels, runs of wins) and breaks only
     their link to the features: the null the block bootstrap must survive.
   The false-promotion rate per strategy is the share of runs the gate would have promoted that strategy,
   with its Wilson 95 % interval; each figure's own firing rate is reported beside it.
3. Planted runs (`--nulls planted`, reported as power, not as false promotions): outcomes drawn from the
   entries' own rule confidence (log-odds of a win = the base rate's + 1 x its z-score, AUC about 0.75), a win
   paying the strategy's mean winning net return and a loss its mean losing one: how often the gate
   promotes a model when there is something to learn (a gate that never promotes also has no false ones).

Goal: false-promotion rate <= 1 % per strategy. Last line: one JSON object. One thread for the boosted
trees (the box is shared); a run of all three strategies takes a few seconds.

    .venv/bin/python bench/ml_gate.py [--runs 200] [--nulls shuffled,shifted]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _support import PROJECT_ROOT
from threadpoolctl import threadpool_limits

from controller.scan.strategy_params import load_strategies
from ml.config import MlConfig
from ml.events import build_events
from ml.gate import decide, with_family
from ml.train import TrainingRefused, walk_forward
from stats.rates import wilson

HISTORY = Path(os.environ.get("OHLCV_HISTORY_DIR", PROJECT_ROOT.parent / "shared" / "data" / "ohlcv-history"))
THRESHOLD = 0.6  # the ml.min_confidence flag's default
GOAL_MAX_RATE = 0.01
NULLS = ("shuffled", "shifted")
KINDS = (*NULLS, "planted")


def retrain(groups: dict[str, pd.DataFrame], config: MlConfig) -> dict[str, dict[str, Any]]:
    """strategy -> {"promoted": bool, "failing": [figures], "figures": {...}} for one retrain of `groups`."""
    results: dict[str, dict[str, Any]] = {}
    for name, group in groups.items():
        try:
            results[name] = walk_forward(group, config.train, THRESHOLD, gate=config.gate)
        except TrainingRefused as exc:
            results[name] = {"refused": str(exc)}
    with_family(results, "bench")
    out: dict[str, dict[str, Any]] = {}
    for name, metrics in results.items():
        if "refused" in metrics:
            out[name] = {"promoted": False, "failing": ["not trained"], "detail": metrics["refused"]}
            continue
        checks = decide(metrics, [], config.gate)
        g = metrics["out_of_sample"]["gate"]
        out[name] = {"promoted": all(c.passed for c in checks), "failing": [c.figure for c in checks if not c.passed],
                     "checks": {c.figure: c.passed for c in checks},
                     "figures": {"n": g["n"], "auc": g["auc"].get("auc"), "auc_low": g["auc"].get("low"),
                                 "brier_skill": g["brier_skill"], "edge_low_pct": g["edge"].get("low_pct"),
                                 "p": g["p"]},
                     "detail": "; ".join(c.detail for c in checks if not c.passed)}
    return out


def null_outcomes(group: pd.DataFrame, kind: str, rng: np.random.Generator) -> pd.DataFrame:
    """`group` (sorted by decision time) with its (label, net return) pairs carrying no information."""
    n = len(group)
    if kind == "shuffled":
        order = rng.permutation(n)
    elif kind == "shifted":
        order = np.roll(np.arange(n), int(rng.integers(max(1, n // 10), max(2, n - n // 10))))
    else:
        raise ValueError(f"unknown null {kind!r}: choose from {', '.join(NULLS)}")
    out = group.copy()
    for column in ("label", "net_return_pct"):
        out[column] = group[column].to_numpy()[order]
    return out


def planted_outcomes(group: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """`group` with outcomes that its rule confidence really predicts (see the module's docstring)."""
    y = group["label"].to_numpy()
    r = group["net_return_pct"].to_numpy()
    x = np.nan_to_num(group["rule_confidence"].to_numpy(dtype=np.float64), nan=0.0)
    z = (x - x.mean()) / (x.std() or 1.0)
    base = np.log(y.mean() / (1 - y.mean()))
    label = (rng.uniform(size=len(y)) < 1 / (1 + np.exp(-(base + z)))).astype(np.int64)
    out = group.copy()
    out["label"] = label
    out["net_return_pct"] = np.where(label == 1, r[y == 1].mean(), r[y == 0].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="null retrains per kind (at least 200 for the goal)")
    parser.add_argument("--nulls", default=",".join(NULLS), help="comma-separated: shuffled, shifted, planted")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    kinds = [k for k in args.nulls.split(",") if k]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown --nulls {sorted(unknown)}: choose from {', '.join(KINDS)}")
    config = MlConfig()
    started = time.perf_counter()
    events, candles = build_events(HISTORY, load_strategies(), config.costs)
    groups = {str(n): g.sort_values("decided_at", kind="stable").reset_index(drop=True)
              for n, g in events.groupby("strategy", sort=True)}
    print(f"{len(events)} labelled entries from {candles} candles in {HISTORY.name}: "
          + ", ".join(f"{n} {len(g)}" for n, g in groups.items()), flush=True)

    with threadpool_limits(1):
        real = retrain(groups, config)
        for name, r in real.items():
            verdict = "PROMOTED" if r["promoted"] else "refused"
            print(f"real gate  {name:8s} {verdict}: {r.get('figures', {})}" + (f" -- {r['detail']}" if r["detail"]
                                                                                  else ""), flush=True)
        rng = np.random.default_rng(args.seed)
        nulls: dict[str, Any] = {}
        for kind in kinds:
            promoted = {n: 0 for n in groups}
            fired: dict[str, dict[str, int]] = {n: {} for n in groups}
            t0 = time.perf_counter()
            for run in range(args.runs):
                decided = retrain({n: planted_outcomes(g, rng) if kind == "planted" else null_outcomes(g, kind, rng)
                                   for n, g in groups.items()}, config)
                for name, r in decided.items():
                    promoted[name] += r["promoted"]
                    for figure, ok in r.get("checks", {}).items():
                        fired[name][figure] = fired[name].get(figure, 0) + ok
                if (run + 1) % 20 == 0:
                    print(f"{kind}: {run + 1}/{args.runs} runs, promoted so far {promoted}, "
                          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            nulls[kind] = {}
            for name in groups:
                low, high = wilson(promoted[name], args.runs)
                nulls[kind][name] = {"promoted": promoted[name], "runs": args.runs,
                                     "rate": round(promoted[name] / args.runs, 4),
                                     "rate_ci95": [round(low, 4), round(high, 4)],
                                     "figure_pass_rates": {f: round(k / args.runs, 4)
                                                           for f, k in sorted(fired[name].items())}}
                what = "promotions (power)" if kind == "planted" else "false promotions"
                print(f"{kind:8s} {name:8s} {what} {promoted[name]}/{args.runs} "
                      f"({promoted[name] / args.runs:.1%}, 95 % {low:.1%}-{high:.1%}); each figure passes: "
                      + ", ".join(f"{f} {k / args.runs:.1%}" for f, k in sorted(fired[name].items())), flush=True)
    planted = nulls.pop("planted", None)
    worst = max((r["rate"] for kind in nulls.values() for r in kind.values()), default=None)
    print(json.dumps({"history": HISTORY.name, "events": {n: len(g) for n, g in groups.items()},
                      "runs_per_null": args.runs, "false_promotion": nulls, "max_false_promotion_rate": worst,
                      "planted_power": planted,
                      "goal_max_rate": GOAL_MAX_RATE, "goal_met": worst is not None and worst <= GOAL_MAX_RATE,
                      "real_gate": {n: {"promoted": r["promoted"], "failing": r["failing"], **r.get("figures", {})}
                                    for n, r in real.items()},
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
