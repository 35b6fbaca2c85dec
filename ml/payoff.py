"""The confidence a strategy's entry needs to be worth taking: where its expected value net of costs is zero.

An entry with take profit `tp` and stop `sl` (percent) that wins with probability p is worth
p * tp - (1 - p) * sl - c, with c the round trip's fees and slippage (`ml.costs`, twice the per-side figures).
It is positive above p* = (sl + c) / (tp + sl): the booster's threshold per strategy and tier, in place of one
fixed confidence for all. A strategy that risks 27.9 % to make 3 % needs p* = 0.94, one that risks 6 % to make
8 % needs 0.51. Barriers are the configured ones; a time limit or a trailing stop that ends trades between them
makes the real payoff smaller on both sides, which this figure does not model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from controller.scan.strategy_params import ExitParams, StrategiesConfig, StrategyConfig
from ml.config import CostParams


def round_trip_pct(costs: CostParams) -> float:
    return 2.0 * (costs.fee_pct + costs.slippage_pct)


def break_even(take_profit_pct: float, stop_loss_pct: float, cost_pct: float) -> float:
    """The win probability at which p * tp - (1 - p) * sl - c is zero (above 1: no confidence pays)."""
    return (stop_loss_pct + cost_pct) / (take_profit_pct + stop_loss_pct)


def threshold(exits: ExitParams, costs: CostParams, floor: float = 0.0) -> float:
    """The booster's threshold for entries with these barriers: the break-even, at least `floor` (the
    `ml.min_confidence` flag), at most 1."""
    return float(min(1.0, max(floor, break_even(exits.take_profit_pct, exits.stop_loss_pct, round_trip_pct(costs)))))


def for_symbols(section: StrategyConfig, symbols: pd.Series | list[str], costs: CostParams,
                floor: float = 0.0) -> np.ndarray:
    """The threshold of each symbol's entries (its tier's barriers)."""
    cache: dict[str, float] = {}
    out = []
    for symbol in symbols:
        key = str(symbol)
        if key not in cache:
            cache[key] = threshold(section.params.for_symbol(key), costs, floor)
        out.append(cache[key])
    return np.asarray(out, dtype=np.float64)


def for_events(events: pd.DataFrame, strategies: StrategiesConfig, costs: CostParams,
               floor: float = 0.0) -> pd.Series:
    """The threshold of each labelled entry (its strategy's and symbol's barriers), indexed as `events`."""
    sections = dict(strategies.items())
    out = pd.Series(np.nan, index=events.index, dtype=np.float64)
    for name, rows in events.groupby("strategy", sort=False):
        out.loc[rows.index] = for_symbols(sections[str(name)], rows["symbol"], costs, floor)
    return out
