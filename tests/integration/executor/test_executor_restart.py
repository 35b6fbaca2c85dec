"""The executor across a restart and a stop (issue 10, items 3 and 9), on Hummingbot's real Clock."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from bridge.queue_client import PostgresQueue, PostgrestQueue
from bridge.resilience import RetryPolicy
from controller.data.storage.postgres import PostgresStore
from offline.harness import Harness, executor_config, start, stop
from tests.support.executor import NO_WAIT, StatusExchange, emit, open_position, run, signal_row, trade_row


def test_a_resting_entry_survives_a_restart_and_its_later_fill_reaches_the_position(
        store: PostgresStore, migrated_db: str, tmp_path: Path) -> None:
    """The bot dies with its limit entry resting on the exchange. The restarted bot's own order tracker is
    empty, so it asks the connector: the order is live, it is kept (not reported lost), and when it fills the
    position is managed to its take profit, once."""
    signal_id = emit(store)

    async def scenario() -> Harness:
        config = executor_config(tmp_path / "first.jsonl", entry_order_type="limit", limit_timeout_s=500,
                                 stale_order_s=600, lost_order_grace_s=5, health_check_interval_s=2)
        first = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        await first.until(lambda: signal_id in first.strategy.positions)
        await first.drained()
        assert len(first.exchange.limit_orders) == 1  # resting at the bid
        stop(first)  # gone, with the order resting

        second = start(config.model_copy(update={"outbox_path": str(tmp_path / "second.jsonl")}),
                       PostgresQueue(migrated_db, retry=NO_WAIT), exchange=first.exchange)
        try:
            await second.until(lambda: signal_id in second.strategy.positions)
            await second.step(20)  # several health checks past the lost-order grace
            position = second.strategy.positions[signal_id]
            assert [o.done for o in position.orders.values()] == [False]
            second.book("BTC-USDT", 99.9)  # the ask falls through the resting bid: it fills
            await second.until(lambda: position.entry_amount > 0)
            second.book("BTC-USDT", 103.5)
            await second.until(lambda: signal_id not in second.strategy.positions)
            await second.drained()
            return second
        finally:
            stop(second)

    second = run(scenario())
    assert second.strategy.health["lost_reconciled"] == 0
    with psycopg.connect(migrated_db) as conn:
        orders = conn.execute("select purpose, order_type, status from orders where signal_id = %s"
                              " order by created_at", (signal_id,)).fetchall()
    assert orders == [("entry", "limit", "filled"), ("exit", "market", "filled")]
    assert trade_row(migrated_db, signal_id)["exit_reason"] == "take_profit"
    assert signal_row(migrated_db, signal_id)["status"] == "closed"


def test_on_stop_returns_while_the_queue_call_is_still_hanging(tmp_path: Path) -> None:
    """Hummingbot awaits on_stop on its event loop: it must not wait for a queue call that hangs (here a
    server that never answers, 120 s timeout). The worker ends by itself once that call ends (the server
    goes away) and closes its client."""
    from tests.support.clock import eventually
    from tests.support.net import BlackHole

    hole = BlackHole()
    ONE_TRY = RetryPolicy(base_s=0.0, cap_s=0.0, tries=1)

    async def scenario() -> tuple[bool, bool]:
        harness = start(executor_config(tmp_path / "outbox.jsonl"),
                        PostgrestQueue(f"http://127.0.0.1:{hole.port}", "key", timeout_s=120, retry=ONE_TRY))
        await harness.step(2)
        await eventually(lambda: bool(hole.accepted), "the worker calls the queue")  # a call that will hang
        await harness.strategy.on_stop()
        hanging_after_stop = harness.strategy.worker._thread.is_alive()
        hole.close()  # the call ends (connection closed); the worker, asked to stop, ends without a new call
        harness.strategy.worker.join(120)
        ended = not harness.strategy.worker._thread.is_alive()
        harness.clock.__exit__(None, None, None)
        return hanging_after_stop, ended

    try:
        hanging_after_stop, ended = run(scenario())
    finally:
        hole.close()
    assert hanging_after_stop  # on_stop did not wait for it
    assert ended  # and the worker still finished by itself


def test_the_real_start_path_on_binance_paper_trade_without_network_claims_nothing_and_stops_cleanly(
        store: PostgresStore, migrated_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `start --v2 conf_signal_executor.yml` does, through Hummingbot's TradingCore and the shipped YAML,
    on binance_paper_trade with no network (DNS fails here): the connector never becomes ready, so nothing is
    claimed from the queue (PostgREST, as shipped), the status says why, and the bot stops without waiting."""
    import shutil
    import sys

    from hummingbot.client.config.client_config_map import ClientConfigMap
    from hummingbot.client.config.config_helpers import ClientConfigAdapter
    from hummingbot.core.trading_core import TradingCore

    from controller.config_base import PROJECT_ROOT
    from tests.support.clock import eventually
    from tests.support.postgrest_standin import PostgrestStandin, make_jwt

    signal_id = emit(store)
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(PROJECT_ROOT / "hummingbot_scripts" / "signal_executor.py", scripts / "signal_executor.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "scripts", raising=False)
    monkeypatch.delitem(sys.modules, "scripts.signal_executor", raising=False)
    monkeypatch.chdir(tmp_path)  # the outbox's relative path lands here
    conf = tmp_path / "conf_signal_executor.yml"  # Hummingbot writes its trades database beside the config
    shutil.copy(PROJECT_ROOT / "conf" / "hummingbot" / "conf_signal_executor.yml", conf)

    secret = "real-start-path-secret-at-least-32-bytes"
    with PostgrestStandin(migrated_db, secret) as standin:
        monkeypatch.setenv("QUEUE_URL", standin.base_url)
        monkeypatch.setenv("SUPABASE_ANON_KEY", make_jwt(secret, "anon"))
        monkeypatch.setenv("EXECUTOR_JWT", make_jwt(secret, "executor"))

        async def scenario() -> tuple[bool, str, bool, bool]:
            core = TradingCore(ClientConfigAdapter(ClientConfigMap()), scripts_path=scripts)
            started = await core.start_strategy("signal_executor", str(conf), "conf_signal_executor.yml")
            strategy = core.strategy
            # several real ticks of the shipped 1 s clock: polled, as a loaded machine may tick late
            await eventually(lambda: strategy.worker.started, "the clock's first tick starts the worker")
            first = strategy.current_timestamp
            await eventually(lambda: strategy.current_timestamp >= first + 3, "three more ticks")
            status = strategy.format_status()
            worker_started = strategy.worker.started
            await core.stop_strategy()
            await strategy.on_stop()
            strategy.worker.join(20)
            ended = not strategy.worker._thread.is_alive()
            with contextlib.suppress(Exception):
                await core.shutdown(skip_order_cancellation=True)
            return started, status, worker_started, ended

        started, status, worker_started, ended = run(scenario())

    assert started and worker_started
    assert status.startswith("waiting for binance_paper_trade to be ready: no signal is claimed until then")
    row = signal_row(migrated_db, signal_id)
    assert (row["status"], row["claim_count"]) == ("new", 0)
    assert ended


@pytest.mark.parametrize("exchange_says", ["filled while the bot was down", "no such order"])
def test_a_restarted_bot_asks_the_exchange_about_an_order_its_connector_forgot(
        store: PostgresStore, migrated_db: str, tmp_path: Path, exchange_says: str) -> None:
    """The bot dies with its limit entry resting; the restarted bot's connector has no record of it (its state
    was lost). The script hands the order to the connector's tracker, which asks the exchange: a fill made
    while the bot was down reaches the position (managed to its take profit, once), and an order the exchange
    does not know fails, which frees the signal. Never reported lost without asking."""
    signal_id = emit(store)

    async def scenario() -> Harness:
        config = executor_config(tmp_path / "first.jsonl", entry_order_type="limit", limit_timeout_s=500,
                                 stale_order_s=600, lost_order_grace_s=5, health_check_interval_s=2)
        first = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        await first.until(lambda: signal_id in first.strategy.positions)
        await first.drained()
        (entry_id,) = first.strategy.positions[signal_id].orders
        stop(first)

        exchange = StatusExchange()
        exchange.set_balance("USDT", 10_000)
        second = start(config.model_copy(update={"outbox_path": str(tmp_path / "second.jsonl")}),
                       PostgresQueue(migrated_db, retry=NO_WAIT), exchange=exchange)
        try:
            await second.until(lambda: signal_id in second.strategy.positions)
            await second.step(10)  # health checks past the lost-order grace: still waiting on the exchange
            assert exchange.asked == [entry_id] and entry_id in exchange.in_flight_orders
            position = second.strategy.positions[signal_id]
            if exchange_says == "no such order":
                for _ in range(2):  # the tracker gives up after more "not found" replies than its limit (1)
                    exchange.answer(entry_id, None)
                    await second.step(1)
                await second.until(lambda: signal_id not in second.strategy.positions)
            else:
                amount = position.orders[entry_id].amount
                exchange.answer(entry_id, (Decimal("99.99"), amount))
                await second.until(lambda: position.entry_amount == amount)
                exchange.set_balance("BTC", amount * Decimal("0.999"))  # the wallet the exchange shows
                second.book("BTC-USDT", 103.5)
                await second.until(lambda: signal_id not in second.strategy.positions)
                await second.step(3)
            await second.drained()
            return second
        finally:
            stop(second)

    second = run(scenario())
    assert second.strategy.health["lost_reconciled"] == 0
    assert second.strategy.health["reconciling_with_exchange"] == 1
    with psycopg.connect(migrated_db) as conn:
        orders = conn.execute("select purpose, order_type, status from orders where signal_id = %s"
                              " order by created_at", (signal_id,)).fetchall()
    if exchange_says == "no such order":
        assert orders == [("entry", "limit", "failed")]
        assert signal_row(migrated_db, signal_id)["status"] == "closed"
        assert trade_row(migrated_db, signal_id) is None
    else:
        assert orders == [("entry", "limit", "filled"), ("exit", "market", "filled")]
        trade = trade_row(migrated_db, signal_id)
        assert trade["exit_reason"] == "take_profit" and trade["entry_price"] == Decimal("99.99")
        assert signal_row(migrated_db, signal_id)["status"] == "closed"


def test_a_restart_with_a_pending_outbox_delivers_it_before_restoring_the_position(
        store: PostgresStore, migrated_db: str, tmp_path: Path) -> None:
    """The queue goes down while a trailing-stop position's peak rises (its report waits in the outbox); the bot
    is killed and restarted while the queue is still down. The restarted bot restores nothing until the outbox
    is delivered, then restores the position with the replayed peak (so the trailing stop stays armed at it)
    and closes it once, on that peak."""
    from tests.support.tcp_proxy import TcpProxy

    signal_id = emit(store, trailing_activation_pct=1.5, trailing_delta_pct=0.5, take_profit_pct=10.0)
    proxy = TcpProxy(int(psycopg.conninfo.conninfo_to_dict(migrated_db)["port"]))
    queue_url = psycopg.conninfo.make_conninfo(migrated_db, port=proxy.port)
    outbox = tmp_path / "outbox.jsonl"
    config = executor_config(outbox, peak_report_interval_s=1)

    async def scenario() -> Harness:
        first = start(config, PostgresQueue(queue_url, retry=NO_WAIT, timeout_s=1))
        await open_position(first, migrated_db, signal_id)
        proxy.cut()
        first.book("BTC-USDT", 102.0)  # past the trailing activation: the peak rises to the bid
        await first.step(5)
        pending = [r["event"]["type"] for r in first.strategy.outbox._pending]
        assert pending and set(pending) == {"position_peak"}
        stop(first)  # killed during the outage

        second = start(config, PostgresQueue(queue_url, retry=NO_WAIT, timeout_s=1), exchange=first.exchange)
        try:
            await second.step(10)
            assert not second.strategy.positions and not second.strategy.worker.restore_done.is_set()
            assert len(second.strategy.outbox) == len(pending)
            proxy.restore()
            await second.until(lambda: signal_id in second.strategy.positions)
            restored = second.strategy.positions[signal_id]
            assert restored.peak == pytest.approx(Decimal("101.995"), abs=Decimal("0.01"))  # the replayed peak
            second.book("BTC-USDT", 101.2)  # 0.78 % under the peak: past the 0.5 % trailing delta
            await second.until(lambda: signal_id not in second.strategy.positions)
            await second.step(3)
            await second.drained()
            return second
        finally:
            stop(second)
            proxy.close()

    second = run(scenario())
    assert second.strategy.worker.stats["refused"] == 0
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "trailing_stop"
    with psycopg.connect(migrated_db) as conn:
        orders = conn.execute("select purpose, count(*) from orders where signal_id = %s group by 1 order by 1",
                              (signal_id,)).fetchall()
    assert orders == [("entry", 1), ("exit", 1)]
    assert signal_row(migrated_db, signal_id)["status"] == "closed"
