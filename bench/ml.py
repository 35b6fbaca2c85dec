"""ML benchmark: batch scoring, event building, training time.

1. Scoring 200 candidates: one `score` (predict plus the dissimilarity index) over a 200-row feature frame,
   and its two parts alone, interleaved with it, p50/p95
   over many runs, against one `predict` call per candidate in the same run (goal: batch p95 <= 10 ms), and against
   scikit-learn's own `predict_proba` on the same batch (the path before the compiled tree walk).
2. Event building over the shared history (`../shared/data/ohlcv-history`, or $OHLCV_HISTORY_DIR): indicators
   once per series, each strategy's rule over all rows, features, and labels through `bridge.exits.walk`, in
   candles per second (median of 3 runs; the first run reported too; goal >= 200k/s), against the scan loop
   (`Scanner.scan` on a real Postgres, replaying one pair-window of the same data step by step) in the same run.
3. Training time per 10k events (walk-forward excluded: one calibrated fit).

Last line: one JSON object with `batch_200_p95_ms`, `speedup` and `event_candles_per_s` among the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from _support import PROJECT_ROOT, migrated_database, postgres_server
from threadpoolctl import threadpool_limits

from controller.config import ControllerConfig
from controller.config_base import load_model
from controller.data import flags
from controller.data.market_data import ReplaySource, SimClock, timeframe_seconds
from controller.data.storage.postgres import PostgresStore
from controller.scan.pipeline import Scanner
from controller.scan.strategy_params import load_strategies
from ml.config import CostParams, TrainParams
from ml.events import build_events, evaluate, load_candles, load_many, recordings, series_for_strategy, stack
from ml.features import FEATURES, build, regime_series
from ml.train import fit

HISTORY = Path(os.environ.get("OHLCV_HISTORY_DIR", PROJECT_ROOT.parent / "shared" / "data" / "ohlcv-history"))
BATCH = 200
BATCH_RUNS = 200
SINGLE_RUNS = 5
LOOP_STEPS = 60
EVENT_RUNS = 3
GOAL_BATCH_MS = 10.0
GOAL_CANDLES_PER_S = 200_000


def synthetic(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=list(FEATURES))
    label = (rng.uniform(size=n) < 1 / (1 + np.exp(-2 * frame["rule_confidence"]))).astype(np.int64)
    decided = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) * 5, unit="min")
    return frame.assign(label=label, decided_at=decided, horizon_end=decided + pd.Timedelta(hours=6),
                        net_return_pct=np.where(label == 1, 2.0, -2.0))


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_scoring() -> dict[str, float]:
    model = fit(synthetic(5000), TrainParams(min_events=100))
    candidates = synthetic(BATCH, seed=1)[list(FEATURES)]  # what the scan passes: `ml.features.build`'s frame
    start = time.perf_counter()
    model.predict(candidates.iloc[:1])  # the first call compiles the tree walk (numba): once per process
    compile_s = time.perf_counter() - start
    model.dissimilarity(candidates)  # the nearest-neighbour kernel's compile, likewise
    # interleaved, so that the machine's load falls on the three alike: the whole score, and its two parts
    batch, walk, novelty = [], [], []
    raw = model.raw(candidates)
    for _ in range(BATCH_RUNS):
        start = time.perf_counter()
        model.score(candidates)  # predict + dissimilarity, as `ml.scoring` calls it
        batch.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.forest.predict(model.matrix(raw))
        walk.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.novelty.index(raw)
        novelty.append(time.perf_counter() - start)
    # the previous path in the same run: scikit-learn's own predict_proba on the batch (one OpenMP thread)
    sklearn_batch = []
    matrix = model.matrix(candidates)
    with threadpool_limits(1, user_api="openmp"):
        for _ in range(BATCH_RUNS // 4):
            start = time.perf_counter()
            model.classifier.predict_proba(matrix)
            model.dissimilarity(candidates)
            sklearn_batch.append(time.perf_counter() - start)
    single = []
    rows = [candidates.iloc[[i]] for i in range(BATCH)]
    for _ in range(SINGLE_RUNS):
        start = time.perf_counter()
        for row in rows:
            model.predict(row)
        single.append(time.perf_counter() - start)
    return {"batch_200_p50_ms": percentile(batch, 50) * 1000, "batch_200_p95_ms": percentile(batch, 95) * 1000,
            "walk_200_p50_ms": percentile(walk, 50) * 1000, "walk_200_p95_ms": percentile(walk, 95) * 1000,
            "novelty_200_p50_ms": percentile(novelty, 50) * 1000,
            "novelty_200_p95_ms": percentile(novelty, 95) * 1000,
            "novelty_reference": int(model.novelty.reference.shape[1]),
            "sklearn_batch_200_p50_ms": percentile(sklearn_batch, 50) * 1000,
            "sklearn_batch_200_p95_ms": percentile(sklearn_batch, 95) * 1000,
            "vs_sklearn_p50": percentile(sklearn_batch, 50) / percentile(batch, 50),
            "one_by_one_200_p50_ms": percentile(single, 50) * 1000,
            "speedup": percentile(single, 50) / percentile(batch, 50), "tree_walk_compile_s": compile_s}


def bench_events() -> tuple[dict[str, float], str]:
    config = load_strategies()
    runs = []
    for _ in range(EVENT_RUNS):  # the first run also pays the process's first calls (imports, allocations)
        start = time.perf_counter()
        events, candles = build_events(HISTORY, config, CostParams())
        runs.append(time.perf_counter() - start)
    elapsed = float(np.median(runs))
    # the same series without labels (indicators, rules, features), to show where the time goes
    found = recordings(HISTORY)
    series = list(zip(found, load_many([r.path for r in found]), strict=True))
    start = time.perf_counter()
    for name, section in config.items():
        tf_s = timeframe_seconds(section.timeframe)
        prepared = list(series_for_strategy(series, section))
        evaluated = evaluate(name, section, stack(prepared))
        decided = evaluated["ts"] + pd.Timedelta(seconds=tf_s)
        build(name, evaluated, section.params, regime_series(pd.DataFrame(), decided), tf_s)
    unlabelled = time.perf_counter() - start
    return {"event_candles": candles, "events": len(events), "event_seconds": elapsed,
            "event_candles_per_s": candles / elapsed, "event_first_run_candles_per_s": candles / runs[0],
            "features_only_candles_per_s": candles / unlabelled}, str(len(found))


def bench_loop(admin_url: str) -> dict[str, float]:
    """The scan loop on one pair-window of the history: one 5m step at a time, one new candle per step."""
    recording = next(r for r in recordings(HISTORY) if r.timeframe == "5m" and r.symbol == "ETH-BTC")
    folder = Path(tempfile.mkdtemp(prefix="bench-ml-loop-"))
    try:
        shutil.copy(recording.path, folder / f"{recording.exchange}_{recording.symbol}_5m.csv")
        candles = load_candles(recording.path)
        with migrated_database(admin_url) as url:
            specs = load_model(flags.FlagsFile, PROJECT_ROOT / "conf" / "flags.yml")
            with psycopg.connect(url) as conn:
                flags.sync(conn, specs, "bench")
            store = PostgresStore(url)
            clock = SimClock(candles["ts"].iloc[400].to_pydatetime())
            scanner = Scanner(config=ControllerConfig(), strategy_config=load_strategies(), store=store,
                              source=ReplaySource(folder, recording.exchange, clock=clock),
                              exchange=recording.exchange, symbols=(recording.symbol,), clock=clock.now,
                              flag_defaults={n: s.default for n, s in specs.flags.items()})
            scanner.scan()  # first scan stores the lookback
            start = time.perf_counter()
            for _ in range(LOOP_STEPS):
                clock.advance(timedelta(minutes=5).total_seconds())
                scanner.scan()
            elapsed = time.perf_counter() - start
            store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"loop_ms_per_step": elapsed / LOOP_STEPS * 1000, "loop_candles_per_s": LOOP_STEPS / elapsed}


def bench_training() -> dict[str, float]:
    events = synthetic(10_000, seed=2)
    start = time.perf_counter()
    fit(events, TrainParams())
    return {"train_s_per_10k_events": time.perf_counter() - start}


def main() -> None:
    scoring = bench_scoring()
    events, files = bench_events()
    with postgres_server() as admin:
        loop = bench_loop(admin)
    training = bench_training()
    ratio = events["event_candles_per_s"] / loop["loop_candles_per_s"]
    print(f"scoring {BATCH} candidates: batch p50 {scoring['batch_200_p50_ms']:.2f} ms, p95 "
          f"{scoring['batch_200_p95_ms']:.2f} ms (goal <= {GOAL_BATCH_MS:g} ms; of it the tree walk p50 "
          f"{scoring['walk_200_p50_ms']:.2f} / p95 {scoring['walk_200_p95_ms']:.2f} ms, the dissimilarity index over "
          f"{scoring['novelty_reference']} reference rows p50 {scoring['novelty_200_p50_ms']:.2f} / p95 "
          f"{scoring['novelty_200_p95_ms']:.2f} ms); one predict per candidate "
          f"{scoring['one_by_one_200_p50_ms']:.1f} ms: {scoring['speedup']:.0f}x; scikit-learn's predict_proba on "
          f"the same batch p50 {scoring['sklearn_batch_200_p50_ms']:.2f} ms, p95 "
          f"{scoring['sklearn_batch_200_p95_ms']:.2f} ms ({scoring['vs_sklearn_p50']:.1f}x); compiling the walk "
          f"{scoring['tree_walk_compile_s']:.1f} s once (numba: compiled, or loaded from its disk cache; the "
          f"scorer does it in a warm-up thread)")
    print(f"events over {files} files of {HISTORY.name}: {events['event_candles']:,} candles evaluated, "
          f"{events['events']:,} labelled entries in {events['event_seconds']:.1f} s (median of {EVENT_RUNS} runs) = "
          f"{events['event_candles_per_s']:,.0f} candles/s (first run "
          f"{events['event_first_run_candles_per_s']:,.0f}/s; "
          f"goal >= {GOAL_CANDLES_PER_S:,}; indicators, rules and "
          f"features alone, files already read: {events['features_only_candles_per_s']:,.0f}/s); the scan loop: "
          f"{loop['loop_ms_per_step']:.1f} ms per step on one pair = {loop['loop_candles_per_s']:.1f} candles/s "
          f"({ratio:,.0f}x)")
    print(f"training: {training['train_s_per_10k_events']:.2f} s per 10k events (one calibrated fit)")
    print(json.dumps({
        "benchmark": "ml",
        **{k: round(v, 3) for k, v in {**scoring, **events, **loop, **training}.items()},
        "events_vs_loop": round(ratio, 1),
        "batch_goal_met": scoring["batch_200_p95_ms"] <= GOAL_BATCH_MS,
        "event_goal_met": events["event_candles_per_s"] >= GOAL_CANDLES_PER_S,
    }))


if __name__ == "__main__":
    main()
