"""Run the signal executor inside Hummingbot's real classes: its Clock (backtest mode) and MockPaperExchange.

Used by the tests and by the offline demo.

The recipe is REFERENCE.md's. Simulated time starts at the wall clock's now, so the signals' expiry (set
by the database in wall time) means the same to the script as in production. The queue worker thread
runs in real time; `step` gives it a moment of real time between ticks.
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

from hummingbot.client.config.client_config_map import ClientConfigMap
from hummingbot.client.config.config_helpers import ClientConfigAdapter
from hummingbot.connector.markets_recorder import MarketsRecorder
from hummingbot.connector.test_support.mock_paper_exchange import MockPaperExchange
from hummingbot.connector.trading_rule import TradingRule
from hummingbot.core.clock import Clock, ClockMode
from hummingbot.core.data_type.trade_fee import TradeFeeSchema
from hummingbot.model.sql_connection_manager import SQLConnectionManager, SQLConnectionType

from bridge.path import Point
from bridge.queue_client import SignalQueue
from hummingbot_scripts.signal_executor import SignalExecutor, SignalExecutorConfig

CONNECTOR = "mock"

# How long `until` and `drained` wait, in real time, before they fail. Only a failing wait ever lasts this
# long (a passing one returns as soon as its condition holds), so it is sized for a loaded 2-core machine.
WAIT_S = 120.0

# Binance's spot schema: 0.1 % maker and taker, the buy fee taken from the bought coin.
BINANCE_FEES = TradeFeeSchema(maker_percent_fee_decimal=Decimal("0.001"), taker_percent_fee_decimal=Decimal("0.001"),
                              buy_percent_fee_deducted_from_returns=True)


class PaperExchange(MockPaperExchange):
    """Hummingbot's MockPaperExchange made less kind: it can be not ready, can publish trading rules (minimum
    size and notional) and can confirm cancels late or never, as real connectors do.

    `cancels`: "instant" (the mock's own behaviour), "late" (the order is cancelled, and its event sent, only
    when `confirm_cancels()` is called) or "never" (cancel requests are recorded and ignored).
    """

    def __init__(self, trade_fee_schema: TradeFeeSchema | None = BINANCE_FEES, ready: bool = True,
                 rules: dict[str, TradingRule] | None = None, cancels: str = "instant") -> None:
        super().__init__(trade_fee_schema=trade_fee_schema)
        self.is_ready = ready
        self.trading_rules: dict[str, TradingRule] = dict(rules or {})
        self.cancels = cancels
        self.cancel_requests: list[str] = []
        self._held_cancels: list[tuple[str, str]] = []
        self.stale_balances: dict[str, Decimal] = {}  # asset -> what get_available_balance reports instead

    def get_available_balance(self, currency: str) -> Decimal:
        if currency in self.stale_balances:
            return self.stale_balances[currency]
        return super().get_available_balance(currency)

    @property
    def ready(self) -> bool:
        return self.is_ready

    def cancel(self, trading_pair: str, client_order_id: str) -> str:
        self.cancel_requests.append(client_order_id)
        if self.cancels == "instant":
            return super().cancel(trading_pair, client_order_id)
        if self.cancels == "late":
            self._held_cancels.append((trading_pair, client_order_id))
        return client_order_id

    def confirm_cancels(self) -> None:
        held, self._held_cancels = self._held_cancels, []
        for pair, order_id in held:
            super().cancel(pair, order_id)


def executor_config(outbox: Path, **overrides: Any) -> SignalExecutorConfig:
    """A config for tests: fast claims and health checks, a short stability window by default."""
    values: dict[str, Any] = {
        "connector": CONNECTOR, "exchange": "binance", "trading_pairs": ["BTC-USDT", "ETH-USDT"],
        "consumer": "bot-a", "claim_interval_s": 0.05, "heartbeat_interval_s": 0.5,
        "outbox_path": str(outbox), "stability_window_s": 3, "health_check_interval_s": 5,
    }
    values.update(overrides)
    return SignalExecutorConfig(**values)


@dataclass
class Harness:
    exchange: MockPaperExchange
    strategy: SignalExecutor
    clock: Clock
    now: float
    tick_size: float = 1.0
    max_step_pct: float = 0.0  # the largest book move between two ticks of `walk`, within one path
    stretched_s: float = 0.0  # simulated seconds `walk` added so that no tick moved a book too far

    def book(self, pair: str, mid: float, spread_step: float = 0.01, volume: float = 10.0,
             width: float = 0.1) -> None:
        """A book around `mid` whose levels are `spread_step` apart (in price units), `width` of the mid deep
        on each side."""
        self.exchange.set_balanced_order_book(pair, mid, mid * (1 - width), mid * (1 + width), spread_step, volume)

    async def walk(self, paths: Mapping[str, Sequence[Point]], seconds: float, real_pause: float = 0.02,
                   spread_pct: float = 0.02, volume: float = 10.0, width: float = 0.01,
                   max_step_pct: float = 0.1) -> None:
        """Advance `seconds` of simulated time, one tick at a time, moving each pair's book along its market
        path (`bridge.path` points whose times run over the same `seconds` from now): at every tick the mid
        is the path's price at that moment (linear between two points of one candle; a candle's open is a
        jump), so a wick, a level crossed and a 5-second move reach the executor as they would live.

        No tick moves a book by more than `max_step_pct` along a path: where a path moves faster than that
        per tick (a wide candle), the walk takes more ticks than `seconds` holds (the candle lasts longer on
        the executor's clock; `stretched_s` adds up the extra). A limit order rests until the book crosses
        it; a market order fills against the book of the moment."""
        scale = max([1.0] + [_steps_per_s(points, max_step_pct) * self.tick_size for points in paths.values()])
        span = seconds * scale
        self.stretched_s += span - seconds
        start = self.now
        end = start + span
        last: dict[str, float] = {}
        while self.now < end:
            self.now += self.tick_size
            for pair, points in paths.items():
                mid = price_at(points, (self.now - start) / scale)
                if mid is None or last.get(pair) == mid:
                    continue
                if pair in last and last[pair] > 0:
                    self.max_step_pct = max(self.max_step_pct, abs(mid / last[pair] - 1) * 100)
                last[pair] = mid
                self.book(pair, mid, spread_step=mid * spread_pct / 100, volume=volume, width=width)
            self.clock.backtest_til(self.now)
            await asyncio.sleep(real_pause)

    async def step(self, seconds: float = 1.0, real_pause: float = 0.02) -> None:
        """Advance simulated time by `seconds`, one tick at a time, letting the worker thread run."""
        end = self.now + seconds
        while self.now < end:
            self.now += self.tick_size
            self.clock.backtest_til(self.now)
            await asyncio.sleep(real_pause)

    async def until(self, condition: Callable[[], bool], timeout_s: float = WAIT_S, tick: bool = True) -> None:
        """Tick (or just wait) until `condition` holds, failing after `timeout_s` of real time."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                status = self.strategy.format_status()
                raise AssertionError(f"condition not met within {timeout_s} s; status:\n{status}")
            if tick:
                await self.step(self.tick_size)
            else:
                await asyncio.sleep(0.02)

    async def drained(self, timeout_s: float = WAIT_S) -> None:
        """Wait until every ack and report has been delivered."""
        await self.until(lambda: len(self.strategy.outbox) == 0, timeout_s, tick=False)


def _steps_per_s(points: Sequence[Point], max_step_pct: float) -> float:
    """Steps of at most `max_step_pct` per second of path time that the fastest continuous segment needs."""
    worst = 0.0
    for a, b in pairwise(points):
        if not b.continuous or b.time_s <= a.time_s or min(a.price, b.price) <= 0:
            continue
        move_pct = abs(b.price / a.price - 1) * 100
        worst = max(worst, move_pct / max_step_pct / (b.time_s - a.time_s))
    return worst


def price_at(points: Sequence[Point], t: float) -> float | None:
    """The path's price `t` seconds in (point times relative to the walk's start): linear between a point
    and the next continuous one, the point itself before a jump; None before the first point."""
    times = [p.time_s for p in points]
    i = bisect_right(times, t) - 1
    if i < 0:
        return None
    if i + 1 >= len(points) or not points[i + 1].continuous:
        return points[i].price
    a, b = points[i], points[i + 1]
    span = b.time_s - a.time_s
    return b.price if span <= 0 else a.price + (b.price - a.price) * (t - a.time_s) / span


def start(config: SignalExecutorConfig, queue_client: SignalQueue, balances: dict[str, float] | None = None,
          books: dict[str, float] | None = None, exchange: MockPaperExchange | None = None,
          tick_size: float = 1.0, rules: dict[str, TradingRule] | None = None) -> Harness:
    """Build the exchange, the strategy and the clock; call inside a running event loop.

    The default exchange is a `PaperExchange` with Binance's fees and no base coin: what a new user's
    `binance_paper_trade` account looks like."""
    sql = SQLConnectionManager(ClientConfigAdapter(ClientConfigMap()), SQLConnectionType.TRADE_FILLS,
                               db_path=":memory:")
    MarketsRecorder._shared_instance = MarketsRecorder(sql, [], "test.yml", "test", None)
    if exchange is None:
        exchange = PaperExchange(rules=rules)
        for asset, amount in (balances or {"USDT": 10_000, "BTC": 0, "ETH": 0}).items():
            exchange.set_balance(asset, amount)
    SignalExecutor.init_markets(config)
    strategy = SignalExecutor({CONNECTOR: exchange}, config, queue_client=queue_client)
    now = float(int(time.time()))
    clock = Clock(ClockMode.BACKTEST, tick_size, now, now + 30 * 24 * 3600)
    clock.add_iterator(exchange)
    clock.add_iterator(strategy)
    harness = Harness(exchange, strategy, clock, now, tick_size)
    for pair, mid in (books or {"BTC-USDT": 100.0, "ETH-USDT": 50.0}).items():
        harness.book(pair, mid)
    clock.__enter__()
    clock.backtest_til(now)
    # one tick more, as Hummingbot's clock would have done by now: the strategy sees its connectors ready
    # (when they are) and its worker starts claiming
    harness.now += tick_size
    clock.backtest_til(harness.now)
    return harness


def stop(harness: Harness) -> None:
    harness.strategy.worker.stop()
    harness.strategy.worker.join()
    harness.clock.__exit__(None, None, None)


def decimal(value: float | str) -> Decimal:
    return Decimal(str(value))
