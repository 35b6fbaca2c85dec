"""The executor against an exchange that behaves like a real one (issue 10), on Hummingbot's real Clock.

The default harness exchange charges Binance's fees (0.1 %, the buy fee taken from the bought coin) and
starts with no base coin, as a new `binance_paper_trade` account does. `PaperExchange` adds what the mock
lacks: a connector that is not ready yet, trading rules (minimum size and notional), cancels confirmed late
or never, and a balance that lags the wallet.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from hummingbot.connector.trading_rule import TradingRule
from hummingbot.core.data_type.common import OrderType, TradeType
from hummingbot.core.data_type.order_book_row import OrderBookRow
from hummingbot.core.data_type.trade_fee import AddedToCostTradeFee, TokenAmount
from hummingbot.core.event.events import OrderFilledEvent

from bridge.queue_client import PostgresQueue
from bridge.schemas import OrderEvent
from controller.data.storage.postgres import PostgresStore
from offline.harness import Harness, PaperExchange, executor_config, start, stop
from tests.support.executor import FEE, NO_WAIT, emit, open_position, rows, run, signal_row, trade_row, wallet


@pytest.mark.parametrize(
    ("exit_reason", "moves", "signal"),
    [
        ("take_profit", [103.5], {}),                                                  # +3.5 % >= 3 %
        ("stop_loss", [97.5], {}),                                                     # -2.5 % <= -2 %
        ("trailing_stop", [101.8, 101.0], {"trailing_activation_pct": 1.5, "trailing_delta_pct": 0.5}),
        ("time_limit", [], {"time_limit_s": 20}),
    ],
)
def test_each_exit_closes_the_trade_once_with_binance_fees_and_no_base_coin(
        store: PostgresStore, migrated_db: str, outbox: Path, exit_reason: str, moves: list[float],
        signal: dict[str, Any]) -> None:
    """The buy fee comes out of the bought coin, so the wallet holds less than was bought: the exit sells what
    the wallet holds, once, and the trade's fees and net P&L are the wallet's own change."""
    signal_id = emit(store, **signal)

    async def scenario() -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        before = wallet(harness)
        try:
            await open_position(harness, migrated_db, signal_id)
            position = harness.strategy.positions[signal_id]
            # the fee came out of the coin: the position knows it holds what the wallet holds, not what it bought
            assert wallet(harness)[1] == pytest.approx(position.open_amount, abs=Decimal("1e-15"))
            assert position.open_amount == pytest.approx(position.entry_amount * (1 - FEE))
            for mid in moves:
                harness.book("BTC-USDT", mid)
                await harness.step(2)
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.step(5)  # more ticks: nothing is sold again
            await harness.drained()
            return before, wallet(harness)
        finally:
            stop(harness)

    (usdt_before, btc_before), (usdt_after, btc_after) = run(scenario())
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == exit_reason
    assert signal_row(migrated_db, signal_id)["status"] == "closed"
    orders = rows(migrated_db, "select purpose, status from orders where signal_id = %s order by created_at", signal_id)
    assert orders == [("entry", "filled"), ("exit", "filled")]  # one exit, never failed, never re-sent
    fills = rows(migrated_db, "select o.purpose, f.price, f.amount, f.fee_quote, f.fee_asset, f.fee_amount from fills f"
                 " join orders o using (client_order_id) where f.signal_id = %s order by o.purpose", signal_id)
    (_, _, entry_amt, entry_fee_q, entry_fee_asset, entry_fee_amt), (_, exit_px, exit_amt, exit_fee_q,
                                                                           exit_fee_asset, exit_fee_amt) = fills
    assert (entry_fee_asset, exit_fee_asset) == ("BTC", "USDT")
    assert entry_fee_amt == pytest.approx(entry_amt * FEE) and exit_fee_amt == pytest.approx(exit_px * exit_amt * FEE)
    assert exit_amt == pytest.approx(entry_amt - entry_fee_amt)  # sold exactly what the wallet held
    assert trade["fees_quote"] == pytest.approx(entry_fee_q + exit_fee_q)
    assert btc_before == 0  # the paper exchange's own rounding leaves ~1e-17 behind, nothing a user would see
    assert btc_after == pytest.approx(0, abs=Decimal("1e-15")) and trade["dust_amount"] == pytest.approx(btc_after,
                                                                                                     abs=Decimal("1e-15"))
    # net P&L is what the wallet gained (the dust, none here, valued at the exit price)
    assert trade["pnl_quote"] == pytest.approx(usdt_after - usdt_before + btc_after * exit_px, abs=Decimal("1e-9"))
    assert (trade["pnl_quote"] > 0) == (exit_reason in ("take_profit", "trailing_stop"))


def test_take_profit_waits_for_the_bid_not_the_mid(store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """A long exit is a sell: with the mid past the take profit but the bid below it, nothing is sold."""
    signal_id = emit(store)

    async def scenario() -> None:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await open_position(harness, migrated_db, signal_id)
            level = harness.strategy.positions[signal_id].entry_price * Decimal("1.03")
            harness.book("BTC-USDT", 103.1, spread_step=0.4)  # mid 103.1 > take profit > bid 102.9
            bid = Decimal(str(harness.exchange.get_price("BTC-USDT", False)))
            assert bid < level < Decimal("103.1")
            await harness.step(5)
            position = harness.strategy.positions.get(signal_id)
            assert position is not None and all(o.purpose == "entry" for o in position.orders.values())
            harness.book("BTC-USDT", 103.5)
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.drained()
        finally:
            stop(harness)

    run(scenario())
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "take_profit"
    assert trade["exit_price"] >= trade["entry_price"] * Decimal("1.03")


def test_a_sell_signal_is_rejected_as_unsupported_side(store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    signal_id = emit(store, side="sell")

    async def scenario() -> Harness:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await harness.until(lambda: signal_row(migrated_db, signal_id)["status"] == "rejected")
            return harness
        finally:
            stop(harness)

    harness = run(scenario())
    assert "sell signals are not traded" in signal_row(migrated_db, signal_id)["reject_reason"]
    assert harness.strategy.rejections == {"unsupported_side": 1}
    assert rows(migrated_db, "select 1 from orders") == []


def test_an_entry_below_the_minimum_notional_is_rejected_before_any_order(store: PostgresStore, migrated_db: str,
                                                                          outbox: Path) -> None:
    """Hummingbot's quantize_order_amount only rounds down; the exchange's minimum is checked here, first."""
    signal_id = emit(store, quote_amount=50.0)
    rules = {"BTC-USDT": TradingRule("BTC-USDT", min_order_size=Decimal("0.0001"), min_notional_size=Decimal("100"))}

    async def scenario() -> Harness:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT), rules=rules)
        try:
            await harness.until(lambda: signal_row(migrated_db, signal_id)["status"] == "rejected")
            return harness
        finally:
            stop(harness)

    harness = run(scenario())
    reason = signal_row(migrated_db, signal_id)["reject_reason"]
    assert "below the minimum notional 100" in reason and "50" in reason
    assert harness.strategy.rejections == {"below_min_notional": 1}
    assert rows(migrated_db, "select 1 from orders") == [] and not harness.exchange.cancel_requests


def test_nothing_is_claimed_until_the_connector_is_ready(store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """Hummingbot calls on_tick only once every connector is ready; a signal claimed before would be lost to
    a rejection. The status says why nothing happens."""
    signal_id = emit(store)

    async def scenario() -> tuple[str, str]:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT),
                        exchange=_funded(PaperExchange(ready=False)))
        try:
            await harness.step(5)
            await harness.until(lambda: harness.strategy.worker.started, tick=False)
            status_while_waiting = signal_row(migrated_db, signal_id)["status"]
            text = harness.strategy.format_status()
            harness.exchange.is_ready = True
            await open_position(harness, migrated_db, signal_id)
            return status_while_waiting, text
        finally:
            stop(harness)

    status_while_waiting, text = run(scenario())
    assert status_while_waiting == "new"
    assert text.startswith("waiting for mock to be ready: no signal is claimed until then")
    assert signal_row(migrated_db, signal_id)["claim_count"] == 1


def _funded(exchange: PaperExchange) -> PaperExchange:
    exchange.set_balance("USDT", 10_000)
    exchange.set_balance("BTC", 0)
    exchange.set_balance("ETH", 0)
    return exchange


def test_an_exit_that_keeps_failing_stops_after_max_order_retries_and_marks_the_position_stuck(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """The connector reports more coin than the wallet holds (someone moved some out): every sell fails. The
    bot tries max_order_retries times, backing off, then stops trying and says why, instead of re-sending an
    order on every tick forever."""
    signal_id = emit(store)

    async def scenario() -> Harness:
        harness = start(executor_config(outbox, max_order_retries=3), PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await open_position(harness, migrated_db, signal_id)
            held = harness.strategy.positions[signal_id].open_amount
            harness.exchange.set_balance("BTC", held / 2)
            harness.exchange.stale_balances["BTC"] = held
            harness.book("BTC-USDT", 97.5)  # stop loss
            await harness.until(lambda: harness.strategy.positions[signal_id].stuck is not None)
            await harness.step(30)  # no more tries
            await harness.drained()
            return harness
        finally:
            stop(harness)

    harness = run(scenario())
    exits = rows(migrated_db, "select status from orders where signal_id = %s and purpose = 'exit'", signal_id)
    assert exits == [("failed",)] * 3
    stuck = signal_row(migrated_db, signal_id)
    assert stuck["status"] == "executing" and stuck["stuck_reason"].startswith("exit failed 3 times")
    assert "STUCK: exit failed 3 times" in harness.strategy.format_status()
    assert harness.strategy.health["stuck"] == 1


def test_a_restored_position_with_nothing_left_is_closed_as_flat(store: PostgresStore, migrated_db: str,
                                                                 outbox: Path) -> None:
    """The bot died after its exit filled and before it recorded the close: the restarted bot finds a position
    with nothing to sell, closes it (reason flat) and frees its slot, without placing an order."""
    signal_id = emit(store)

    async def scenario() -> Harness:
        first = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        await open_position(first, migrated_db, signal_id)
        position = first.strategy.positions[signal_id]
        stop(first)
        # what the first bot's exit reported before it died: the sale of everything the wallet held
        queue = PostgresQueue(migrated_db, retry=NO_WAIT)
        ts = "2026-01-01T00:00:00+00:00"
        common: dict[str, Any] = {"signal_id": signal_id, "ts": ts, "consumer": "bot-a", "client_order_id": "sell-1",
                                  "exchange": "binance", "symbol": "BTC-USDT", "side": "sell", "purpose": "exit"}
        queue.report(OrderEvent(type="order_created", order_type="market", amount=position.open_amount, **common))
        queue.report(OrderEvent(type="order_filled", exchange_trade_id="t-1", price=Decimal("101"),
                                amount=position.open_amount, fee_quote=Decimal("0.05"), fee_asset="USDT",
                                fee_amount=Decimal("0.05"), **common))
        queue.report(OrderEvent(type="order_completed", **common))
        queue.close()
        first.exchange.set_balance("BTC", 0)

        second = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT), exchange=first.exchange)
        try:
            await second.until(lambda: signal_row(migrated_db, signal_id)["status"] == "closed")
            await second.drained()
            return second
        finally:
            stop(second)

    second = run(scenario())
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "flat" and trade["exit_price"] == Decimal("101")
    assert rows(migrated_db, "select purpose, count(*) from orders where signal_id = %s group by 1 order by 1",
                signal_id) == [("entry", 1), ("exit", 1)]
    assert second.strategy.positions == {} and second.strategy.worker.slots.held == 0


def test_a_restart_keeps_the_trailing_stop_armed(store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """The peak is persisted: after a restart a price 0.7 % under the peak (trailing delta 0.5 %, armed at
    +1.5 %) exits, where a peak reset to the entry price would not."""
    signal_id = emit(store, trailing_activation_pct=1.5, trailing_delta_pct=0.5)

    async def scenario() -> None:
        config = executor_config(outbox, peak_report_interval_s=1)
        first = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        await open_position(first, migrated_db, signal_id)
        first.book("BTC-USDT", 102.0)
        await first.step(3)
        await first.drained()
        stop(first)
        assert signal_row(migrated_db, signal_id)["trailing_peak"] >= Decimal("101.99")

        second = start(config, PostgresQueue(migrated_db, retry=NO_WAIT), exchange=first.exchange)
        second.book("BTC-USDT", 101.3)
        try:
            await second.until(lambda: signal_row(migrated_db, signal_id)["status"] == "closed")
        finally:
            stop(second)

    run(scenario())
    assert trade_row(migrated_db, signal_id)["exit_reason"] == "trailing_stop"


@pytest.mark.parametrize("cancels", ["never", "late"])
def test_a_stale_entry_is_replaced_only_after_its_cancel_is_confirmed(store: PostgresStore, migrated_db: str,
                                                                     outbox: Path, cancels: str) -> None:
    """Order repair never doubles an order: with cancels confirmed late or never, there is at most one live
    entry order at every tick; the repriced entry goes out only after the cancel is confirmed."""
    signal_id = emit(store)
    exchange = _funded(PaperExchange(cancels=cancels))

    async def scenario() -> tuple[int, int]:
        config = executor_config(outbox, entry_order_type="limit", limit_timeout_s=10, health_check_interval_s=2,
                                 lost_order_grace_s=10)
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT), exchange=exchange)
        most_live = 0
        try:
            await harness.until(lambda: signal_id in harness.strategy.positions)
            for _ in range(40):
                await harness.step(1)
                most_live = max(most_live, len(exchange.limit_orders))
            cancel_requests = len(exchange.cancel_requests)
            if cancels == "late":
                exchange.confirm_cancels()
                await harness.until(lambda: len(harness.strategy.positions[signal_id].orders) == 2)
                for _ in range(5):
                    await harness.step(1)
                    most_live = max(most_live, len(exchange.limit_orders))
            await harness.drained()
            return most_live, cancel_requests
        finally:
            stop(harness)

    most_live, cancel_requests = run(scenario())
    assert most_live == 1
    assert cancel_requests >= 2  # unconfirmed cancels are sent again
    entries = rows(migrated_db, "select status, order_type from orders where signal_id = %s and purpose = 'entry'"
                   " order by created_at", signal_id)
    if cancels == "never":
        assert entries == [("created", "limit")]
    else:
        assert entries == [("cancelled", "limit"), ("created", "limit")]


def test_a_fee_in_a_third_asset_without_a_rate_keeps_the_fill(store: PostgresStore, migrated_db: str,
                                                              outbox: Path) -> None:
    """A fill whose fee is paid in BNB, with no BNB rate: the position gets the fill, the fee is recorded in
    BNB (fee_asset, fee_amount) rather than lost with the fill."""
    signal_id = emit(store)

    async def scenario() -> tuple[Decimal, Decimal]:
        harness = start(executor_config(outbox, entry_order_type="limit", limit_timeout_s=600),
                        PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await harness.until(lambda: signal_id in harness.strategy.positions)
            position = harness.strategy.positions[signal_id]
            [entry] = position.orders.values()
            half = entry.amount / 2
            harness.strategy.did_fill_order(OrderFilledEvent(
                harness.now, entry.order_id, "BTC-USDT", TradeType.BUY, OrderType.LIMIT, entry.price, half,
                AddedToCostTradeFee(flat_fees=[TokenAmount("NOPRICECOIN", Decimal("0.01"))]),
                exchange_trade_id="bnb-1"))
            await harness.drained()
            return position.entry_amount, half
        finally:
            stop(harness)

    entry_amount, half = run(scenario())
    assert entry_amount == half
    assert rows(migrated_db, "select amount, fee_asset, fee_amount, fee_quote from fills where signal_id = %s",
                signal_id) == [(half, "NOPRICECOIN", Decimal("0.01"), 0)]


def test_a_market_exit_that_never_gets_a_final_event_is_marked_lost_and_the_position_exits(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """An exit at market that the connector lost (no event ever, unknown to the connector): after
    market_order_timeout_s it is reported lost and the barriers decide again; the position still exits, once."""
    from executor.models import TrackedOrder

    signal_id = emit(store)

    async def scenario() -> Harness:
        harness = start(executor_config(outbox, market_order_timeout_s=10, health_check_interval_s=2),
                        PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await open_position(harness, migrated_db, signal_id)
            position = harness.strategy.positions[signal_id]
            lost = TrackedOrder("sell://BTC-USDT/lost-1", "exit", TradeType.SELL, position.open_amount, None,
                                harness.now)
            position.orders[lost.order_id] = lost  # what the bot tracks for an order whose events never come
            harness.strategy.order_index[lost.order_id] = signal_id
            position.exit_reason = "stop_loss"
            harness.book("BTC-USDT", 97.5)
            await harness.step(5)
            assert not lost.done  # within the timeout: it may still come
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.drained()
            return harness
        finally:
            stop(harness)

    harness = run(scenario())
    assert harness.strategy.health["lost_market_orders"] == 1
    assert rows(migrated_db, "select purpose, status, failure_reason like 'lost: no final event%%' from orders"
                " where signal_id = %s order by created_at", signal_id) == [
        ("entry", "filled", None), ("exit", "failed", True), ("exit", "filled", None)]
    assert trade_row(migrated_db, signal_id)["exit_reason"] == "stop_loss"


def test_a_manual_close_from_the_cli_exits_the_position_at_market(store: PostgresStore, migrated_db: str,
                                                                  outbox: Path) -> None:
    """`python -m controller close SIGNAL_ID` records who asked; the bot exits at market on its next claim
    cycle, reason manual, though no barrier is near."""
    from typer.testing import CliRunner

    from controller.cli.main import app

    signal_id = emit(store)
    runner = CliRunner()
    env = {"DATABASE_URL": migrated_db}

    async def scenario() -> tuple[Any, Any]:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await open_position(harness, migrated_db, signal_id)
            asked = runner.invoke(app, ["close", str(signal_id)], env=env)
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.drained()
            again = runner.invoke(app, ["close", str(signal_id)], env=env)
            return asked, again
        finally:
            stop(harness)

    asked, again = run(scenario())
    assert asked.exit_code == 0 and f"close requested: {signal_id}" in asked.output
    assert again.exit_code == 2 and "is closed, not executing" in again.output  # nothing left to close
    assert trade_row(migrated_db, signal_id)["exit_reason"] == "manual"
    assert signal_row(migrated_db, signal_id)["close_requested_by"].startswith("cli:")
    assert rows(migrated_db, "select purpose, status from orders where signal_id = %s order by created_at",
                signal_id) == [("entry", "filled"), ("exit", "filled")]


def test_a_strategy_exit_signal_closes_its_entry_once_at_market_and_an_exit_for_another_bot_never_reaches_it(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """The controller's exit signal (issue 11: CHANNEL at the band's top, RSI exits) closes the position of its
    entry at market, once, reason strategy_exit, though no barrier is near; an exit for a position another bot
    holds is never handed to this one (0018), so it stays queued for its holder."""
    entry = emit(store)
    elsewhere = emit(store, symbol="ETH-USDT")
    with psycopg.connect(migrated_db, autocommit=True) as conn:  # bot B holds the ETH entry
        markets = psycopg.types.json.Jsonb([{"exchange": "binance", "symbols": ["ETH-USDT"]}])
        assert conn.execute("select count(*) from claim_signals('bot-b', 1, 600, %s)", [markets]).fetchone()[0] == 1

    async def scenario() -> tuple[UUID, UUID, int]:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await open_position(harness, migrated_db, entry)
            orphan = emit(store, symbol="ETH-USDT", side="sell", kind="exit", entry_signal_id=elsewhere)
            exit_id = emit(store, side="sell", kind="exit", entry_signal_id=entry)
            await harness.until(lambda: entry not in harness.strategy.positions)
            await harness.drained()
            await harness.step(3)  # more claim cycles: still nothing for bot A
            return exit_id, orphan, sum(harness.strategy.rejections.values())
        finally:
            stop(harness)

    exit_id, orphan, rejections = run(scenario())
    assert trade_row(migrated_db, entry)["exit_reason"] == "strategy_exit"
    assert rows(migrated_db, "select purpose, status from orders where signal_id = %s order by created_at",
                entry) == [("entry", "filled"), ("exit", "filled")]
    assert signal_row(migrated_db, exit_id)["status"] == "closed"
    assert signal_row(migrated_db, entry)["status"] == "closed"
    assert rejections == 0
    queued = signal_row(migrated_db, orphan)
    assert (queued["status"], queued["claimed_by"]) == ("new", None)  # waiting for bot B, never seen by bot A
    assert signal_row(migrated_db, elsewhere)["status"] == "claimed"  # bot B's position is untouched


def thin_book(harness: Harness, top_bid: float, depth_bid: float) -> None:
    """A book whose best bid holds only 0.01 BTC, with the real depth below it (asks 0.5 above)."""
    bids = (OrderBookRow(top_bid, 0.01, 2), OrderBookRow(depth_bid, 100.0, 2))
    asks = (OrderBookRow(top_bid + 0.5, 0.01, 2), OrderBookRow(top_bid + 1.0, 100.0, 2))
    harness.exchange.get_order_book("BTC-USDT").apply_snapshot(list(bids), list(asks), 2)


def test_barriers_use_what_selling_the_position_would_get_on_a_thin_book(store: PostgresStore, migrated_db: str,
                                                                         outbox: Path) -> None:
    """A best bid past the take profit with 0.01 BTC behind it does not sell a 0.5 BTC position: the walk of the
    bid side for the position's size is below the take profit. When the depth itself is past it, the position
    exits once, and the trade's P&L is net of Binance's fees."""
    signal_id = emit(store)  # 50 USDT at 100: about 0.5 BTC; take profit 3 %

    async def scenario() -> tuple[Decimal, Decimal]:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT))
        usdt_before = wallet(harness)[0]
        try:
            await open_position(harness, migrated_db, signal_id)
            position = harness.strategy.positions[signal_id]
            level = position.entry_price * Decimal("1.03")
            thin_book(harness, top_bid=104.0, depth_bid=101.0)  # best bid +4 %, the position's sell about +1 %
            assert harness.strategy.market.exit_price(position) < level < Decimal(str(harness.exchange.get_price(
                "BTC-USDT", False)))
            await harness.step(5)
            assert signal_id in harness.strategy.positions
            assert [o.purpose for o in position.orders.values()] == ["entry"]  # nothing sold
            thin_book(harness, top_bid=104.0, depth_bid=103.6)  # now the depth pays the take profit
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.step(3)
            await harness.drained()
            return usdt_before, wallet(harness)[0]
        finally:
            stop(harness)

    usdt_before, usdt_after = run(scenario())
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "take_profit"
    assert trade["exit_price"] >= trade["entry_price"] * Decimal("1.03")
    assert rows(migrated_db, "select purpose from orders where signal_id = %s order by created_at",
                signal_id) == [("entry",), ("exit",)]
    gross = (trade["exit_price"] - trade["entry_price"]) * trade["amount"]
    assert trade["fees_quote"] > 0 and trade["pnl_quote"] < gross  # net of fees
    dust_value = trade["dust_amount"] * trade["exit_price"]
    assert trade["pnl_quote"] == pytest.approx(usdt_after - usdt_before + dust_value, abs=Decimal("1e-9"))


def test_a_market_exit_with_no_final_event_is_asked_of_the_exchange_before_it_is_called_lost(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """The same lost exit on a connector that can ask the exchange (ExchangePyBase's status polling): after
    market_order_timeout_s the order goes to the connector's tracker instead of being reported lost; the
    exchange says it filled, so the position closes on that fill with that one exit and nothing sold again."""
    from executor.models import TrackedOrder
    from tests.support.executor import StatusExchange

    signal_id = emit(store)
    exchange = StatusExchange()
    exchange.set_balance("USDT", 10_000)

    async def scenario() -> Harness:
        harness = start(executor_config(outbox, market_order_timeout_s=10, health_check_interval_s=2),
                        PostgresQueue(migrated_db, retry=NO_WAIT), exchange=exchange)
        try:
            await open_position(harness, migrated_db, signal_id)
            position = harness.strategy.positions[signal_id]
            lost = TrackedOrder("sell://BTC-USDT/lost-1", "exit", TradeType.SELL, position.open_amount, None,
                                harness.now)
            position.orders[lost.order_id] = lost
            harness.strategy.order_index[lost.order_id] = signal_id
            position.exit_reason = "stop_loss"
            harness.book("BTC-USDT", 97.5)
            await harness.until(lambda: exchange.asked == [lost.order_id])
            await harness.step(15)  # past the timeout again: the exchange is being asked, nothing is re-sent
            assert not lost.done and [o.order_id for o in position.open_orders()] == [lost.order_id]
            exchange.answer(lost.order_id, (Decimal("97.5"), lost.amount))
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.step(3)
            await harness.drained()
            return harness
        finally:
            stop(harness)

    harness = run(scenario())
    assert harness.strategy.health["lost_market_orders"] == 0
    assert harness.strategy.health["reconciling_with_exchange"] == 1
    assert rows(migrated_db, "select purpose, status from orders where signal_id = %s order by created_at",
                signal_id) == [("entry", "filled"), ("exit", "filled")]
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "stop_loss" and trade["exit_price"] == Decimal("97.5")


def test_a_maker_take_profit_rests_at_its_price_and_fills_once_with_fees(store: PostgresStore, migrated_db: str,
                                                                         outbox: Path) -> None:
    """take_profit_order_type limit: once the entry fills, one limit sell rests at the take-profit price (not
    sold at market when the bid first touches it); the book reaching it fills it, the trade closes as
    take_profit, net of Binance's fees, and nothing else is ever sold."""
    signal_id = emit(store)

    async def scenario() -> tuple[Decimal, Decimal]:
        harness = start(executor_config(outbox, take_profit_order_type="limit", health_check_interval_s=2),
                        PostgresQueue(migrated_db, retry=NO_WAIT))
        usdt_before = wallet(harness)[0]
        try:
            await open_position(harness, migrated_db, signal_id)
            position = harness.strategy.positions[signal_id]
            await harness.step(2)
            (resting,) = [o for o in position.open_orders("exit")]
            assert resting.price == pytest.approx(position.entry_price * Decimal("1.03"), rel=Decimal("1e-6"))
            assert resting.amount == pytest.approx(position.open_amount)  # what the wallet holds after the fee
            harness.book("BTC-USDT", 101.0)
            await harness.step(700)  # past stale_order_s: a maker take profit is not repriced to market
            assert [o.order_id for o in position.open_orders()] == [resting.order_id]
            harness.book("BTC-USDT", 103.5)  # the bid crosses the resting sell: it fills
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.step(3)
            await harness.drained()
            return usdt_before, wallet(harness)[0]
        finally:
            stop(harness)

    usdt_before, usdt_after = run(scenario())
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "take_profit"
    assert rows(migrated_db, "select purpose, order_type, status from orders where signal_id = %s order by created_at",
                signal_id) == [("entry", "market", "filled"), ("exit", "limit", "filled")]
    (exit_fee,) = rows(migrated_db, "select f.fee_quote from fills f join orders o using (client_order_id)"
                       " where f.signal_id = %s and o.purpose = 'exit'", signal_id)[0]
    assert exit_fee == pytest.approx(trade["exit_price"] * trade["amount"] * (1 - FEE) * FEE, rel=Decimal("1e-6"))
    dust_value = trade["dust_amount"] * trade["exit_price"]
    assert trade["pnl_quote"] == pytest.approx(usdt_after - usdt_before + dust_value, abs=Decimal("1e-9"))


def test_a_stop_loss_cancels_the_maker_take_profit_before_it_sells_at_market(store: PostgresStore,
                                                                             migrated_db: str, outbox: Path) -> None:
    """With the take-profit sell resting and cancels confirmed late, a stop loss asks for the cancel and sells
    nothing until it is confirmed: never two sells at once. Then it sells the rest at market, once."""
    signal_id = emit(store)
    exchange = PaperExchange(cancels="late")
    exchange.set_balance("USDT", 10_000)

    async def scenario() -> Harness:
        harness = start(executor_config(outbox, take_profit_order_type="limit", health_check_interval_s=2),
                        PostgresQueue(migrated_db, retry=NO_WAIT), exchange=exchange)
        try:
            await open_position(harness, migrated_db, signal_id)
            position = harness.strategy.positions[signal_id]
            await harness.until(lambda: len(position.open_orders("exit")) == 1)
            (resting,) = position.open_orders("exit")
            harness.book("BTC-USDT", 97.5)  # stop loss
            await harness.until(lambda: exchange.cancel_requests == [resting.order_id])
            await harness.step(10)
            assert position.open_orders("exit") == [resting]  # no market sell while the limit sell may fill
            exchange.confirm_cancels()
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.step(3)
            await harness.drained()
            return harness
        finally:
            stop(harness)

    harness = run(scenario())
    assert harness.strategy.health["take_profit_order_cancelled"] == 1
    assert rows(migrated_db, "select purpose, order_type, status from orders where signal_id = %s order by created_at",
                signal_id) == [("entry", "market", "filled"), ("exit", "limit", "cancelled"),
                               ("exit", "market", "filled")]
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "stop_loss" and trade["pnl_quote"] < 0
    assert Decimal(str(harness.exchange.get_balance("BTC"))) == pytest.approx(0, abs=Decimal("1e-12"))
