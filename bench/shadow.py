"""Shadow replay benchmark: candle-variations per second at K = 1, 8, 64 over the same entries.

Entries: 2000 entry points spread over the recorded 1m files (ETH-BTC, LTC-BTC), each followed by a 24 h
horizon of 1440 one-minute candles. Variations: a grid of take profit x stop loss x trailing distance
(K = 64: 4 x 4 x 4; K = 8: 2 x 2 x 2; K = 1: the first), time limit 24 h, trailing armed at +1 %.
A candle-variation is one candle of one entry's horizon under one variation: K x N x H per run.

Ours: `shadow.replay.replay` (NumPy, all pairs at once), which walks each candle's market path (four
points: open, the extreme nearer the open, the other extreme, close); a candle-variation still counts one
candle. Baselines in the same run: a per-trade Python loop calling `bridge.exits.walk_candles` for each
(variation, entry) pair, the same rule (it stops at each exit, so it reads fewer candles than K x N x H; its
rate is still counted in K x N x H per second, the same work done: every pair's outcome), checked equal
before timing counts; and the per-candle walk this replaced (high, low, close read at once, the peak raised
to the high before the trailing stop), vectorised the same way, timed at K = 64 for the ratio.
Goals: >= 100 M candle-variations/s at K = 64, and K = 64 costing less than 8 x K = 1.
Last line: one JSON object with `candle_variations_per_s_k64`, `k64_over_k1_cost` and
`path_over_per_candle_cost`.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass

import numpy as np
from _support import OHLCV_DIR

from bridge import exits, path
from bridge.exit_replay import NO_HIT, first_at_or_above, suffix_first
from shadow.replay import PENDING, BarrierGrid, Paths, replay

ENTRIES = 2000
HORIZON = 1440
RUNS = 3
BASELINE_PAIRS = 400  # the Python loop is slow: timed on a subset, scaled per pair


@dataclass(frozen=True)
class B:
    take_profit_pct: float
    stop_loss_pct: float
    time_limit_s: float
    trailing_activation_pct: float
    trailing_delta_pct: float


def entries() -> Paths:
    import pandas as pd

    frames = [pd.read_csv(p) for p in sorted(OHLCV_DIR.glob("*_1m.csv"))]
    rng = np.random.default_rng(4)
    e, et, ts, op, hi, lo, cl = [], [], [], [], [], [], []
    for n in range(ENTRIES):
        frame = frames[n % len(frames)]
        start = int(rng.integers(0, len(frame) - HORIZON - 1))
        window = frame.iloc[start + 1:start + 1 + HORIZON]
        e.append(float(frame["close"].iloc[start]))
        et.append(frame["timestamp"].iloc[start] / 1000 + 60)
        ts.append(window["timestamp"].to_numpy() / 1000)
        op.append(window["open"].to_numpy(dtype=np.float64))
        hi.append(window["high"].to_numpy(dtype=np.float64))
        lo.append(window["low"].to_numpy(dtype=np.float64))
        cl.append(window["close"].to_numpy(dtype=np.float64))
    return Paths.from_lists(e, et, ts, op, hi, lo, cl, [60.0] * ENTRIES)


def variations(k: int) -> list[B]:
    side = {1: 1, 8: 2, 64: 4}[k]
    tps, sls, deltas = [1.5, 3.0, 5.0, 8.0][:side], [2.0, 4.0, 8.0, 15.0][:side], [0.5, 1.0, 2.0, 3.0][:side]
    return [B(tp, sl, 86400, 1.0, d) for tp, sl, d in itertools.product(tps, sls, deltas)][:k]


def grid(vs: list[B], n: int) -> BarrierGrid:
    def col(name: str) -> np.ndarray:
        return np.repeat(np.array([[getattr(v, name)] for v in vs], dtype=np.float64), n, axis=1)
    return BarrierGrid(col("take_profit_pct"), col("stop_loss_pct"), col("time_limit_s"),
                       col("trailing_activation_pct"), col("trailing_delta_pct"))


def best(fn, runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def per_candle_replay(paths: Paths, g: BarrierGrid) -> np.ndarray:
    """The replaced per-candle rule's first-exit search (stop on the running low, take profit on the running
    high, trailing on the peak raised to each candle's high): the cost baseline, not a result anyone uses."""
    entry = paths.entry
    e = entry[None, :]
    peak = np.maximum.accumulate(np.maximum(paths.highs, entry[:, None]), axis=1)
    run_low = np.minimum.accumulate(paths.lows, axis=1)
    run_high = np.maximum.accumulate(paths.highs, axis=1)
    sl = first_at_or_above(-run_low, -(e * (100 - g.stop_loss_pct) / 100))
    tp = first_at_or_above(run_high, e * (100 + g.take_profit_pct) / 100)
    act = first_at_or_above(peak, e * (100 + g.trailing_activation_pct) / 100)
    tr = np.full(sl.shape, NO_HIT, dtype=np.int64)
    for d in np.unique(g.trailing_delta_pct):
        following = suffix_first(paths.lows <= peak * (100 - d) / 100)
        rows, cols = np.nonzero((g.trailing_delta_pct == d) & (act != NO_HIT))
        tr[rows, cols] = following[cols, act[rows, cols]]
    return np.minimum(np.minimum(sl, tp), tr)


def main() -> None:
    paths = entries()
    n, h = paths.highs.shape
    figures: dict[str, float] = {}
    seconds: dict[int, float] = {}
    for k in (1, 8, 64):
        vs = variations(k)
        g = grid(vs, n)
        result = replay(paths, g)
        seconds[k] = best(lambda g=g: replay(paths, g))
        rate = k * n * h / seconds[k]
        figures[f"candle_variations_per_s_k{k}"] = rate
        print(f"K = {k:2d}: {seconds[k] * 1000:8.1f} ms for {k * n * h / 1e6:7.1f} M candle-variations "
              f"= {rate / 1e6:7.1f} M/s")
        if k == 8:  # the baseline: the per-trade loop on a subset of the same pairs, checked equal
            pairs = [(kk, nn) for kk in range(k) for nn in range(BASELINE_PAIRS // k)]
            # Python lists prepared outside the timing: the loop pays for the rule, not for conversions
            lists = {nn: path.market_path([path.Candle(*row) for row in zip(
                paths.times_s[nn].tolist(), [60.0] * h, paths.opens[nn].tolist(), paths.highs[nn].tolist(),
                paths.lows[nn].tolist(), paths.closes[nn].tolist(), strict=True)]) for _, nn in pairs}

            def loop(pairs: list[tuple[int, int]] = pairs, vs: list[B] = vs,
                     lists: dict[int, path.MarketPath] = lists) -> list[exits.Outcome]:
                return [exits.walk(vs[kk], float(paths.entry[nn]), float(paths.entry_time_s[nn]), lists[nn].points,
                                   lists[nn].candle) for kk, nn in pairs]
            outcomes = loop()
            for (kk, nn), outcome in zip(pairs, outcomes, strict=True):
                got = None if result.reason[kk, nn] == PENDING else exits.REASONS[result.reason[kk, nn]]
                assert got == (outcome.hit.reason if outcome.hit else None), (kk, nn)
                assert outcome.candle is None or result.index[kk, nn] == outcome.candle, (kk, nn)
                if outcome.hit:
                    assert result.exit_price[kk, nn] == outcome.hit.price, (kk, nn)
            loop_s = best(loop, 1)
            figures["baseline_loop_candle_variations_per_s"] = len(pairs) * h / loop_s
            print(f"baseline per-trade loop (exits.walk_candles): {len(pairs)} pairs in {loop_s * 1000:.1f} ms "
                  f"= {len(pairs) * h / loop_s / 1e6:.2f} M/s")
    g64 = grid(variations(64), n)
    per_candle_s = best(lambda: per_candle_replay(paths, g64))
    figures["path_over_per_candle_cost"] = seconds[64] / per_candle_s
    print(f"K = 64 per-candle walk (replaced): {per_candle_s * 1000:8.1f} ms; the path walk costs "
          f"{figures['path_over_per_candle_cost']:.2f} x it")
    figures["k64_over_k1_cost"] = seconds[64] / seconds[1]
    figures["k64_vs_loop_speedup"] = figures["candle_variations_per_s_k64"] / figures[
        "baseline_loop_candle_variations_per_s"]
    figures["goal_met"] = float(figures["candle_variations_per_s_k64"] >= 100e6 and figures["k64_over_k1_cost"] < 8)
    print(f"K = 64 costs {figures['k64_over_k1_cost']:.2f} x K = 1 (goal < 8); "
          f"{figures['k64_vs_loop_speedup']:.0f} x the per-trade loop")
    print(json.dumps({key: round(value, 3) for key, value in figures.items()}))


if __name__ == "__main__":
    main()
