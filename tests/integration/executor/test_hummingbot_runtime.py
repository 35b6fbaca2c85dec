"""Hummingbot's real classes run in .venv: a StrategyV2Base on its Clock fills an order on MockPaperExchange.

This guards the --no-deps install: if the runtime set in requirements/hummingbot-runtime.in misses a
module the core needs, this is where it shows.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from hummingbot.client.config.client_config_map import ClientConfigMap
from hummingbot.client.config.config_helpers import ClientConfigAdapter
from hummingbot.connector.markets_recorder import MarketsRecorder
from hummingbot.connector.test_support.mock_paper_exchange import MockPaperExchange
from hummingbot.core.clock import Clock, ClockMode
from hummingbot.core.data_type.common import OrderType, TradeType
from hummingbot.core.event.events import OrderFilledEvent
from hummingbot.model.sql_connection_manager import SQLConnectionManager, SQLConnectionType
from hummingbot.strategy.strategy_v2_base import StrategyV2Base


class BuyOnce(StrategyV2Base):
    def __init__(self, connectors: dict) -> None:
        super().__init__(connectors)
        self.placed: str | None = None
        self.fills: list[OrderFilledEvent] = []

    def on_tick(self) -> None:
        if self.placed is None:
            self.placed = self.buy("mock", "BTC-USDT", Decimal("0.01"), OrderType.MARKET)

    def did_fill_order(self, event: OrderFilledEvent) -> None:
        self.fills.append(event)


async def run_strategy() -> tuple[BuyOnce, MockPaperExchange]:
    sql = SQLConnectionManager(ClientConfigAdapter(ClientConfigMap()), SQLConnectionType.TRADE_FILLS,
                               db_path=":memory:")
    MarketsRecorder._shared_instance = MarketsRecorder(sql, [], "test.yml", "test", None)
    exchange = MockPaperExchange()
    exchange.set_balanced_order_book("BTC-USDT", 100.0, 90.0, 110.0, 0.5, 10.0)
    exchange.set_balance("USDT", 1000)
    exchange.set_balance("BTC", 0)
    strategy = BuyOnce({"mock": exchange})
    clock = Clock(ClockMode.BACKTEST, 1.0, 1_000.0, 1_100.0)
    clock.add_iterator(exchange)
    clock.add_iterator(strategy)
    with clock:
        for t in range(1_001, 1_011):
            clock.backtest_til(t)
            await asyncio.sleep(0.01)
    return strategy, exchange


def test_a_strategy_on_the_real_clock_fills_a_market_buy_on_the_paper_exchange() -> None:
    strategy, exchange = asyncio.run(run_strategy())

    assert strategy.placed is not None
    assert len(strategy.fills) == 1
    fill = strategy.fills[0]
    assert fill.order_id == strategy.placed
    assert fill.trade_type == TradeType.BUY
    assert fill.price == pytest.approx(Decimal("100.25"))  # the best ask of the book
    assert exchange.get_balance("BTC") == pytest.approx(Decimal("0.01"))
    assert exchange.get_balance("USDT") == pytest.approx(Decimal("1000") - fill.price * Decimal("0.01"))
