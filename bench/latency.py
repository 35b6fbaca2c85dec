"""Latency benchmark: signal emitted -> entry order created on the paper exchange, in real time.

The executor runs in Hummingbot's real Clock in REALTIME mode on MockPaperExchange, claiming from a real
Postgres queue over the direct transport. For each of 200 signals: emit it (the clock starts when
emit_signal has committed), then wait for the script to place its entry order. Measured with a 1 s and a
0.1 s tick. The price-stability window (seed 000: 5 s of sampling) is a deliberate wait, not latency, so
it is set to 0 here. Target: p95 <= one tick + 100 ms. Last line of output: one JSON object.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _support import migrated_database, percentile, postgres_server
from hummingbot.client.config.client_config_map import ClientConfigMap
from hummingbot.client.config.config_helpers import ClientConfigAdapter
from hummingbot.connector.markets_recorder import MarketsRecorder
from hummingbot.connector.test_support.mock_paper_exchange import MockPaperExchange
from hummingbot.core.clock import Clock, ClockMode
from hummingbot.model.sql_connection_manager import SQLConnectionManager, SQLConnectionType

from bridge.queue_client import PostgresQueue
from bridge.schemas import NewSignal
from controller.data.storage.postgres import PostgresStore
from hummingbot_scripts.signal_executor import SignalExecutor
from offline.harness import CONNECTOR, executor_config

SIGNALS = 200


class TimedExecutor(SignalExecutor):
    """The real script, noting when each entry order is placed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.placed_at: dict[str, float] = {}

    def _place(self, position: Any, purpose: str, *args: Any, **kwargs: Any) -> str | None:
        order_id = super()._place(position, purpose, *args, **kwargs)
        if purpose == "entry":
            self.placed_at[str(position.signal.id)] = time.perf_counter()
        return order_id


async def measure(url: str, tick: float) -> list[float]:
    sql = SQLConnectionManager(ClientConfigAdapter(ClientConfigMap()), SQLConnectionType.TRADE_FILLS,
                               db_path=":memory:")
    MarketsRecorder._shared_instance = MarketsRecorder(sql, [], "bench.yml", "bench", None)
    exchange = MockPaperExchange()
    exchange.set_balance("USDT", 1_000_000)
    exchange.set_balance("BTC", 0)
    exchange.set_balanced_order_book("BTC-USDT", 100.0, 90.0, 110.0, 0.01, 1000.0)
    config = executor_config(Path(tempfile.mkdtemp()) / "outbox.jsonl", consumer=f"bench-{tick}",
                             trading_pairs=["BTC-USDT"], stability_window_s=0, claim_interval_s=0.02,
                             heartbeat_interval_s=60, max_open_positions=SIGNALS + 10, max_open_per_pair=SIGNALS + 10)
    TimedExecutor.init_markets(config)
    strategy = TimedExecutor({CONNECTOR: exchange}, config, queue_client=PostgresQueue(url))
    clock = Clock(ClockMode.REALTIME, tick)
    clock.add_iterator(exchange)
    clock.add_iterator(strategy)
    store = PostgresStore(url)
    latencies = []
    with clock:
        task = asyncio.create_task(clock.run())
        await asyncio.sleep(2 * tick + 0.5)  # connectors ready, first ticks done
        try:
            for i in range(SIGNALS):
                await asyncio.sleep(random.uniform(0, tick))  # noqa: S311 - lands anywhere between two ticks
                signal_id = str(store.emit_signal(NewSignal(
                    strategy=f"bench-{i}", exchange="binance", symbol="BTC-USDT", side="buy", price=100.0,
                    quote_amount=10.0, take_profit_pct=50.0, confidence=0.5,
                    expires_at=datetime.now(UTC) + timedelta(minutes=5))))
                emitted = time.perf_counter()
                deadline = emitted + 10 * tick + 5
                while signal_id not in strategy.placed_at and time.perf_counter() < deadline:
                    await asyncio.sleep(0.002)
                if signal_id not in strategy.placed_at:
                    raise RuntimeError(f"signal {i} not executed within {deadline - emitted:.1f} s:\n"
                                       f"{strategy.format_status()}")
                latencies.append((strategy.placed_at[signal_id] - emitted) * 1000)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TypeError):  # the clock's loop ends untidily
                await task
            strategy.worker.stop()
            store.close()
    assert len(strategy.placed_at) == SIGNALS and not strategy.rejections
    return latencies


def main() -> None:
    figures: dict[str, Any] = {"benchmark": "latency", "signals": SIGNALS}
    with postgres_server() as admin_url:
        for tick in (1.0, 0.1):
            with migrated_database(admin_url) as url:
                latencies = asyncio.run(measure(url, tick))
            p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
            target = tick * 1000 + 100
            print(f"tick {tick:g} s: signal emitted -> entry order created over {SIGNALS} signals: "
                  f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(latencies):.0f} ms (target p95 <= {target:.0f} ms)")
            figures[f"tick_{tick:g}s"] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                                          "max_ms": round(max(latencies), 1), "target_p95_ms": target,
                                          "target_met": p95 <= target}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
