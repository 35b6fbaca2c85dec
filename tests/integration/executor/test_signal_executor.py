"""The signal executor in Hummingbot's real Clock on MockPaperExchange, against a real Postgres queue.

A signal is emitted by the controller's store, claimed by the script through the direct Postgres
transport (as the executor role), traded on the paper exchange, and every event lands in the database.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from bridge.queue_client import PostgresQueue
from bridge.resilience import RetryPolicy
from controller.data.storage.postgres import PostgresStore
from offline.harness import Harness, executor_config, start, stop
from tests.support.executor import NO_WAIT, emit, open_position, run, signal_row


def orders_of(url: str, signal_id: UUID) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute("select purpose, side, status, filled_amount from orders where signal_id = %s"
                            " order by created_at, purpose", (signal_id,)).fetchall()


# The barrier exits (take profit, stop loss, trailing, time limit) with Binance's fees and their P&L are in
# test_executor_real_exchange.py.


@pytest.mark.parametrize(
    ("gate", "setup", "reason"),
    [
        # expires while its price is being sampled (the queue itself never hands out an expired signal): claimed
        # within 5 s, decided 10 simulated seconds later at the earliest
        ("expired", {"signal": {"expires_at_s": 5}, "config": {"stability_window_s": 10}}, "expired at"),
        # claimed (the bot lists the pair) but the connector has no market for it
        ("pair", {"signal": {"symbol": "SOL-USDT"}, "config": {"trading_pairs": ["BTC-USDT", "SOL-USDT"]}},
         "SOL-USDT is not traded"),
        ("price_moved", {"signal": {"price": 103.0}}, "price moved"),
        # the price swings while the bot runs, before the signal exists: the rolling window still holds the swing
        ("unstable", {"swing": [100.0, 101.0, 100.0]}, "within 3 s"),
        ("spread", {"spread_step": 1.0}, "spread"),
        ("balance", {"balances": {"USDT": 1, "BTC": 0, "ETH": 0}}, "balance too small"),
        # a second signal for a pair that already has a position (another strategy's)
        ("max_positions", {"config": {"max_open_per_pair": 1}, "second": True}, "max open positions for BTC-USDT"),
    ],
)
def test_each_gate_rejects_with_its_reason_and_places_no_order(store: PostgresStore, migrated_db: str, outbox: Path,
                                                               gate: str, setup: dict[str, Any], reason: str) -> None:
    signal_args = dict(setup.get("signal", {}))
    if "expires_at_s" in signal_args:
        signal_args["expires_at"] = datetime.now(UTC) + timedelta(seconds=signal_args.pop("expires_at_s"))
    first = emit(store, strategy="swing") if setup.get("second") else None
    signal_id = emit(store, **signal_args) if "swing" not in setup else None

    async def scenario() -> Harness:
        nonlocal signal_id
        config = executor_config(outbox, **setup.get("config", {}))
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT), balances=setup.get("balances"))
        if "spread_step" in setup:
            harness.book("BTC-USDT", 100.0, spread_step=setup["spread_step"])
        try:
            if "swing" in setup:
                for mid in setup["swing"]:
                    harness.book("BTC-USDT", mid)
                    await harness.step(1)
                signal_id = emit(store, **signal_args)
            await harness.until(lambda: signal_row(migrated_db, signal_id)["status"] == "rejected")
            return harness
        finally:
            stop(harness)

    harness = run(scenario())
    row = signal_row(migrated_db, signal_id)
    assert reason in row["reject_reason"]
    assert harness.strategy.rejections[gate] == 1
    assert orders_of(migrated_db, signal_id) == []
    if first is not None:  # the position the second signal ran into goes on
        assert signal_row(migrated_db, first)["status"] in ("claimed", "executing")


def test_the_script_loads_through_hummingbots_own_loader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `start --v2 conf_signal_executor.yml` does: import scripts.signal_executor, find the strategy and
    config classes, build the config from the YAML in conf/scripts, and set the markets."""
    import shutil
    import sys

    from hummingbot.client.config.client_config_map import ClientConfigMap
    from hummingbot.client.config.config_helpers import ClientConfigAdapter
    from hummingbot.core.trading_core import TradingCore

    from controller.config import PROJECT_ROOT

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(PROJECT_ROOT / "hummingbot_scripts" / "signal_executor.py", scripts / "signal_executor.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "scripts", raising=False)
    monkeypatch.delitem(sys.modules, "scripts.signal_executor", raising=False)

    # TradingCore starts background tasks (the gateway monitor) on the thread's event loop, as in the app; an
    # earlier asyncio.run in this process leaves none, so give it one
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        core = TradingCore(ClientConfigAdapter(ClientConfigMap()), scripts_path=scripts)
        core._config_source = str(PROJECT_ROOT / "conf" / "hummingbot" / "conf_signal_executor.yml")
        strategy_class, config = core.load_v2_class("signal_executor")
    finally:
        asyncio.set_event_loop(None)
        loop.close()

    assert strategy_class.__name__ == "SignalExecutor"
    assert type(config).__name__ == "SignalExecutorConfig"
    assert config.connector == "binance_paper_trade" and config.trading_pairs == ["BTC-USDT", "ETH-USDT"]
    assert config.max_instability_pct == Decimal("0.5") and config.stale_order_s == 600
    assert strategy_class.markets == {"binance_paper_trade": {"BTC-USDT", "ETH-USDT"}}


def test_two_bots_on_one_queue_execute_each_signal_once(store: PostgresStore, migrated_db: str,
                                                        tmp_path: Path) -> None:
    signal_ids = [emit(store, "BTC-USDT", strategy=f"s{i}") for i in range(3)]
    signal_ids += [emit(store, "ETH-USDT", price=50.0, strategy=f"s{i}") for i in range(3)]

    async def scenario() -> tuple[Harness, Harness]:
        bots = [start(executor_config(tmp_path / f"outbox-{name}.jsonl", consumer=name, max_open_per_pair=3),
                      PostgresQueue(migrated_db, retry=NO_WAIT)) for name in ("bot-a", "bot-b")]
        try:
            while sum(b.strategy.worker.stats["claimed"] for b in bots) < len(signal_ids):
                for bot in bots:
                    await bot.step(1, real_pause=0.01)
            for bot in bots:
                await bot.until(lambda b=bot: b.strategy.worker.claimed.empty() and not b.strategy.pending and all(
                    p.entry_amount > 0 for p in b.strategy.positions.values()))
                await bot.drained()
            return bots[0], bots[1]
        finally:
            for bot in bots:
                stop(bot)

    bot_a, bot_b = run(scenario())
    with psycopg.connect(migrated_db) as conn:
        entries = conn.execute("select signal_id, count(*) from orders where purpose = 'entry' group by 1").fetchall()
        claimed_by = dict(conn.execute("select id, claimed_by from signals").fetchall())
    assert sorted(e[0] for e in entries) == sorted(signal_ids)
    assert all(count == 1 for _, count in entries)  # one entry order per signal, across both bots
    held_a, held_b = set(bot_a.strategy.positions), set(bot_b.strategy.positions)
    assert held_a.isdisjoint(held_b) and held_a | held_b == set(signal_ids)
    assert {s: claimed_by[s] for s in held_a} == dict.fromkeys(held_a, "bot-a")
    assert {s: claimed_by[s] for s in held_b} == dict.fromkeys(held_b, "bot-b")


def table_rows(url: str) -> dict[str, list[tuple]]:
    """What a run left in orders, fills and trades, without the ids and times that differ between runs."""
    with psycopg.connect(url) as conn:
        return {
            "orders": conn.execute("select purpose, side, order_type, status, amount, filled_amount from orders"
                                   " order by purpose").fetchall(),
            "fills": conn.execute("select o.purpose, f.price, f.amount, f.fee_quote from fills f"
                                  " join orders o using (client_order_id) order by o.purpose").fetchall(),
            "trades": conn.execute("select exit_reason, amount, entry_price, exit_price, fees_quote, pnl_quote"
                                   " from trades").fetchall(),
            "signals": conn.execute("select status from signals").fetchall(),
        }


def outbox_events(harness: Harness) -> list[tuple[str, str | None, str | None]]:
    """The undelivered outbox records as (kind, report type or ack status, order purpose)."""
    records = list(harness.strategy.outbox._pending)
    return [(r["kind"], r["event"]["type"] if r["kind"] == "report" else r["status"],
             r["event"].get("purpose") if r["kind"] == "report" else None) for r in records]


# What the take-profit exit leaves for the queue, in order: the exit order's life, the trade, the signal's ack.
EXIT_EVENTS = [("report", "order_created", "exit"), ("report", "order_filled", "exit"),
               ("report", "order_completed", "exit"), ("report", "position_closed", None), ("ack", "closed", None)]


def test_a_queue_outage_during_a_position_loses_nothing_and_doubles_nothing(pg_server: Any, tmp_path: Path) -> None:
    """The same trade twice: once with the queue up, once with the network to it cut for 60 simulated seconds
    while the position exits. In the outage the bot is killed and restarted while the queue is still down:
    the restarted bot holds exactly the exit's events, claims and restores nothing until they are delivered,
    then delivers each once; both databases end with the same rows."""
    from controller.data.migrate import migrate
    from tests.support.tcp_proxy import TcpProxy

    async def trade(url: str, outbox: Path, outage: TcpProxy | None) -> None:
        harness = start(executor_config(outbox), PostgresQueue(queue_url, retry=NO_WAIT, timeout_s=1))
        try:
            await open_position(harness, url, signal_id)
            if outage:
                outage.cut()
            harness.book("BTC-USDT", 103.5)
            await harness.step(60)  # the take profit fills while the queue is unreachable
            assert signal_id not in harness.strategy.positions
            if outage:
                assert outbox_events(harness) == EXIT_EVENTS
                assert harness.strategy.worker.breaker.state.value == "open"
                stop(harness)  # killed during the outage: only the outbox file remains
                harness = start(executor_config(outbox), PostgresQueue(queue_url, retry=NO_WAIT, timeout_s=1),
                                exchange=harness.exchange)
                await harness.step(20)
                assert outbox_events(harness) == EXIT_EVENTS  # replayed from the file, nothing lost or added
                assert harness.strategy.worker.stats["delivered"] == 0
                assert not harness.strategy.worker.restore_done.is_set() and not harness.strategy.positions
                outage.restore()
            await harness.drained()
            await harness.step(5)  # restored after the replay: the closed position is not brought back
            await harness.drained()
            if outage:
                worker = harness.strategy.worker
                assert worker.stats["delivered"] == len(EXIT_EVENTS) and worker.stats["refused"] == 0
                assert worker.restore_done.is_set() and not harness.strategy.positions
        finally:
            stop(harness)

    results = []
    for name, with_outage in (("steady", False), ("outage", True)):
        url = pg_server.create_database()
        try:
            with psycopg.connect(url) as conn:
                migrate(conn)
            store = PostgresStore(url)
            signal_id = emit(store)
            store.close()
            port = psycopg.conninfo.conninfo_to_dict(url)["port"]
            proxy = TcpProxy(int(port))
            queue_url = psycopg.conninfo.make_conninfo(url, port=proxy.port)
            try:
                run(trade(url, tmp_path / f"{name}.jsonl", proxy if with_outage else None))
            finally:
                proxy.close()
            results.append(table_rows(url))
        finally:
            pg_server.drop_database(url)

    steady, outage = results
    assert steady["trades"] and steady["signals"] == [("closed",)]
    assert outage == steady


def test_a_restart_mid_position_closes_the_position_once(store: PostgresStore, migrated_db: str,
                                                         outbox: Path) -> None:
    signal_id = emit(store)

    async def scenario() -> Harness:
        first = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        await open_position(first, migrated_db, signal_id)
        stop(first)  # the bot goes away with the position open; the exchange keeps its balances

        second = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT), exchange=first.exchange)
        try:
            await second.until(lambda: signal_id in second.strategy.positions)
            restored = second.strategy.positions[signal_id]
            assert restored.entry_amount > 0 and restored.opened_at is not None
            second.book("BTC-USDT", 103.5)
            await second.until(lambda: signal_id not in second.strategy.positions)
            await second.drained()
            await second.step(5)  # a few more ticks: nothing is claimed or sold again
            await second.drained()
            return second
        finally:
            stop(second)

    run(scenario())
    with psycopg.connect(migrated_db) as conn:
        trades = conn.execute("select exit_reason from trades where signal_id = %s", (signal_id,)).fetchall()
        orders = conn.execute("select purpose, count(*) from orders where signal_id = %s group by 1 order by 1",
                              (signal_id,)).fetchall()
    assert trades == [("take_profit",)]
    assert orders == [("entry", 1), ("exit", 1)]
    assert signal_row(migrated_db, signal_id)["status"] == "closed"


@pytest.mark.parametrize("action", ["complete", "cancel"])
def test_a_stale_partial_fill_is_completed_or_cancelled_per_config(store: PostgresStore, migrated_db: str,
                                                                   outbox: Path, action: str) -> None:
    """MockPaperExchange fills a resting limit in full, never in part, so the partial fill is delivered to the
    script as the connector would deliver it: a real OrderFilledEvent for half of a resting entry."""
    from hummingbot.core.data_type.common import OrderType, TradeType
    from hummingbot.core.data_type.trade_fee import AddedToCostTradeFee
    from hummingbot.core.event.events import OrderFilledEvent

    signal_id = emit(store)

    async def scenario() -> tuple[Harness, Decimal]:
        harness = start(executor_config(outbox, entry_order_type="limit", partial_fill_max_age_s=20,
                                        partial_fill_action=action, limit_timeout_s=600, health_check_interval_s=5),
                        PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await harness.until(lambda: signal_id in harness.strategy.positions)
            position = harness.strategy.positions[signal_id]
            [entry] = position.orders.values()
            assert entry.price is not None and not entry.done  # resting at the bid
            half = entry.amount / 2
            harness.strategy.did_fill_order(OrderFilledEvent(
                harness.now, entry.order_id, "BTC-USDT", TradeType.BUY, OrderType.LIMIT, entry.price, half,
                AddedToCostTradeFee(), exchange_trade_id="partial-1"))
            await harness.step(30)  # past the maximum age of a partial fill
            await harness.until(lambda: entry.done)
            await harness.step(3)
            await harness.drained()
            return harness, entry.amount
        finally:
            stop(harness)

    harness, ordered = run(scenario())
    position = harness.strategy.positions[signal_id]
    with psycopg.connect(migrated_db) as conn:
        entries = conn.execute("select order_type, status, filled_amount from orders where signal_id = %s"
                               " and purpose = 'entry' order by created_at", (signal_id,)).fetchall()
    assert harness.strategy.health["partial_fills_handled"] == 1
    assert entries[0][:2] == ("limit", "cancelled") and entries[0][2] > 0
    if action == "complete":  # the rest bought at market: the position has what the signal asked for
        assert entries[1][:2] == ("market", "filled")
        assert position.entry_amount == pytest.approx(ordered)
    else:
        assert len(entries) == 1
        assert position.entry_amount == entries[0][2]  # the position keeps what filled, exits size to it


def test_a_queue_that_never_answers_does_not_delay_the_clock(outbox: Path) -> None:
    """The worker's queue call hangs (a server that accepts and never answers, 120 s timeout): every tick
    still runs while that one call is in flight. Measured in ticks and calls, not seconds: had a tick waited
    for the queue, the call would have ended (timed out, counted, retried on a new connection) before the
    ticks did, and the test would fail on the counts (after a long wait), however loaded the machine."""
    from bridge.queue_client import PostgrestQueue
    from tests.support.clock import eventually
    from tests.support.net import BlackHole

    hole = BlackHole()
    one_try = RetryPolicy(base_s=0.0, cap_s=0.0, tries=1)

    async def scenario() -> tuple[float, int, list[str], bool, str]:
        harness = start(executor_config(outbox),
                        PostgrestQueue(f"http://127.0.0.1:{hole.port}", "key", timeout_s=120, retry=one_try))
        try:
            await eventually(lambda: len(hole.accepted) == 1, "the worker calls the queue")
            before = harness.strategy.current_timestamp
            await harness.step(20)
            ticked = harness.strategy.current_timestamp - before
            errors = sorted(k for k in harness.strategy.worker.stats if k.startswith("errors_"))
            in_flight = harness.strategy.worker._thread.is_alive()
            return ticked, len(hole.accepted), errors, in_flight, harness.strategy.format_status()
        finally:
            hole.close()  # ends the hanging call: the worker sees a closed connection and stops
            stop(harness)

    try:
        ticked, connections, errors, in_flight, status = run(scenario())
    finally:
        hole.close()
    assert ticked == 20  # every tick ran
    assert (connections, errors, in_flight) == (1, [], True)  # while the one call was still unanswered
    assert status.startswith("queue: breaker closed") and "open positions (0)" in status
    assert "rejections by gate: none" in status and "order health: nothing to do" in status


def test_format_status_shows_positions_fates_and_rejections(store: PostgresStore, migrated_db: str,
                                                            outbox: Path) -> None:
    signal_id = emit(store)
    rejected = emit(store, "ETH-USDT", price=60.0)  # the book is at 50: price moved

    async def scenario() -> str:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await open_position(harness, migrated_db, signal_id)
            await harness.until(lambda: signal_row(migrated_db, rejected)["status"] == "rejected")
            return harness.strategy.format_status()
        finally:
            stop(harness)

    status = run(scenario())
    assert "open positions (1):" in status and "BTC-USDT dca" in status and "unrealised" in status
    assert f"{str(signal_id)[:8]} BTC-USDT executing" in status
    assert f"{str(rejected)[:8]} ETH-USDT rejected: price moved" in status
    assert "rejections by gate: price_moved 1" in status


def test_a_partial_fill_on_the_shipped_config_is_completed_after_five_minutes(store: PostgresStore, migrated_db: str,
                                                                              outbox: Path) -> None:
    """The shipped conf_signal_executor.yml as it is (only the connector, the queue and limit entries changed, a
    market entry never rests): a half-filled resting entry is neither abandoned at limit_timeout_s (60 s) nor
    repriced as stale; at partial_fill_max_age_s (300 s) the rest is bought at market, once."""
    import yaml
    from hummingbot.core.data_type.common import OrderType, TradeType
    from hummingbot.core.data_type.trade_fee import AddedToCostTradeFee
    from hummingbot.core.event.events import OrderFilledEvent

    from controller.config import PROJECT_ROOT
    from hummingbot_scripts.signal_executor import SignalExecutorConfig
    from offline.harness import CONNECTOR

    shipped = yaml.safe_load((PROJECT_ROOT / "conf" / "hummingbot" / "conf_signal_executor.yml").read_text())
    config = SignalExecutorConfig(**{**shipped, "connector": CONNECTOR, "queue_transport": "postgres",
                                     "outbox_path": str(outbox), "entry_order_type": "limit"})
    assert (config.limit_timeout_s, config.partial_fill_max_age_s, config.stale_order_s) == (60, 300, 600)
    signal_id = emit(store)

    async def scenario() -> tuple[Harness, Decimal]:
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await harness.until(lambda: signal_id in harness.strategy.positions)
            position = harness.strategy.positions[signal_id]
            [entry] = position.orders.values()
            assert entry.price is not None and not entry.done  # resting at the bid
            half = entry.amount / 2
            harness.strategy.did_fill_order(OrderFilledEvent(
                harness.now, entry.order_id, "BTC-USDT", TradeType.BUY, OrderType.LIMIT, entry.price, half,
                AddedToCostTradeFee(), exchange_trade_id="partial-1"))
            await harness.step(270)  # past limit_timeout_s, short of partial_fill_max_age_s
            assert not entry.done and entry.cancel_sent_at is None and len(position.orders) == 1
            await harness.until(lambda: entry.done and not position.open_orders("entry"))
            await harness.step(3)
            await harness.drained()
            return harness, entry.amount
        finally:
            stop(harness)

    harness, ordered = run(scenario())
    position = harness.strategy.positions[signal_id]
    assert harness.strategy.health["partial_fills_handled"] == 1
    assert harness.strategy.health["stale_cancelled"] == 0
    with psycopg.connect(migrated_db) as conn:
        entries = conn.execute("select order_type, status, filled_amount from orders where signal_id = %s"
                               " and purpose = 'entry' order by created_at", (signal_id,)).fetchall()
    assert [e[:2] for e in entries] == [("limit", "cancelled"), ("market", "filled")]
    assert entries[0][2] == pytest.approx(ordered / 2)
    assert position.entry_amount == pytest.approx(ordered)  # what the signal asked for, bought once
