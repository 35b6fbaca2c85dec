"""Scan benchmark: indicators + DCA / SWING / CHANNEL over 200 symbols x 1000 one-minute candles.

Ours: `controller.scan.indicators.compute` (TA-Lib on each symbol's NumPy slice, one group-by for VWAP) and
the vectorised strategy functions. Baseline, in the same run: the same indicators computed the way a
freqtrade strategy does, with pandas-ta one symbol at a time (`df.ta.rsi()`, `df.ta.macd()`, ...), then
the same strategy functions. Both compute every indicator set the shipped strategies need (CHANNEL's
Bollinger bands are 30 bars, the others' 20), and the two indicator frames are checked equal (1e-9).

Candles: slices of the recorded files (1m and 5m) under 200 symbol names (every tiered asset of
conf/tiers.yml, the rest unlisted), re-stamped as 1000 consecutive minutes that cross a UTC midnight.
Target: ours at least 5x faster. Last line of output: one JSON object with every figure.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pandas_ta as ta
from _support import OHLCV_DIR, recorded_candles

from controller.scan.indicators import INDICATOR_COLUMNS, compute
from controller.scan.strategies import STRATEGIES
from controller.scan.strategy_params import IndicatorParams, StrategiesConfig, load_strategies, load_tiers

SYMBOLS = 200
CANDLES = 1000
OURS_RUNS = 7
BASELINE_RUNS = 3
TARGET = 5.0
START = pd.Timestamp("2024-01-01 20:00", tz="UTC")


def candle_frame() -> pd.DataFrame:
    sources = [recorded_candles(path, "x", "x", "x") for path in sorted(OHLCV_DIR.glob("*.csv"))]
    tiers = load_tiers()
    bases = [asset for assets in tiers.tiers.values() for asset in assets]
    bases += [f"UNL{i:03d}" for i in range(SYMBOLS - len(bases))]
    minutes = pd.date_range(START, periods=CANDLES, freq="1min")
    frames = []
    for i, base in enumerate(bases[:SYMBOLS]):
        source = sources[i % len(sources)]
        offset = (i // len(sources)) * 397 % (len(source) - CANDLES)
        rows = source.iloc[offset:offset + CANDLES]
        frames.append(pd.DataFrame({
            "symbol": f"{base}-USDT", "ts": minutes,
            **{c: rows[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low", "close", "volume")},
        }))
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "ts"], ignore_index=True)


def pandas_ta_indicators(candles: pd.DataFrame, p: IndicatorParams) -> pd.DataFrame:
    """The indicators of `compute`, the freqtrade way: pandas-ta calls on one symbol's frame at a time."""
    parts = []
    for _symbol, rows in candles.groupby("symbol", sort=False):
        df = rows.set_index("ts")
        macd = df.ta.macd(fast=p.macd_fast, slow=p.macd_slow, signal=p.macd_signal)
        bands = df.ta.bbands(length=p.bb_length, lower_std=p.bb_std, upper_std=p.bb_std)
        columns = {
            "rsi": df.ta.rsi(length=p.rsi_length), "macd": macd.iloc[:, 0], "macd_signal": macd.iloc[:, 2],
            "macd_hist": macd.iloc[:, 1], "bb_lower": bands.iloc[:, 0], "bb_mid": bands.iloc[:, 1],
            "bb_upper": bands.iloc[:, 2], "bb_width": bands.iloc[:, 3] / 100,
            "atr": df.ta.atr(length=p.atr_length), "adx": df.ta.adx(length=p.adx_length).iloc[:, 0],
            "roc": df.ta.roc(length=p.roc_length), "obv": df.ta.obv(), "vwap": df.ta.vwap(anchor=p.vwap_anchor),
            "sma_20": df.ta.sma(length=p.sma_short), "sma_50": df.ta.sma(length=p.sma_long),
            "ema_fast": df.ta.ema(length=p.ema_fast), "ema_slow": df.ta.ema(length=p.ema_slow),
            "volume_sma": ta.sma(df["volume"], length=p.volume_sma_length),
        }
        indicators = pd.DataFrame({name: s.to_numpy(dtype=np.float64) for name, s in columns.items()},
                                  index=rows.index)
        parts.append(pd.concat([rows, indicators], axis=1))
    return pd.concat(parts)


def frame_plumbing_only(candles: pd.DataFrame, _params: IndicatorParams) -> pd.DataFrame:
    """The baseline's per-symbol split and re-join alone (no indicator call): its share of the baseline."""
    parts = []
    for _symbol, rows in candles.groupby("symbol", sort=False):
        df = rows.set_index("ts")
        close = df["close"].to_numpy()
        indicators = pd.DataFrame({name: close for name in INDICATOR_COLUMNS}, index=rows.index)
        parts.append(pd.concat([rows, indicators], axis=1))
    return pd.concat(parts)


def scan(candles: pd.DataFrame, config: StrategiesConfig,
         indicators: Callable[[pd.DataFrame, IndicatorParams], pd.DataFrame]) -> dict[str, Any]:
    """Indicators once per distinct indicator set, then each strategy; seconds per stage and the results."""
    seconds: dict[str, float] = {"indicators": 0.0}
    frames: dict[IndicatorParams, pd.DataFrame] = {}
    decisions = {}
    for name, section in config.items():
        if section.indicators not in frames:
            start = time.perf_counter()
            frames[section.indicators] = indicators(candles, section.indicators)
            seconds["indicators"] += time.perf_counter() - start
        start = time.perf_counter()
        decisions[name] = STRATEGIES[name](frames[section.indicators], section.params)
        seconds[name] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return {"seconds": seconds, "frames": frames, "decisions": decisions}


def timed(candles: pd.DataFrame, config: StrategiesConfig, indicators: Callable[..., pd.DataFrame],
          runs: int) -> tuple[dict[str, float], dict[str, Any]]:
    timings, last = [], {}
    for _ in range(runs):
        last = {}  # drop the previous run's frames first: each run allocates like a fresh scan would
        last = scan(candles, config, indicators)
        timings.append(last["seconds"])
    median = {stage: statistics.median(t[stage] for t in timings) for stage in timings[0]}
    median["best_total"] = min(t["total"] for t in timings)
    return median, last


def check_same(ours: dict[str, Any], baseline: dict[str, Any]) -> None:
    for params, frame in ours["frames"].items():
        expected = baseline["frames"][params]
        for column in INDICATOR_COLUMNS:
            np.testing.assert_allclose(frame[column].to_numpy(), expected[column].to_numpy(), rtol=1e-9, atol=0,
                                       equal_nan=True, err_msg=column)
    for name, decisions in ours["decisions"].items():
        pd.testing.assert_frame_equal(decisions, baseline["decisions"][name], rtol=1e-9)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> None:
    candles = candle_frame()
    config = load_strategies()
    symbols = candles["symbol"].nunique()
    compute(candles)  # warm caches and imports outside the timings
    ours, ours_last = timed(candles, config, compute, OURS_RUNS)
    baseline, baseline_last = timed(candles, config, pandas_ta_indicators, BASELINE_RUNS)
    check_same(ours_last, baseline_last)
    plumbing, _ = timed(candles, config, frame_plumbing_only, BASELINE_RUNS)
    ratio = baseline["total"] / ours["total"]
    ratio_without_plumbing = (baseline["total"] - plumbing["indicators"]) / ours["total"]
    entries = {name: int(d["entry"].sum()) for name, d in ours_last["decisions"].items()}
    sets = len(ours_last["frames"])
    print(f"scan of {symbols} symbols x {CANDLES} 1m candles ({len(candles):,} rows): {sets} indicator sets "
          f"(CHANNEL's bands differ) + dca / swing / channel; entries {entries}")
    for label, figures, runs in (("ours (TA-Lib on NumPy slices, vectorised rules)", ours, OURS_RUNS),
                                 ("baseline (pandas-ta per symbol, same rules)", baseline, BASELINE_RUNS)):
        print(f"{label}: median of {runs} {ms(figures['total'])} ms (best {ms(figures['best_total'])} ms), "
              f"{figures['total'] * 1000 / symbols:.3f} ms per symbol; indicators {ms(figures['indicators'])} ms, "
              f"dca {ms(figures['dca'])} ms, swing {ms(figures['swing'])} ms, channel {ms(figures['channel'])} ms")
    print(f"ratio: {ratio:.1f}x (target >= {TARGET:g}x); indicator values and decisions equal in both. "
          f"Of the baseline, splitting and re-joining per-symbol frames takes {ms(plumbing['indicators'])} ms; "
          f"without it the ratio is {ratio_without_plumbing:.1f}x")
    print(json.dumps({
        "benchmark": "scan", "symbols": symbols, "candles_per_symbol": CANDLES, "rows": len(candles),
        "indicator_sets": sets, "entries": entries,
        "ours_ms": {stage: ms(v) for stage, v in ours.items()},
        "baseline_ms": {stage: ms(v) for stage, v in baseline.items()},
        "ours_ms_per_symbol": round(ours["total"] * 1000 / symbols, 3),
        "baseline_ms_per_symbol": round(baseline["total"] * 1000 / symbols, 3),
        "baseline_frame_plumbing_ms": ms(plumbing["indicators"]),
        "speedup": round(ratio, 2), "speedup_without_baseline_plumbing": round(ratio_without_plumbing, 2),
        "target_speedup": TARGET, "target_met": ratio >= TARGET,
    }))


if __name__ == "__main__":
    main()
