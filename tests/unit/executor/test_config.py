"""The script config's own checks, and the fields Hummingbot asks for when a config is created."""

from __future__ import annotations

from decimal import Decimal

import pytest

from executor.config import SignalExecutorConfig, prompt

D = Decimal


def test_the_config_fields_hummingbot_asks_for_when_a_config_is_created() -> None:
    asked = {name: field.json_schema_extra for name, field in SignalExecutorConfig.model_fields.items()
             if field.json_schema_extra}
    assert asked["connector"] == {"prompt": "Connector to trade on", "prompt_on_new": True}
    assert set(asked) >= {"connector", "exchange", "trading_pairs", "consumer"}
    assert all(extra["prompt_on_new"] is True and extra["prompt"] for extra in asked.values())
    # the fields' markers are built when the module is imported; the builder itself, called now:
    assert prompt("Pairs") == {"prompt": "Pairs", "prompt_on_new": True}


def test_the_config_refuses_a_partial_fill_age_past_the_stale_age_and_adds_its_pairs() -> None:
    with pytest.raises(ValueError) as raised:
        SignalExecutorConfig(partial_fill_max_age_s=600, stale_order_s=600)
    assert ("partial_fill_max_age_s (600) must be shorter than stale_order_s (600), or a partial fill is never "
            "handled") in str(raised.value)
    assert SignalExecutorConfig(partial_fill_max_age_s=599, stale_order_s=600).stale_order_s == 600
    config = SignalExecutorConfig(connector="paper", trading_pairs=["BTC-USDT", "ETH-USDT"])
    assert config.update_markets({}) == {"paper": {"BTC-USDT", "ETH-USDT"}}
    assert config.update_markets({"paper": {"SOL-USDT"}, "other": {"X-Y"}}) == {
        "paper": {"SOL-USDT", "BTC-USDT", "ETH-USDT"}, "other": {"X-Y"}}
