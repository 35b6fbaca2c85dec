"""The promotion gate: the out-of-sample figures a model must show before it may act on live sizes.

Every figure is computed by `stats` (one place computes p-values and intervals) and stored with the model's
walk-forward metrics; `decide` reads only what is stored, so `ml promote` refuses with the figure that failed.
A model is promoted only when all of these hold:

1. at least `min_out_of_sample` pooled walk-forward entries;
2. the lower end of the DeLong 95 % interval of the out-of-sample AUC above 0.5;
3. Brier skill above 0 against the out-of-sample base rate (the calibrated confidence beats always saying
   the base rate, which only hindsight knows);
4. the cost-aware edge (net return per unit of capital of rules + ML sizes minus rules only, fees and
   slippage charged in the labels) with a lower bound above 0: the one-sided 95 % bound of a stationary block
   bootstrap in decision order, blocks as long as a label's overlap with later entries;
5. Holm across the strategies of one retrain, on each strategy's p = max(p of the AUC, p of the edge) (an
   intersection-union test: both must hold, so the larger p is the test's);
6. the held-back-asset check: a model trained without a quarter of the base assets, on the later half of the
   data, must not earn less per unit than the rules on those assets' entries (and must see enough of them);
7. every stored evaluation on other data (`ml evaluate --replay DIR --model VERSION`) that does not overlap
   the training window must not earn less per unit than the rules either.

`bench/ml_gate.py` measures how often this passes a model trained on outcomes shuffled against the features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.config import GateParams
from stats import auc as auc_stats
from stats import multiple, resample, scores


@dataclass(frozen=True)
class Check:
    figure: str
    passed: bool
    detail: str


def overlap_block(decided: np.ndarray, ends: np.ndarray) -> int:
    """Mean number of entries (in decision order) whose decision falls inside an entry's open label, itself
    included: the block length that keeps overlapping labels together in the bootstrap."""
    d = np.asarray(decided, dtype="datetime64[ns]").view(np.int64)
    e = np.asarray(ends, dtype="datetime64[ns]").view(np.int64)
    order = np.argsort(d, kind="stable")
    d, e = d[order], e[order]
    inside = np.searchsorted(d, e, side="left") - np.arange(len(d))
    return max(1, round(float(np.mean(np.maximum(inside, 1))))) if len(d) else 1


def figures(y: np.ndarray, p: np.ndarray, returns: np.ndarray, size: np.ndarray, decided: np.ndarray,
            ends: np.ndarray, params: GateParams, seed: int = 0) -> dict[str, Any]:
    """The gate's figures of one set of out-of-sample predictions (entries in decision order)."""
    y = np.asarray(y, dtype=np.int64)
    out: dict[str, Any] = {"n": len(y)}
    try:
        a = auc_stats.delong(y, p, params.confidence)
        out["auc"] = a.as_dict()
        p_auc = a.p_above_half.value
    except ValueError as exc:
        out["auc"] = {"unmeasurable": str(exc)}
        p_auc = 1.0
    out["brier_skill"] = round(scores.brier_skill(y, p), 4) if len(y) and 0 < y.mean() < 1 else None
    block = overlap_block(decided, ends)
    if len(y) >= 2:
        edge = resample.ratio_difference(returns, size, resamples=params.resamples, seed=seed, scheme="stationary",
                                         block=block, confidence=2 * params.confidence - 1)
        out["edge"] = {"per_unit_pct": round(edge.estimate, 4), "low_pct": round(edge.low, 4),
                       "high_pct": round(edge.high, 4), "p_above_zero": edge.p_above_zero.value,
                       "p_resolution": edge.p_above_zero.resolution, "block": block, "method": "stationary bootstrap"}
        p_edge = edge.p_above_zero.value
    else:
        out["edge"] = {"unmeasurable": f"{len(y)} entries"}
        p_edge = 1.0
    out["p"] = max(p_auc, p_edge)
    return out


def held_back_split(events: pd.DataFrame, share: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(train rows, test rows, held-back bases): a seeded `share` of the base assets held back; the test is their
    entries in the later half (by decision time); training is every other asset's entries whose label ended
    before the test began (purged by the later of the time limit and the real exit)."""
    base = events["symbol"].astype(str).str.split("-").str[0].to_numpy()
    bases = sorted(set(base))
    rng = np.random.default_rng(seed)
    k = max(1, round(len(bases) * share)) if len(bases) >= 2 else 0
    held = sorted(rng.choice(bases, size=k, replace=False).tolist()) if k else []
    decided = events["decided_at"].to_numpy(dtype="datetime64[ns]")
    ends = np.maximum(events["horizon_end"].to_numpy(dtype="datetime64[ns]"),
                      events["exit_ts"].to_numpy(dtype="datetime64[ns]") if "exit_ts" in events
                      else events["horizon_end"].to_numpy(dtype="datetime64[ns]"))
    start = np.sort(decided)[len(decided) // 2] if len(decided) else np.datetime64("NaT")
    is_held = np.isin(base, held)
    test = np.flatnonzero(is_held & (decided >= start))
    train = np.flatnonzero(~is_held & (ends < start))
    return train, test, held


def decide(metrics: dict[str, Any], evaluations: list[dict[str, Any]], params: GateParams) -> list[Check]:
    """Every gate figure of stored `metrics` (a walk-forward result) and `evaluations`, as checks."""
    gate = (metrics.get("out_of_sample") or {}).get("gate")
    if not gate:
        return [Check("gate figures", False, "no gate figures recorded with this model: train it again")]
    checks: list[Check] = []
    n = gate["n"]
    checks.append(Check("out-of-sample entries", n >= params.min_out_of_sample,
                        f"{n} out-of-sample entries (at least {params.min_out_of_sample})"))
    a = gate["auc"]
    if "low" in a:
        checks.append(Check("AUC lower bound", a["low"] > 0.5,
                            f"AUC {a['auc']:.3f}, DeLong {params.confidence:.0%} interval {a['low']:.3f}-"
                            f"{a['high']:.3f} (lower bound must exceed 0.5)"))
    else:
        checks.append(Check("AUC lower bound", False, f"AUC not measurable: {a.get('unmeasurable')}"))
    skill = gate["brier_skill"]
    checks.append(Check("Brier skill", skill is not None and skill > 0,
                        f"Brier skill {skill if skill is None else f'{skill:+.4f}'} against the base rate "
                        "(must exceed 0)"))
    e = gate["edge"]
    if "low_pct" in e:
        checks.append(Check("edge lower bound", e["low_pct"] > 0,
                            f"edge {e['per_unit_pct']:+.4f}% per unit, one-sided {params.confidence:.0%} lower bound "
                            f"{e['low_pct']:+.4f}% (stationary bootstrap, blocks of {e['block']}; must exceed 0)"))
    else:
        checks.append(Check("edge lower bound", False, f"edge not measurable: {e.get('unmeasurable')}"))
    family = metrics.get("family") or {}
    p_values = family.get("p") or {}
    name = metrics.get("strategy")
    if name in p_values:
        names = sorted(p_values)
        adjusted = dict(zip(names, multiple.holm([p_values[k] for k in names]), strict=True))
        checks.append(Check("Holm across strategies", adjusted[name] < params.family_alpha,
                            f"p {p_values[name]:.4f}, Holm-adjusted over {len(names)} strateg"
                            f"{'y' if len(names) == 1 else 'ies'} {adjusted[name]:.4f} "
                            f"(must be below {params.family_alpha:g})"))
    else:
        checks.append(Check("Holm across strategies", False, "no family of p-values recorded: train it again"))
    held = metrics.get("held_back") or {}
    if "trading" in held:
        t = held["trading"]
        ok = held["n"] >= params.min_held_back and t["ml_return_per_unit_pct"] >= t["rules_return_per_unit_pct"]
        held_auc = "-" if held["auc"] is None else f"{held['auc']:.3f}"
        checks.append(Check("held-back assets", ok,
                            f"held-back assets ({', '.join(held['assets'])}): {held['n']} entries (at least "
                            f"{params.min_held_back}), AUC {held_auc}, rules+ML {t['ml_return_per_unit_pct']:+.4f}% "
                            f"vs rules {t['rules_return_per_unit_pct']:+.4f}% per unit (must not lose)"))
    else:
        checks.append(Check("held-back assets", False, f"held-back check not run: {held.get('skipped', 'missing')}"))
    for ev in evaluations:
        if ev.get("overlaps_training_window"):
            continue
        t = (ev.get("out_of_sample") or {}).get("trading") or {}
        if not t:
            continue
        ok = t["ml_return_per_unit_pct"] >= t["rules_return_per_unit_pct"]
        checks.append(Check(f"evaluation on {ev.get('replay', 'other data')}", ok,
                            f"on {ev.get('replay', 'other data')}: rules+ML {t['ml_return_per_unit_pct']:+.4f}% vs "
                            f"rules {t['rules_return_per_unit_pct']:+.4f}% per unit (must not lose)"))
    return checks


def verdict(checks: list[Check]) -> tuple[bool, str]:
    """(passed, why): the failing figures named first, or every figure when all hold."""
    failed = [c for c in checks if not c.passed]
    if failed:
        return False, "refused: " + "; ".join(f"{c.figure}: {c.detail}" for c in failed)
    return True, "; ".join(c.detail for c in checks)


def with_family(results: dict[str, dict[str, Any]], retrain: str) -> None:
    """Record in each strategy's metrics the p-values of every strategy of this retrain (Holm reads them)."""
    family = {name: r["out_of_sample"]["gate"]["p"] for name, r in results.items()
              if "out_of_sample" in r and "gate" in r["out_of_sample"]}
    for name, result in results.items():
        if "out_of_sample" in result:
            result["strategy"] = name
            result["family"] = {"retrain": retrain, "p": family, "method": "Holm"}
