"""The payoff threshold (`ml.payoff`): the confidence where an entry's expected value net of costs is zero,
per strategy and tier, and the booster acting on it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from controller.scan.strategy_params import load_strategies
from ml.config import CostParams
from ml.payoff import break_even, for_events, round_trip_pct, threshold
from ml.scoring import arms

COSTS = CostParams(fee_pct=0.3, slippage_pct=0.25)


def _expected_value(p: float, tp: float, sl: float, cost: float) -> float:
    return p * tp - (1 - p) * sl - cost


def test_the_expected_value_is_zero_at_the_break_even_and_positive_only_above_it() -> None:
    for tp, sl in ((3.0, 27.9), (8.0, 6.0), (4.0, 14.6), (15.0, 8.0)):
        p = break_even(tp, sl, round_trip_pct(COSTS))
        assert abs(_expected_value(p, tp, sl, 1.1)) < 1e-12
        assert _expected_value(p + 0.01, tp, sl, 1.1) > 0 > _expected_value(p - 0.01, tp, sl, 1.1)


def test_each_strategy_and_tier_gets_its_own_threshold_from_its_barriers() -> None:
    strategies = load_strategies()
    dca, swing = strategies.dca.params, strategies.swing.params
    assert round(threshold(dca.default, COSTS), 3) == round((27.9 + 1.1) / (3.0 + 27.9), 3)  # 0.939
    assert round(threshold(swing.default, COSTS), 3) == round((6.0 + 1.1) / (8.0 + 6.0), 3)  # 0.507
    assert threshold(swing.default, COSTS, floor=0.7) == 0.7  # the flag is a floor
    assert threshold(dca.default, CostParams(fee_pct=5, slippage_pct=5)) == 1.0  # nothing pays: capped at 1
    events = pd.DataFrame({"strategy": ["swing", "swing", "dca"], "symbol": ["BTC-USDT", "ZZZ-USDT", "ZZZ-USDT"]},
                          index=[7, 3, 5])  # BTC is a large asset; ZZZ in no tier: small
    got = for_events(events, strategies, COSTS)
    large = swing.for_symbol("BTC-USDT")
    assert swing.tier_of("BTC-USDT") == "large" and (large.take_profit_pct, large.stop_loss_pct) == (5.0, 4.0)
    assert got.loc[7] == threshold(large, COSTS) == (4.0 + 1.1) / (5.0 + 4.0)
    assert got.loc[7] != got.loc[3] and list(got.index) == [7, 3, 5]


def test_the_booster_sizes_and_vetoes_against_each_candidates_own_threshold() -> None:
    keys = ["a", "b"]
    decided = arms(np.array([0.7, 0.7]), np.zeros(2), keys, stale=False, control_share=0.0, ood_max=1.0,
                   threshold=np.array([0.5, 0.9]), veto=True, enabled=True)
    assert [(a, round(m, 9), v) for a, m, v in decided] == [("boosted", 1.4, False), ("boosted", 0.6, True)]
