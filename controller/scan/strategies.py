"""Entry rules: DCA, SWING and CHANNEL over a whole scan universe, as pure DataFrame functions.

Each strategy takes the output of `controller.scan.indicators.compute` (a long frame of many symbols, sorted
by symbol then ts) and its `TieredParams` (or one parameter set for every symbol), and returns a frame
with the same index and the columns of `DECISION_COLUMNS`:

- `entry` (bool): open a long (side buy). No strategy here ever proposes a short or a sell.
- `confidence` (0..1): the rule's score at that row (for non-entries too, so near misses show).
- `reason`: for an entry, why; otherwise the first rule that failed, with its value and threshold.
- `take_profit_pct`, `stop_loss_pct`, `time_limit_s`, `trailing_activation_pct`, `trailing_delta_pct`:
  the barriers of the symbol's tier on entry rows (percent units; seconds), NaN on the other rows.

Ratios read the indicator frame as it is: `volume_sma` includes the current bar (like freqtrade's
`rolling(20).mean()`), so "volume ratio" is volume / that average.

No I/O, no clock: everything comes from the frame. No look-ahead: a row's decision reads only rows of
its own symbol at or before it (trailing windows, no negative shifts, no centred windows).

Differences from the earlier system, on purpose (docs: SEED_SYSTEM.md §3):
- DCA enters when the drop from the recent high is AT LEAST the threshold (its detector had the
  comparison inverted). The threshold is a positive magnitude (`min_drop_pct` 3.75 = "-3.75 %").
- CHANNEL checks the band width as a fraction against fractional limits (its `width > 1.0` on a width
  capped at 0.10 could never pass), and never buys at the top of the channel (its loop opened a long
  on "SELL" signals too): `buy_zone` must lie below `sell_zone`, and only positions <= `buy_zone` enter.
- "Volatility" is ATR / close (a fraction) in all three strategies.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from controller.scan.indicators import symbol_blocks
from controller.scan.strategy_params import ChannelParams, DcaParams, ExitParams, SwingParams, TieredParams

EXIT_COLUMNS = ("take_profit_pct", "stop_loss_pct", "time_limit_s", "trailing_activation_pct", "trailing_delta_pct")
DECISION_COLUMNS = ("entry", "confidence", "reason", *EXIT_COLUMNS)
GRID_COLUMNS = ("grid_levels", "grid_spacing_pct", "grid_level_share")  # DCA entries only
SIGNAL_EXIT_COLUMNS = ("exit", "exit_reason")  # exit signals for open positions (DCA, CHANNEL)

# The frame columns each strategy's decision reads (for the scan log's features).
FEATURES: dict[str, tuple[str, ...]] = {
    "dca": ("close", "high", "rsi", "volume", "volume_sma", "atr"),
    "swing": ("close", "high", "volume", "volume_sma", "rsi", "sma_20", "sma_50", "atr", "macd_hist", "roc"),
    "channel": ("close", "high", "bb_lower", "bb_mid", "bb_upper", "bb_width", "rsi", "volume", "volume_sma", "atr"),
}

# SWING score weights (points out of 100), from the earlier system's SwingDetector.
SWING_POINTS = {"breakout": 30.0, "volume": 20.0, "trend": 20.0, "momentum": 15.0, "change": 15.0}


def features(name: str, frame_row: Mapping[str, Any]) -> dict[str, float | None]:
    """The values `name`'s decision read at one row of an indicator frame (NaN as None, for JSON)."""
    values: dict[str, float | None] = {}
    for column in FEATURES[name]:
        value = float(frame_row[column])
        values[column] = value if math.isfinite(value) else None
    return values


# ---------------------------------------------------------------------------------------------- plumbing


@dataclass(frozen=True)
class _Universe:
    """Where each symbol's rows are and which parameter set applies to each row."""

    n: int
    bounds: np.ndarray  # block starts plus the end
    position: np.ndarray  # row number within its symbol
    group: np.ndarray  # index into `params` per row
    params: list[Any]  # distinct parameter sets

    def value(self, name: str) -> np.ndarray | float:
        """A parameter per row (a scalar when one set applies to every row)."""
        if len(self.params) == 1:
            return float(getattr(self.params[0], name))
        return np.array([float(getattr(p, name)) for p in self.params]).take(self.group)

    def per_window(self, name: str, fn: Callable[[int], np.ndarray]) -> np.ndarray:
        """`fn(window)` for each distinct integer parameter `name`, picked per row."""
        windows = [int(getattr(p, name)) for p in self.params]
        if len(set(windows)) == 1:
            return fn(windows[0])
        result = np.full(self.n, np.nan)
        for window in sorted(set(windows)):
            rows = np.isin(self.group, [i for i, w in enumerate(windows) if w == window])
            result[rows] = fn(window)[rows]
        return result


def _universe(frame: pd.DataFrame, params: TieredParams[Any] | ExitParams) -> _Universe:
    bounds = symbol_blocks(frame)
    n = len(frame)
    lengths = np.diff(bounds)
    symbols = frame["symbol"].to_numpy()[bounds[:-1]] if n else []
    distinct: dict[Any, int] = {}
    block_group = []
    for symbol in symbols:
        chosen = params.for_symbol(str(symbol)) if isinstance(params, TieredParams) else params
        block_group.append(distinct.setdefault(chosen, len(distinct)))
    if not distinct:
        distinct[params.default if isinstance(params, TieredParams) else params] = 0
    position = np.arange(n) - np.repeat(bounds[:-1], lengths)
    group = np.repeat(np.asarray(block_group, dtype=np.int64), lengths)
    return _Universe(n, bounds, position, group, list(distinct))


def _rolling_max(values: np.ndarray, window: int, position: np.ndarray) -> np.ndarray:
    """Max of the `window` rows ending at each row, NaN where the window reaches before the symbol's
    first row. O(n log window): maxima over power-of-two spans, then two overlapping spans."""
    span = values.copy()
    width = 1
    while width * 2 <= window:
        shifted = np.full_like(span, -np.inf)
        shifted[width:] = span[:-width]
        span = np.maximum(span, shifted)
        width *= 2
    rest = window - width
    if rest:
        shifted = np.full_like(span, -np.inf)
        shifted[rest:] = span[:-rest]
        span = np.maximum(span, shifted)
    span[position < window - 1] = np.nan
    return span


def _lagged(values: np.ndarray, position: np.ndarray, lag: int = 1) -> np.ndarray:
    """The value `lag` rows earlier in the same symbol (NaN before its first row)."""
    out = np.full_like(values, np.nan)
    out[lag:] = values[:-lag]
    out[position < lag] = np.nan
    return out


def _change_over(frame: pd.DataFrame, close: np.ndarray, universe: _Universe, window_s: int) -> np.ndarray:
    """Percent change of the close since the last candle at least `window_s` earlier (same symbol)."""
    seconds = frame["ts"].to_numpy(dtype="datetime64[s]").view(np.int64)
    if not len(seconds):
        return np.full(0, np.nan)
    block = np.repeat(np.arange(len(universe.bounds) - 1, dtype=np.int64), np.diff(universe.bounds))
    key = block * (1 << 34) + (seconds - seconds.min())  # ordered by (symbol, ts); spans up to ~544 years
    earlier = np.searchsorted(key, key - window_s, side="right") - 1
    valid = earlier >= universe.bounds[block]
    change = np.full(len(close), np.nan)
    change[valid] = (close[valid] / close[earlier[valid]] - 1.0) * 100.0
    return change


def _unit(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)


def _ratio_score(ratio: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    """0.5 at the threshold, 1 at twice it (1 everywhere when the threshold is 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        score = ratio / (2.0 * np.asarray(threshold))
    return np.where(np.asarray(threshold) > 0, _unit(score), 1.0)


@dataclass(frozen=True)
class _Rule:
    """One entry condition: where it holds, the value it tested, and how to say why it failed."""

    passed: np.ndarray
    value: np.ndarray
    digits: int
    text: Callable[[float, Any], str]  # (value rounded to `digits`, the row's parameters) -> reason


def _warm_up(frame: pd.DataFrame, columns: Sequence[str], derived: Mapping[str, np.ndarray]) -> _Rule:
    names = [*columns, *derived]
    arrays = [frame[c].to_numpy(dtype=np.float64) for c in columns] + list(derived.values())
    first_missing = np.full(len(frame), -1.0)
    for index in range(len(arrays) - 1, -1, -1):  # backwards, so the first missing column wins
        first_missing[~np.isfinite(arrays[index])] = index
    return _Rule(first_missing < 0, first_missing, 0, lambda v, _p: f"warming up: {names[int(v)]} not available yet")


def _decide(frame: pd.DataFrame, universe: _Universe, rules: list[_Rule], confidence: np.ndarray,
            entry_text: Callable[[np.ndarray], list[str]]) -> pd.DataFrame:
    n = universe.n
    first = np.full(n, -1, dtype=np.int64)
    for index in range(len(rules) - 1, -1, -1):  # backwards, so the first failing rule wins
        first[~rules[index].passed] = index
    entry = first < 0
    reason = np.empty(n, dtype=object)
    # Rows that failed, bucketed by (first failed rule, parameter set) with one stable sort.
    failing = np.flatnonzero(~entry)
    bucket = first[failing] * len(universe.params) + universe.group[failing]
    order = np.argsort(bucket.astype(np.int32), kind="stable")
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(bucket[order])) + 1, [len(order)]))
    for start, stop in itertools.pairwise(bounds if len(failing) else []):
        rows = failing[order[start:stop]]
        index, group = divmod(int(bucket[order[start]]), len(universe.params))
        rule, params = rules[index], universe.params[group]
        # Format each distinct rounded value once: a scan has few of them and many rows.
        where, shown = pd.factorize(np.round(rule.value[rows], rule.digits), use_na_sentinel=False)
        labels = np.array([rule.text(float(v), params) for v in shown], dtype=object)
        reason[rows] = labels.take(where)
    entries = np.flatnonzero(entry)
    if len(entries):
        reason[entries] = entry_text(entries)
    columns: dict[str, Any] = {
        "entry": entry,
        "confidence": np.where(np.isfinite(confidence), np.clip(confidence, 0.0, 1.0), 0.0),
        "reason": reason,
    }
    for name in EXIT_COLUMNS:
        columns[name] = np.where(entry, universe.value(name), np.nan)
    return pd.DataFrame(columns, index=frame.index, copy=False)


def _floats(frame: pd.DataFrame, *names: str) -> list[np.ndarray]:
    return [frame[name].to_numpy(dtype=np.float64) for name in names]


def _rsi_rules(rsi: np.ndarray, universe: _Universe) -> list[_Rule]:
    return [
        _Rule(rsi >= universe.value("rsi_min"), rsi, 1, lambda v, p: f"rsi {v:.1f} below {p.rsi_min:g}"),
        _Rule(rsi <= universe.value("rsi_max"), rsi, 1, lambda v, p: f"rsi {v:.1f} above {p.rsi_max:g}"),
    ]


def _volatility_rule(atr: np.ndarray, close: np.ndarray, universe: _Universe) -> _Rule:
    volatility = atr / close
    return _Rule(volatility <= universe.value("volatility_max"), volatility, 4,
                 lambda v, p: f"volatility (atr/close) {v:.4f} above {p.volatility_max:g}")


# ---------------------------------------------------------------------------------------------- strategies


def dca(frame: pd.DataFrame, params: TieredParams[DcaParams] | DcaParams) -> pd.DataFrame:
    """Buy the dip: the close is at least `min_drop_pct` below the max high of the last `lookback_bars`
    bars (the current one included), RSI within [rsi_min, rsi_max], volume / volume_sma at least
    `volume_ratio_min`, ATR / close at most `volatility_max`.

    Confidence: half from the depth of the drop (0.5 at the threshold, 1 at twice it), a quarter from
    RSI's room below rsi_max, a quarter from the volume ratio (0.5 at its minimum, 1 at twice it)."""
    universe = _universe(frame, params)
    close, high, rsi, volume, volume_sma, atr = _floats(frame, *FEATURES["dca"])
    recent_high = universe.per_window("lookback_bars", lambda w: _rolling_max(high, w, universe.position))
    with np.errstate(divide="ignore", invalid="ignore"):
        drop = (1.0 - close / recent_high) * 100.0
        volume_ratio = volume / volume_sma
        volatility_rule = _volatility_rule(atr, close, universe)
    min_drop = universe.value("min_drop_pct")
    rules = [
        _warm_up(frame, FEATURES["dca"], {"recent high": recent_high}),
        _Rule(drop >= min_drop, drop, 2,
              lambda v, p: f"drop {v:.2f}% from the {p.lookback_bars}-bar high smaller than {p.min_drop_pct:g}%"),
        *_rsi_rules(rsi, universe),
        _Rule(volume_ratio >= universe.value("volume_ratio_min"), volume_ratio, 2,
              lambda v, p: f"volume ratio {v:.2f} below {p.volume_ratio_min:g}"),
        volatility_rule,
    ]
    rsi_min, rsi_max = universe.value("rsi_min"), universe.value("rsi_max")
    confidence = (0.5 * _ratio_score(drop, min_drop)
                  + 0.25 * _unit((rsi_max - rsi) / (rsi_max - rsi_min))
                  + 0.25 * _ratio_score(volume_ratio, universe.value("volume_ratio_min")))

    def entry_text(rows: np.ndarray) -> list[str]:
        return [f"drop {drop[i]:.2f}% from the recent high, rsi {rsi[i]:.1f}, volume ratio {volume_ratio[i]:.2f}"
                for i in rows]

    return _decide(frame, universe, rules, confidence, entry_text)


def swing(frame: pd.DataFrame, params: TieredParams[SwingParams] | SwingParams) -> pd.DataFrame:
    """Buy the breakout: close above the max high of the previous `lookback_bars` bars x
    `breakout_factor`, volume above `volume_surge` x volume_sma, RSI within the band, ATR / close at most
    `volatility_max`, and a score of at least `min_score`. The trend (close > sma_20 > sma_50) is one scored
    item, as in the seed's SwingDetector, not also a hard rule.

    Score (points): breakout 30 (15 at the threshold, 30 at twice the margin), volume 20 (10 at the
    surge threshold, 20 at twice it), trend 20 (scaled by sma_20 over sma_50 up to `trend_spread_pct`),
    momentum 15 (7.5 each for macd_hist > 0 and roc > 0), price change over `change_window_s` 15
    (within [change_min_pct, change_max_pct]; 7.5 for a smaller rise). Confidence = score / 100."""
    universe = _universe(frame, params)
    close, high, volume, volume_sma, rsi, sma_20, sma_50, atr, macd_hist, roc = _floats(frame, *FEATURES["swing"])
    previous_high = universe.per_window(
        "lookback_bars", lambda w: _lagged(_rolling_max(high, w, universe.position), universe.position))
    factor, surge = universe.value("breakout_factor"), universe.value("volume_surge")
    change = universe.per_window("change_window_s", lambda s: _change_over(frame, close, universe, s))
    with np.errstate(divide="ignore", invalid="ignore"):
        breakout = close / previous_high
        volume_ratio = volume / volume_sma
        spread = (sma_20 / sma_50 - 1.0) * 100.0
        volatility_rule = _volatility_rule(atr, close, universe)
    trend = (close > sma_20) & (sma_20 > sma_50)
    change_min, change_max = universe.value("change_min_pct"), universe.value("change_max_pct")
    score = (SWING_POINTS["breakout"] * _unit((breakout - 1.0) / (2.0 * (np.asarray(factor) - 1.0)))
             + SWING_POINTS["volume"] * _ratio_score(volume_ratio, surge)
             + SWING_POINTS["trend"] * trend * _unit(spread / universe.value("trend_spread_pct"))
             + SWING_POINTS["momentum"] / 2 * ((macd_hist > 0).astype(float) + (roc > 0))
             + SWING_POINTS["change"] * np.where((change >= change_min) & (change <= change_max), 1.0,
                                                 np.where((change > 0) & (change < change_min), 0.5, 0.0)))
    rules = [
        _warm_up(frame, FEATURES["swing"], {"previous high": previous_high}),
        _Rule(close > previous_high * factor, breakout, 4,
              lambda v, p: f"close/previous {p.lookback_bars}-bar high {v:.4f} not above {p.breakout_factor:g}"),
        _Rule(volume > volume_sma * surge, volume_ratio, 2,
              lambda v, p: f"volume ratio {v:.2f} not above {p.volume_surge:g}"),
        *_rsi_rules(rsi, universe),
        volatility_rule,
        _Rule(score >= universe.value("min_score"), score, 1,
              lambda v, p: f"score {v:.1f} below {p.min_score:g}"),
    ]

    def entry_text(rows: np.ndarray) -> list[str]:
        return [f"breakout {100 * (breakout[i] - 1):.2f}% over the previous high, volume ratio {volume_ratio[i]:.2f}, "
                f"rsi {rsi[i]:.1f}, score {score[i]:.1f}" for i in rows]

    return _decide(frame, universe, rules, score / 100.0, entry_text)


def channel(frame: pd.DataFrame, params: TieredParams[ChannelParams] | ChannelParams) -> pd.DataFrame:
    """Buy the bottom of the Bollinger channel: band width within [width_min, width_max] (fractions of
    the mid band), position (close - lower) / (upper - lower) at most `buy_zone` (never at or above
    `sell_zone`), RSI within the band, volume / volume_sma at least `volume_ratio_min`, ATR / close at
    most `volatility_max`, and the close not more than `max_drop_pct` below the max high of the last
    `drop_lookback_bars` bars (no falling knife).

    Confidence: half from the depth in the buy zone (1 at or below the lower band), a quarter from RSI's
    room below rsi_max, a quarter from the volume ratio."""
    universe = _universe(frame, params)
    close, high, bb_lower, _bb_mid, bb_upper, width, rsi, volume, volume_sma, atr = _floats(
        frame, *FEATURES["channel"])
    recent_high = universe.per_window("drop_lookback_bars", lambda w: _rolling_max(high, w, universe.position))
    with np.errstate(divide="ignore", invalid="ignore"):
        position = np.where(bb_upper > bb_lower, (close - bb_lower) / (bb_upper - bb_lower), np.nan)
        volume_ratio = volume / volume_sma
        drop = (1.0 - close / recent_high) * 100.0
        volatility_rule = _volatility_rule(atr, close, universe)
        depth = 1.0 - position / np.asarray(universe.value("buy_zone"))
    buy_zone = universe.value("buy_zone")

    rules = [
        _warm_up(frame, FEATURES["channel"], {"recent high": recent_high}),
        _Rule(width >= universe.value("width_min"), width, 4,
              lambda v, p: f"channel width {v:.4f} below {p.width_min:g}"),
        _Rule(width <= universe.value("width_max"), width, 4,
              lambda v, p: f"channel width {v:.4f} above {p.width_max:g}"),
        _Rule(position < universe.value("sell_zone"), position, 3,
              lambda v, p: f"position {v:.3f} in the sell zone (>= {p.sell_zone:g}): no long at the top"),
        _Rule(position <= buy_zone, position, 3, lambda v, p: f"position {v:.3f} above the buy zone {p.buy_zone:g}"),
        *_rsi_rules(rsi, universe),
        _Rule(volume_ratio >= universe.value("volume_ratio_min"), volume_ratio, 2,
              lambda v, p: f"volume ratio {v:.2f} below {p.volume_ratio_min:g}"),
        volatility_rule,
        _Rule(drop <= universe.value("max_drop_pct"), drop, 2,
              lambda v, p: f"falling: {v:.2f}% below the {p.drop_lookback_bars}-bar high, over {p.max_drop_pct:g}%"),
    ]
    rsi_min, rsi_max = universe.value("rsi_min"), universe.value("rsi_max")
    confidence = (0.5 * np.where(np.asarray(buy_zone) > 0, _unit(depth), (position <= 0).astype(float))
                  + 0.25 * _unit((rsi_max - rsi) / (rsi_max - rsi_min))
                  + 0.25 * _ratio_score(volume_ratio, universe.value("volume_ratio_min")))

    def entry_text(rows: np.ndarray) -> list[str]:
        return [f"position {position[i]:.3f} in the buy zone, channel width {width[i]:.4f}, rsi {rsi[i]:.1f}"
                for i in rows]

    return _decide(frame, universe, rules, confidence, entry_text)


def dca_grid(confidence: np.ndarray, entry: np.ndarray, frame: pd.DataFrame,
             params: TieredParams[DcaParams] | DcaParams) -> pd.DataFrame:
    """The grid an entry carries (seed §3): at confidence >= grid_high_confidence one level more and the
    spacing x0.8; below grid_low_confidence one level fewer (never under grid_min_levels) and the spacing
    x1.3. NaN on rows that do not enter, and where the grid has no level."""
    universe = _universe(frame, params)
    levels = np.broadcast_to(np.asarray(universe.value("grid_levels"), dtype=np.float64), (universe.n,)).copy()
    spacing = np.broadcast_to(np.asarray(universe.value("grid_spacing_pct"), dtype=np.float64),
                              (universe.n,)).copy()
    high = confidence >= universe.value("grid_high_confidence")
    low = confidence < universe.value("grid_low_confidence")
    levels = np.where(high, levels + 1, np.where(low, np.maximum(levels - 1, universe.value("grid_min_levels")),
                                                 levels))
    levels = np.where(np.asarray(universe.value("grid_levels")) == 0, 0, levels)  # 0: no grid, whatever the score
    spacing = np.where(high, spacing * 0.8, np.where(low, spacing * 1.3, spacing))
    on = entry & (levels > 0)
    return pd.DataFrame({"grid_levels": np.where(on, levels, np.nan), "grid_spacing_pct": np.where(on, spacing, np.nan),
                         "grid_level_share": np.where(on, universe.value("grid_level_share"), np.nan)},
                        index=frame.index)


def dca_exit(frame: pd.DataFrame, params: TieredParams[DcaParams] | DcaParams) -> pd.DataFrame:
    """Exit signal for an open DCA position: RSI at or above `exit_rsi` (seed: 77)."""
    universe = _universe(frame, params)
    rsi = frame["rsi"].to_numpy(dtype=np.float64)
    exit_rsi = universe.value("exit_rsi")
    hit = rsi >= exit_rsi
    reason = np.empty(len(frame), dtype=object)
    for i in np.flatnonzero(hit):
        reason[i] = f"rsi {rsi[i]:.1f} at or above the exit level"
    return pd.DataFrame({"exit": hit, "exit_reason": reason}, index=frame.index)


def channel_exit(frame: pd.DataFrame, params: TieredParams[ChannelParams] | ChannelParams) -> pd.DataFrame:
    """Exit signal for an open CHANNEL position: the close reached the top of the band (position >=
    `sell_zone`), or RSI at or above `exit_rsi` (seed: .75 and 72)."""
    universe = _universe(frame, params)
    close, bb_lower, bb_upper, rsi = _floats(frame, "close", "bb_lower", "bb_upper", "rsi")
    with np.errstate(divide="ignore", invalid="ignore"):
        position = np.where(bb_upper > bb_lower, (close - bb_lower) / (bb_upper - bb_lower), np.nan)
    top = position >= universe.value("sell_zone")
    overbought = rsi >= universe.value("exit_rsi")
    reason = np.empty(len(frame), dtype=object)
    for i in np.flatnonzero(top | overbought):
        reason[i] = (f"position {position[i]:.3f} at the top of the channel" if top[i]
                     else f"rsi {rsi[i]:.1f} at or above the exit level")
    return pd.DataFrame({"exit": top | overbought, "exit_reason": reason}, index=frame.index)


STRATEGIES: dict[str, Callable[..., pd.DataFrame]] = {"dca": dca, "swing": swing, "channel": channel}
# The grid an entry carries, from the decision's confidence and entry columns (DCA only).
GRIDS: dict[str, Callable[..., pd.DataFrame]] = {"dca": dca_grid}
# Exit signals for open positions; SWING has none (its barriers close it).
EXITS: dict[str, Callable[..., pd.DataFrame]] = {"dca": dca_exit, "channel": channel_exit}
