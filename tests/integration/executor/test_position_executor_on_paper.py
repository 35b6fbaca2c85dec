"""Why the barriers are ours and not Hummingbot's PositionExecutor: on the pinned Hummingbot it cannot manage a
position on the paper exchange (docs/executor.md). These tests run PositionExecutor itself, inside the real clock
and the paper exchange the executor's tests use; they fail the day an upgrade makes it work, which is when the
decision in docs/executor.md is worth taking again."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import pytest
from hummingbot.client.config.client_config_map import ClientConfigMap
from hummingbot.client.config.config_helpers import ClientConfigAdapter
from hummingbot.connector.markets_recorder import MarketsRecorder
from hummingbot.connector.test_support.mock_paper_exchange import MockPaperExchange
from hummingbot.connector.trading_rule import TradingRule
from hummingbot.core.clock import Clock, ClockMode
from hummingbot.core.data_type.common import OrderType, TradeType
from hummingbot.model.sql_connection_manager import SQLConnectionManager, SQLConnectionType
from hummingbot.strategy.strategy_v2_base import StrategyV2Base, StrategyV2ConfigBase
from hummingbot.strategy_v2.executors.position_executor.data_types import PositionExecutorConfig, TripleBarrierConfig
from hummingbot.strategy_v2.executors.position_executor.position_executor import PositionExecutor

from offline.harness import BINANCE_FEES, CONNECTOR, PaperExchange

D = Decimal
PAIR = "BTC-USDT"
RULES = {PAIR: TradingRule(PAIR, min_order_size=D("0.00001"), min_notional_size=D("5"),
                           min_price_increment=D("0.01"), min_base_amount_increment=D("0.00001"))}


class PlainConfig(StrategyV2ConfigBase):
    script_file_name: str = "position_executor_probe.py"


def _world(exchange: MockPaperExchange) -> tuple[StrategyV2Base, Clock, float]:
    sql = SQLConnectionManager(ClientConfigAdapter(ClientConfigMap()), SQLConnectionType.TRADE_FILLS,
                               db_path=":memory:")
    MarketsRecorder._shared_instance = MarketsRecorder(sql, [], "test.yml", "test", None)
    exchange.set_balance("USDT", 10_000)
    exchange.set_balance("BTC", 0)
    strategy = StrategyV2Base({CONNECTOR: exchange}, PlainConfig())
    now = float(int(time.time()))
    clock = Clock(ClockMode.BACKTEST, 1.0, now, now + 3600)
    clock.add_iterator(exchange)
    clock.add_iterator(strategy)
    exchange.set_balanced_order_book(PAIR, 100.0, 90.0, 110.0, 0.01, 10.0)
    clock.__enter__()
    clock.backtest_til(now)
    return strategy, clock, now


def _position(now: float, take_profit_order_type: OrderType) -> PositionExecutorConfig:
    """What the executor would hand over for a signal: 1 BTC at market, +1 % take profit, -2 % stop."""
    return PositionExecutorConfig(
        timestamp=now, trading_pair=PAIR, connector_name=CONNECTOR, side=TradeType.BUY, amount=D("1"),
        triple_barrier_config=TripleBarrierConfig(stop_loss=D("0.02"), take_profit=D("0.01"), time_limit=600,
                                                  open_order_type=OrderType.MARKET,
                                                  take_profit_order_type=take_profit_order_type))


def test_position_executor_cannot_be_built_on_the_paper_exchange() -> None:
    """Hummingbot's paper exchange class has no trading_rules, and PositionExecutor reads them when it is built."""

    async def scenario() -> None:
        strategy, clock, now = _world(MockPaperExchange(trade_fee_schema=BINANCE_FEES))
        try:
            with pytest.raises(AttributeError, match="trading_rules"):
                PositionExecutor(strategy, _position(now, OrderType.MARKET))
        finally:
            clock.__exit__(None, None, None)

    asyncio.run(scenario())


@pytest.mark.parametrize("take_profit_order_type", [OrderType.MARKET, OrderType.LIMIT])
def test_with_trading_rules_it_buys_but_never_sees_its_fill_so_no_barrier_ever_closes(
        take_profit_order_type: OrderType) -> None:
    """Given trading rules, PositionExecutor places its entry and the paper exchange fills it (the wallet holds the
    coin, less the fee taken in BTC), but its fill handler asks the connector's `_order_tracker`, which the paper
    exchange lacks: the executor believes nothing filled, and a price 2 % above the entry (take profit at 1 %)
    never closes the position. The coin sits in the wallet unmanaged."""

    async def scenario() -> None:
        exchange = PaperExchange(rules=RULES)
        strategy, clock, now = _world(exchange)
        try:
            executor = PositionExecutor(strategy, _position(now, take_profit_order_type), update_interval=0.05)
            executor.start()
            t = now
            for second in range(30):
                t += 1
                clock.backtest_til(t)
                await asyncio.sleep(0.05)
                if second == 5:
                    exchange.set_balanced_order_book(PAIR, 102.0, 92.0, 112.0, 0.01, 10.0)
            assert exchange.get_balance("BTC") == D("0.999")  # bought, the 0.1 % fee taken in the coin
            assert executor.open_filled_amount == 0  # yet the executor never learnt of the fill
            assert not executor.is_closed and executor.close_type is None  # +2 % and no take profit
            executor.stop()
        finally:
            clock.__exit__(None, None, None)

    asyncio.run(scenario())
