"""Variations: validated by the strategy parameter models; decisions re-run the entry rules with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from controller.config_base import ConfigError
from controller.scan.indicators import compute
from controller.scan.strategy_params import StrategiesConfig, load_strategies
from shadow.decide import decide
from shadow.variations import CHAMPION, Variation, load_variations
from tests.support.recorded import load_recorded


@pytest.fixture(scope="module")
def champion() -> StrategiesConfig:
    return load_strategies()


@pytest.fixture(scope="module")
def variations(champion: StrategiesConfig) -> list[Variation]:
    return load_variations(champion)[1]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return compute(load_recorded("5m"))


def _one(variations: list[Variation], name: str, strategy: str) -> Variation:
    return next(v for v in variations if v.name == name and v.strategy == strategy)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "variations.yml"
    path.write_text(text)
    return path


def test_shipped_file_has_champion_conservative_aggressive_and_the_seed_set(variations: list[Variation]) -> None:
    names = {v.name for v in variations}
    assert {CHAMPION, "CONSERVATIVE", "AGGRESSIVE", "BEAR_MARKET", "BULL_MARKET", "QUICK_EXITS", "DCA_DROPS_3",
            "DCA_DROPS_4", "DCA_DROPS_5", "CONFIDENCE_TEST_55", "CONFIDENCE_TEST_62", "VOLATILITY_SIZED"} <= names
    assert {v.strategy for v in variations if v.name.startswith("DCA_DROPS")} == {"dca"}


def test_seed_values_reach_every_tier(variations: list[Variation], champion: StrategiesConfig) -> None:
    bear = _one(variations, "BEAR_MARKET", "swing")
    for tier in ("large", "small", "meme"):
        base = champion.swing.params.for_tier(tier)
        varied = bear.section.params.for_tier(tier)
        assert varied.stop_loss_pct == 6.0
        assert varied.take_profit_pct == pytest.approx(base.take_profit_pct * 1.2)
        assert varied.breakout_factor == base.breakout_factor  # untouched keys keep the tier's value
    assert _one(variations, "BEAR_MARKET", "dca").section.params.default.min_drop_pct == 3.0
    assert _one(variations, "QUICK_EXITS", "channel").section.params.default.time_limit_s == 86400


def test_an_unknown_parameter_is_refused_by_name(tmp_path: Path, champion: StrategiesConfig) -> None:
    path = _write(tmp_path, "variations:\n  ODD:\n    strategies: {dca: {set: {min_dorp_pct: 3}}}\n")
    with pytest.raises(ConfigError, match=r"variations\.yml: variations\.ODD\.strategies\.dca: unknown parameter "
                                          r"min_dorp_pct"):
        load_variations(champion, path)


def test_an_out_of_range_value_is_refused_by_name(tmp_path: Path, champion: StrategiesConfig) -> None:
    path = _write(tmp_path, "variations:\n  ODD:\n    change: {set: {stop_loss_pct: 140}}\n")
    with pytest.raises(ConfigError, match=r"variations\.ODD\.change: out of range .*stop_loss_pct"):
        load_variations(champion, path)
    path = _write(tmp_path, "variations:\n  ODD:\n    strategies: {channel: {set: {buy_zone: 0.8}}}\n")
    with pytest.raises(ConfigError, match=r"buy_zone .* must be below sell_zone"):
        load_variations(champion, path)


def test_a_strategy_only_key_at_the_top_level_is_refused(tmp_path: Path, champion: StrategiesConfig) -> None:
    path = _write(tmp_path, "variations:\n  ODD:\n    change: {set: {min_drop_pct: 3}}\n")
    with pytest.raises(ConfigError, match=r"unknown parameter min_drop_pct for SwingParams"):
        load_variations(champion, path)


def test_a_variation_enters_where_the_champion_skipped(variations: list[Variation], frame: pd.DataFrame) -> None:
    champion = decide(frame, _one(variations, CHAMPION, "dca"))
    drops = decide(frame, _one(variations, "DCA_DROPS_3", "dca"))
    new = drops["entry"] & ~champion["entry"]
    assert new.sum() > 0
    # the champion skipped those rows because the drop was smaller than its 3.75 %
    from controller.scan.strategies import dca
    reasons = dca(frame, _one(variations, CHAMPION, "dca").section.params)["reason"][new]
    assert reasons.str.contains("smaller than 3.75%").all()
    # and every champion entry is still an entry at the lower threshold
    assert not (champion["entry"] & ~drops["entry"]).any()


def test_a_variation_skips_where_the_champion_entered(variations: list[Variation], frame: pd.DataFrame) -> None:
    champion = decide(frame, _one(variations, CHAMPION, "dca"))
    deeper = decide(frame, _one(variations, "DCA_DROPS_5", "dca"))
    assert (champion["entry"] & ~deeper["entry"]).sum() > 0
    assert not (deeper["entry"] & ~champion["entry"]).any()


def test_ml_threshold_gates_only_where_a_confidence_is_known(variations: list[Variation],
                                                             frame: pd.DataFrame) -> None:
    variation = _one(variations, "CONFIDENCE_TEST_62", "dca")
    plain = decide(frame, variation)
    unknown = decide(frame, variation, np.full(len(frame), np.nan))
    low = decide(frame, variation, np.full(len(frame), 0.61))
    high = decide(frame, variation, np.full(len(frame), 0.62))
    assert plain["entry"].sum() > 0
    assert (unknown["entry"] == plain["entry"]).all()  # no confidence is not a confidence of 0
    assert low["entry"].sum() == 0
    assert (high["entry"] == plain["entry"]).all()


def test_volatility_sizing_and_size_multipliers(variations: list[Variation], frame: pd.DataFrame) -> None:
    sized = decide(frame, _one(variations, "VOLATILITY_SIZED", "dca"))
    volatility = frame["atr"] / frame["close"]
    assert (sized["size_multiplier"][volatility < 0.02] == 1.5).all()
    assert (sized["size_multiplier"][volatility > 0.05] == 0.5).all()
    assert (decide(frame, _one(variations, "CONSERVATIVE", "dca"))["size_multiplier"] == 0.75).all()


def test_entries_carry_the_variations_barriers(variations: list[Variation], frame: pd.DataFrame) -> None:
    quick = decide(frame, _one(variations, "QUICK_EXITS", "dca"))
    entered = quick[quick["entry"]]
    assert len(entered) and (entered["time_limit_s"] == 86400).all()
    assert entered["take_profit_pct"].tolist() == pytest.approx([3.0 * 0.8] * len(entered))
