"""How often the shadow decisions fire when nothing is there, and how often they find a planted edge.

Trades come from the shared history (`../shared/data/ohlcv-history`, or $OHLCV_HISTORY_DIR): DCA's labelled
entries under CHAMPION's parameters and under the CONSERVATIVE variation's (the project's strategies, the ML
labels' costs), joined on the candidate (pair-window and decision time): per candidate the net P&L per unit
of each arm, 0 where it did not enter, and its symbol-day. Windows of `--window` consecutive candidates are
drawn at random. Measured, each with its Wilson 95 % interval:

1. A/A false recommendations: the share of windows in which the recommendation gate (the confidence tiers
   of `shadow.recommend.tier_of`, fed by the comparison under test) passes a variation that has no edge:
   - `identical`: a variation identical to CHAMPION (its trades are CHAMPION's);
   - `exchangeable`: CHAMPION and CONSERVATIVE, but in each symbol-day a coin decides which arm is called
     the variation, so neither is better in expectation while the trades keep their dependence within a
     symbol-day;
   - `size_1.5x`: CHAMPION's trades at 1.5x size: the share of windows it is called different (q < 0.05).
2. False rollbacks: a strategy that did not change. The baseline is `--baseline` consecutive real DCA trades;
   the trades after the change are drawn with replacement from the baseline (`resampled`), or are the real
   trades that followed (`following`, which also carries the market's drift). The share of runs in which
   `shadow.rollback.trigger`, asked after every trade, has fired by 5, 10 and 20 trades; and the same with
   a live shadow running (`with_shadow`: of the trade tests only the losing run).
3. Power: the exchangeable pair with +0.5 % per trade planted on the variation's trades, at several window
   sizes: how often q < 0.05, how often the gate recommends, the mean trades that took; and the trades an
   i.i.d. paired test needs for 80 % power (`stats.power.trades_needed_mean`). A decay of -1 % and of -3 % per
   trade planted after the change gives the rollback's power by 5, 10 and 20 trades.
4. The gradual revert: how often `shadow.rollback.underperforms`, judged once on a window of 20 trades,
   would move an unchanged strategy half-way back (`resampled`, `following`), and how often a planted
   decay of -1 % and -3 % a trade.
5. The live shadow: how often `shadow.rollback.against_previous` fires by 5, 10 and 20 candidates where
   the applied and the previous arm differ, with no edge either way (CHAMPION and CONSERVATIVE swapped per
   symbol-day) and with -1 % and -3 % a trade planted on the applied arm.

Goals: A/A false recommendations <= 5 %; false rollbacks of the resampled unchanged strategy <= 5 % by 20
trades. Last line: one JSON object.

    .venv/bin/python bench/shadow_stats.py [--runs 200] [--window 300] [--resamples 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from _support import PROJECT_ROOT

from stats.power import trades_needed_mean
from stats.rates import wilson

HISTORY = Path(os.environ.get("OHLCV_HISTORY_DIR", PROJECT_ROOT.parent / "shared" / "data" / "ohlcv-history"))
STRATEGY = "dca"
VARIATION = "CONSERVATIVE"
PLANTED_EDGE = 0.5
PLANTED_DECAYS = (-1.0, -3.0)
LOOKS = (5, 10, 20)
GOAL = 0.05


def candidates() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs, champion trades): per candidate both arms' per-unit P&L and entries; CHAMPION's trades in exit
    order."""
    from controller.scan.strategy_params import load_strategies
    from ml.config import MlConfig
    from ml.events import build_events
    from shadow.variations import build, load

    champion = load_strategies()
    section = next(v.section for v in build(load(), champion) if v.name == VARIATION and v.strategy == STRATEGY)
    costs = MlConfig().costs
    key = ["window", "symbol", "decided_at"]
    arms = {}
    for name, conf in (("c", champion), ("v", champion.model_copy(update={STRATEGY: section}))):
        events, _ = build_events(HISTORY, conf, costs, only=STRATEGY)
        arms[name] = events
    both = arms["c"][[*key, "net_return_pct"]].merge(arms["v"][[*key, "net_return_pct"]], on=key, how="outer",
                                                     suffixes=("_c", "_v"), indicator=True)
    pairs = pd.DataFrame({
        "decided_at": both["decided_at"], "symbol": both["symbol"],
        "c": both["net_return_pct_c"].fillna(0.0), "v": both["net_return_pct_v"].fillna(0.0),
        "ce": both["_merge"].isin(["both", "left_only"]), "ve": both["_merge"].isin(["both", "right_only"])})
    pairs = pairs.sort_values("decided_at", kind="stable").reset_index(drop=True)
    trades = arms["c"].sort_values("exit_ts", kind="stable").reset_index(drop=True)
    return pairs, trades


def _rate(hits: int, runs: int) -> dict[str, Any]:
    low, high = wilson(hits, runs)
    return {"rate": hits / runs, "hits": hits, "runs": runs, "low": low, "high": high}


Compare = Callable[..., Any]


def recommendation_rates(pairs: pd.DataFrame, compare: Compare, *, runs: int, window: int, resamples: int,
                         seed: int, planted: float = 0.0, kinds: tuple[str, ...] = ("identical", "exchangeable",
                                                                                    "size_1.5x")) -> dict[str, Any]:
    """Per null (or the planted edge): share of windows recommended, share with q < 0.05, mean trades."""
    from shadow.recommend import Evidence, tier_of
    from shadow.settings import RecommendConfig
    from shadow.stats import summarize

    config = RecommendConfig()
    rng = np.random.default_rng(seed)
    cluster_all = (pairs["symbol"] + "|" + pairs["decided_at"].dt.strftime("%Y-%m-%d")).to_numpy()
    out: dict[str, Any] = {}

    for kind in kinds:
        recommended = significant = 0
        trades = []
        for _ in range(runs):
            start = int(rng.integers(0, max(1, len(pairs) - window)))
            w = pairs.iloc[start:start + window]
            clusters = cluster_all[start:start + window]
            c, ce = w["c"].to_numpy(), w["ce"].to_numpy()
            ones = np.ones(len(w))
            if kind == "identical":
                v, ve, vs = c.copy(), ce.copy(), ones
            elif kind == "size_1.5x":
                v, ve, vs = c.copy(), ce.copy(), ones * 1.5
            else:  # exchangeable arms, swapped per symbol-day
                v, ve, vs = w["v"].to_numpy().copy(), w["ve"].to_numpy().copy(), ones
                _, which = np.unique(clusters, return_inverse=True)
                flip = (rng.random(which.max() + 1) < 0.5)[which]
                v, c = np.where(flip, c, v), np.where(flip, v, c)
                ve, ce = np.where(flip, ce, ve), np.where(flip, ve, ce)
                v = v + np.where(ve, planted, 0.0)
            pair = compare(v, c, ve, ce, vs, ones, clusters=clusters, samples=resamples,
                           seed=int(rng.integers(1 << 31)))
            trades.append(int(ve.sum()))
            if pair is None:  # a no-op: not tested, never recommended
                continue
            q = pair.p_value  # a family of one: the most lenient Benjamini-Hochberg can be
            significant += q < 0.05
            times = w["decided_at"]
            days = (times.max() - times.min()).total_seconds() / 86400
            evidence = Evidence(VARIATION, summarize(v[ve] * vs[ve]), summarize(c[ce]), pair, q, days)
            tier, _ = tier_of(evidence, config)
            recommended += tier is not None
        out[kind] = {"recommended": _rate(recommended, runs), "q_below_0.05": _rate(significant, runs),
                     "mean_trades": float(np.mean(trades))}
    return out


def rollback_rates(trades: pd.DataFrame, rollback: SimpleNamespace, *, runs: int, baseline: int, seed: int,
                   decay: float = 0.0, with_shadow: bool = False) -> dict[str, Any]:
    """Share of runs in which the trigger has fired by each look, after `resampled` and `following` trades."""
    rng = np.random.default_rng(seed)
    pnl = trades["net_return_pct"].to_numpy()
    reasons = trades["exit_reason"].to_numpy()
    applied = datetime(2026, 1, 1, tzinfo=UTC)
    config = rollback.RollbackConfig()
    out: dict[str, Any] = {}
    for kind in ("resampled", "following"):
        fired = dict.fromkeys(LOOKS, 0)
        for _ in range(runs):
            start = int(rng.integers(0, len(pnl) - baseline - max(LOOKS)))
            before = [rollback.LiveTrade(applied - timedelta(hours=baseline - i), str(reasons[start + i]),
                                         float(pnl[start + i])) for i in range(baseline)]
            if kind == "resampled":
                pick = start + rng.integers(0, baseline, size=max(LOOKS))
            else:
                pick = start + baseline + np.arange(max(LOOKS))
            after = [rollback.LiveTrade(applied + timedelta(minutes=10 * (i + 1)), str(reasons[j]),
                                        float(pnl[j]) + decay) for i, j in enumerate(pick)]
            base = rollback.baseline_of(before)
            first = None
            for k in range(1, max(LOOKS) + 1):
                if rollback.trigger(applied, applied + timedelta(minutes=10 * k), base, after[:k], config,
                                    with_shadow=with_shadow):
                    first = k
                    break
            for look in LOOKS:
                fired[look] += first is not None and first <= look
        out[kind] = {f"by_{look}": _rate(fired[look], runs) for look in LOOKS}
    return out


def gradual_rates(trades: pd.DataFrame, rollback: SimpleNamespace, *, runs: int, baseline: int, seed: int,
                  window_trades: int = max(LOOKS),
                  decays: tuple[float, ...] = (0.0, *PLANTED_DECAYS)) -> dict[str, Any]:
    """Share of runs in which the gradual trigger (`shadow.rollback.underperforms`, judged once on the
    `window_trades` trades of a monitoring window) would move the change half-way back, per planted decay,
    after `resampled` and `following` trades (decay 0: a strategy that did not change)."""
    rng = np.random.default_rng(seed)
    pnl = trades["net_return_pct"].to_numpy()
    reasons = trades["exit_reason"].to_numpy()
    applied = datetime(2026, 1, 1, tzinfo=UTC)
    config = rollback.RollbackConfig()
    out: dict[str, Any] = {}
    for kind in ("resampled", "following"):
        for decay in decays:
            if kind == "following" and decay:
                continue
            fired = 0
            for _ in range(runs):
                start = int(rng.integers(0, len(pnl) - baseline - window_trades))
                before = [rollback.LiveTrade(applied - timedelta(hours=baseline - i), str(reasons[start + i]),
                                             float(pnl[start + i])) for i in range(baseline)]
                pick = (start + rng.integers(0, baseline, size=window_trades) if kind == "resampled"
                        else start + baseline + np.arange(window_trades))
                after = [rollback.LiveTrade(applied + timedelta(minutes=10 * (i + 1)), str(reasons[j]),
                                            float(pnl[j]) + decay) for i, j in enumerate(pick)]
                fired += rollback.underperforms(rollback.baseline_of(before), after, config) is not None
            out[f"{kind} {decay:+.1f}"] = _rate(fired, runs)
    return out


def shadow_rates(pairs: pd.DataFrame, rollback: SimpleNamespace, *, runs: int, seed: int,
                 decays: tuple[float, ...] = (0.0, *PLANTED_DECAYS), horizon: int = 200) -> dict[str, Any]:
    """The live-shadow trigger (`shadow.rollback.against_previous`), asked after every candidate where the
    applied and the previous arm differ: the share of runs in which it has fired by 5, 10 and 20 such
    candidates. The arms are CHAMPION and CONSERVATIVE swapped per symbol-day by a coin (no edge either way,
    the dependence within a symbol-day kept), consecutive candidates from a random start; a planted decay
    is taken off the applied arm's trades."""
    rng = np.random.default_rng(seed)
    cluster_all = (pairs["symbol"] + "|" + pairs["decided_at"].dt.strftime("%Y-%m-%d")).to_numpy()
    config = rollback.RollbackConfig()
    out: dict[str, Any] = {}
    for decay in decays:
        fired = dict.fromkeys(LOOKS, 0)
        for _ in range(runs):
            start = int(rng.integers(0, len(pairs) - horizon))
            w = pairs.iloc[start:start + horizon]
            _, which = np.unique(cluster_all[start:start + horizon], return_inverse=True)
            flip = (rng.random(which.max() + 1) < 0.5)[which]
            v, c = w["v"].to_numpy(), w["c"].to_numpy()
            applied, previous = np.where(flip, c, v), np.where(flip, v, c)
            entered = np.where(flip, w["ce"].to_numpy(), w["ve"].to_numpy())
            applied = applied + np.where(entered, decay, 0.0)
            differ = applied != previous
            better = (applied > previous)[differ][:max(LOOKS)]
            first = next((k for k in range(1, len(better) + 1)
                          if rollback.against_previous(better[:k], config) is not None), None)
            for look in LOOKS:
                fired[look] += first is not None and first <= look
        out[f"{decay:+.1f}"] = {f"by_{look}": _rate(fired[look], runs) for look in LOOKS}
    return out


def current() -> tuple[Compare, SimpleNamespace]:
    """The comparison and the rollback monitor of the code in this tree."""
    from shadow import rollback
    from shadow.settings import RollbackConfig
    from shadow.stats import compare

    return compare, SimpleNamespace(trigger=rollback.trigger, baseline_of=rollback.baseline_of,
                                    LiveTrade=rollback.LiveTrade, RollbackConfig=RollbackConfig,
                                    underperforms=rollback.underperforms,
                                    against_previous=rollback.against_previous)


def run(args: argparse.Namespace, compare: Compare, rollback: SimpleNamespace) -> dict[str, Any]:
    started = time.perf_counter()
    pairs, trades = candidates()
    print(f"{len(pairs)} DCA candidates ({int(pairs['ce'].sum())} CHAMPION entries, {int(pairs['ve'].sum())} "
          f"{VARIATION}), {len(trades)} CHAMPION trades; built in {time.perf_counter() - started:.0f} s", flush=True)
    result: dict[str, Any] = {"strategy": STRATEGY, "variation": VARIATION, "window": args.window,
                              "runs": args.runs, "resamples": args.resamples}
    result["aa"] = recommendation_rates(pairs, compare, runs=args.runs, window=args.window,
                                        resamples=args.resamples, seed=1)
    for kind, figures in result["aa"].items():
        print(f"A/A {kind:12s} recommended {figures['recommended']['rate']:6.1%} "
              f"(95 % {figures['recommended']['low']:.1%}-{figures['recommended']['high']:.1%}); "
              f"q < 0.05 {figures['q_below_0.05']['rate']:6.1%}; {figures['mean_trades']:.0f} trades", flush=True)
    result["rollback"] = rollback_rates(trades, rollback, runs=args.runs, baseline=args.baseline, seed=2)
    for kind, figures in result["rollback"].items():
        print(f"rollback {kind:10s} " + ", ".join(f"by {look}: {figures[f'by_{look}']['rate']:.1%}"
                                                 for look in LOOKS), flush=True)
    result["rollback_with_shadow"] = rollback_rates(trades, rollback, runs=args.runs, baseline=args.baseline,
                                                    seed=2, with_shadow=True)
    for kind, figures in result["rollback_with_shadow"].items():
        print(f"rollback {kind:10s} with a live shadow (trade tests: the losing run only) " + ", ".join(
            f"by {look}: {figures[f'by_{look}']['rate']:.1%}" for look in LOOKS), flush=True)
    result["rollback_decay"] = {}
    for decay in PLANTED_DECAYS:
        figures = rollback_rates(trades, rollback, runs=args.runs, baseline=args.baseline, seed=3,
                                 decay=decay)["resampled"]
        result["rollback_decay"][f"{decay:+.1f}"] = figures
        print(f"rollback power, {decay:+.1f} % a trade after the change: "
              + ", ".join(f"by {look}: {figures[f'by_{look}']['rate']:.1%}" for look in LOOKS), flush=True)
    result["gradual"] = gradual_rates(trades, rollback, runs=args.runs, baseline=args.baseline, seed=5)
    print("half-way revert after a window of 20 trades: " + ", ".join(
        f"{kind} {figures['rate']:.1%}" for kind, figures in result["gradual"].items()), flush=True)
    result["shadow"] = shadow_rates(pairs, rollback, runs=args.runs, seed=6)
    for decay, figures in result["shadow"].items():
        print(f"live shadow, applied arm {decay} % a trade: " + ", ".join(
            f"by {look}: {figures[f'by_{look}']['rate']:.1%}" for look in LOOKS), flush=True)
    diff = pairs["v"].to_numpy() - pairs["c"].to_numpy()
    result["power"] = {"edge_pct": PLANTED_EDGE, "iid_trades_needed_80pct": trades_needed_mean(
        float(diff.std(ddof=1)), PLANTED_EDGE), "by_window": {}}
    for window in args.power_windows:
        figures = recommendation_rates(pairs, compare, runs=max(20, args.runs // 2), window=window,
                                       resamples=args.resamples, seed=4, planted=PLANTED_EDGE,
                                       kinds=("exchangeable",))["exchangeable"]
        result["power"]["by_window"][str(window)] = figures
        print(f"power +{PLANTED_EDGE} %/trade, {window} candidates ({figures['mean_trades']:.0f} trades): "
              f"q < 0.05 {figures['q_below_0.05']['rate']:.1%}, recommended {figures['recommended']['rate']:.1%}",
              flush=True)
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--window", type=int, default=300, help="candidates per A/A window")
    parser.add_argument("--baseline", type=int, default=74, help="real trades before the change")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--power-windows", type=int, nargs="+", default=[300, 1000, 3000])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if not HISTORY.is_dir():
        print(f"no history at {HISTORY}: set OHLCV_HISTORY_DIR", file=sys.stderr)
        return 2
    compare, rollback = current()
    result = run(args, compare, rollback)
    goals = {"aa_at_most_5pct": all(f["recommended"]["rate"] <= GOAL for f in result["aa"].values()),
             "rollback_by_20_at_most_5pct": result["rollback"]["resampled"]["by_20"]["rate"] <= GOAL,
             "shadow_rollback_by_20_at_most_5pct": result["shadow"]["+0.0"]["by_20"]["rate"] <= GOAL}
    print(json.dumps({**result, "goals": goals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
