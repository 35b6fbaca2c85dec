"""The DCA grid and strategy exits routed to their bot (issue 11), on Hummingbot's real Clock and a real queue.

The exchange charges Binance's fees (0.1 % maker and taker, the buy fee taken from the bought coin) and the
wallet starts with no base coin. A DCA entry carries its grid: resting limit buys `grid_spacing_pct` apart below
the entry's fill price; they fill as the price walks down through them, the barriers follow the average entry,
and the exit cancels the levels still resting (confirmed) before it sells everything the position holds.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from bridge.queue_client import PostgresQueue
from controller.data.storage.postgres import PostgresStore
from offline.harness import Harness, executor_config, start, stop
from tests.support.executor import FEE, NO_WAIT, emit, open_position, rows, run, signal_row, trade_row, wallet

GRID = {"grid_levels": 3, "grid_spacing_pct": 1.4, "grid_level_quote": 20.0}


def fills(url: str, signal_id: UUID) -> list[tuple]:
    return rows(url, "select o.purpose, o.price, f.price, f.amount, f.fee_quote, f.fee_asset, f.fee_amount"
                     " from fills f join orders o using (client_order_id) where f.signal_id = %s"
                     " order by f.ts, o.purpose", signal_id)


def walk_grid(store: PostgresStore, migrated_db: str, outbox: Path, path: list[float],
              config: dict[str, Any] | None = None, **signal: Any) -> tuple[UUID, dict[str, Any]]:
    """Open a DCA entry with a grid at 100, walk the mid through `path` (a few ticks each), until it closes."""
    signal_id = emit(store, **{**GRID, **signal})
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        harness = start(executor_config(outbox, **(config or {})), PostgresQueue(migrated_db, retry=NO_WAIT))
        seen["before"] = wallet(harness)
        try:
            await open_position(harness, migrated_db, signal_id)
            await harness.step(2)
            position = harness.strategy.positions[signal_id]
            seen["first_fill"] = position.entry_price
            seen["levels"] = sorted((o.level, o.price) for o in position.open_orders() if o.level is not None)
            for mid in path:
                harness.book("BTC-USDT", mid)
                await harness.step(3)
                if signal_id in harness.strategy.positions:
                    position = harness.strategy.positions[signal_id]
                    seen.setdefault("averages", []).append(position.entry_price)
                    seen.setdefault("resting_sells", []).append(
                        [o.price for o in position.open_orders("exit") if o.cancel_sent_at is None])
            await harness.until(lambda: signal_id not in harness.strategy.positions)
            await harness.step(5)  # more ticks: nothing is sold or placed again
            await harness.drained()
            seen["after"] = wallet(harness)
            seen["cancels"] = list(harness.exchange.cancel_requests)
        finally:
            stop(harness)

    run(scenario())
    return signal_id, seen


def test_the_grid_fills_on_the_way_down_and_take_profit_sells_everything_at_the_average_entry(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """Down through two levels, then up to the take profit of the average entry: one sell of the whole net
    amount, the third level cancelled first, and the trade's fees and net P&L are the wallet's change."""
    signal_id, seen = walk_grid(store, migrated_db, outbox, [98.4, 96.9, 99.0, 101.0],
                                take_profit_pct=1.5, stop_loss_pct=8.0)
    entry = seen["first_fill"]
    assert [level for level, _ in seen["levels"]] == [1, 2, 3]
    assert [price for _, price in seen["levels"]] == [pytest.approx(entry * (1 - Decimal("0.014") * i),
                                                                    abs=Decimal("0.01")) for i in (1, 2, 3)]

    orders = rows(migrated_db, "select purpose, side, order_type, status from orders where signal_id = %s"
                               " order by created_at, price nulls first", signal_id)
    assert sorted(orders) == sorted([("entry", "buy", "market", "filled"), ("entry", "buy", "limit", "filled"),
                                     ("entry", "buy", "limit", "filled"), ("entry", "buy", "limit", "cancelled"),
                                     ("exit", "sell", "market", "filled")])
    (level_3,) = rows(migrated_db, "select price from orders where signal_id = %s and status = 'cancelled'",
                      signal_id)
    assert level_3[0] == pytest.approx(seen["levels"][2][1])  # the deepest level is the one cancelled
    assert len(seen["cancels"]) == 1

    done = fills(migrated_db, signal_id)
    entries = [f for f in done if f[0] == "entry"]
    [sold] = [f for f in done if f[0] == "exit"]
    assert len(entries) == 3
    bought = sum(f[3] for f in entries)
    average = sum(f[2] * f[3] for f in entries) / bought
    assert average < entry  # the grid lowered the entry
    assert entry > seen["averages"][0] > seen["averages"][1] == pytest.approx(average)  # averaged at each fill
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "take_profit"
    assert trade["entry_price"] == pytest.approx(average)
    assert trade["amount"] == pytest.approx(bought)
    assert trade["exit_price"] >= average * Decimal("1.015")  # the take profit of the average, not of the first fill
    assert trade["exit_price"] < entry * Decimal("1.015")  # ... which a single buy would still be waiting for
    # the buy fees came out of the coin: one sell of exactly what the wallet held
    assert all(f[5] == "BTC" and f[6] == pytest.approx(f[3] * FEE) for f in entries)
    assert sold[3] == pytest.approx(bought * (1 - FEE))
    assert trade["fees_quote"] == pytest.approx(sum(f[4] for f in done))
    assert sold[4] == pytest.approx(sold[2] * sold[3] * FEE)
    (usdt_before, btc_before), (usdt_after, btc_after) = seen["before"], seen["after"]
    assert btc_before == 0 and btc_after == pytest.approx(0, abs=Decimal("1e-12"))
    assert trade["pnl_quote"] == pytest.approx(usdt_after - usdt_before + btc_after * sold[2], abs=Decimal("1e-9"))
    assert trade["pnl_quote"] > 0
    assert signal_row(migrated_db, signal_id)["status"] == "closed"


def test_a_stop_loss_of_the_average_entry_cancels_the_levels_left_and_sells_once(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """One level fills, then the price falls below the stop of the (averaged) entry but not to the next level:
    the two levels left are cancelled, confirmed, then everything is sold once, at a loss net of fees."""
    signal_id, seen = walk_grid(store, migrated_db, outbox, [98.4, 97.4], take_profit_pct=3.0, stop_loss_pct=2.0)
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "stop_loss"
    statuses = rows(migrated_db, "select purpose, order_type, status, count(*) from orders where signal_id = %s"
                                 " group by 1, 2, 3 order by 1, 2, 3", signal_id)
    assert statuses == [("entry", "limit", "cancelled", 2), ("entry", "limit", "filled", 1),
                        ("entry", "market", "filled", 1), ("exit", "market", "filled", 1)]
    done = fills(migrated_db, signal_id)
    entries = [f for f in done if f[0] == "entry"]
    [sold] = [f for f in done if f[0] == "exit"]
    bought = sum(f[3] for f in entries)
    average = sum(f[2] * f[3] for f in entries) / bought
    assert trade["entry_price"] == pytest.approx(average)
    assert average * Decimal("0.97") < sold[2] <= average * Decimal("0.98")  # the stop of the average entry
    assert sold[3] == pytest.approx(bought * (1 - FEE))
    (usdt_before, _), (usdt_after, btc_after) = seen["before"], seen["after"]
    assert trade["pnl_quote"] == pytest.approx(usdt_after - usdt_before + btc_after * sold[2], abs=Decimal("1e-9"))
    assert trade["pnl_quote"] < 0


def test_a_maker_take_profit_rests_beside_the_grid_moves_with_the_average_and_fills_at_its_level(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """take_profit_order_type limit on a DCA entry: the take profit rests as a limit sell beside the grid's
    buys (it is not left to a market sell after the level was crossed); a level that fills moves it to the
    take profit of the average entry; when the book crosses it, it fills at its own price, the levels left
    are cancelled (confirmed) and the position closes as take_profit with nothing sold twice."""
    signal_id, seen = walk_grid(store, migrated_db, outbox, [98.4, 99.0, 101.5],
                                config={"take_profit_order_type": "limit"}, take_profit_pct=1.5, stop_loss_pct=8.0)
    entry = seen["first_fill"]
    first_sell, after_level_1 = seen["resting_sells"][0], seen["resting_sells"][1]
    assert len(first_sell) == 1 and len(after_level_1) == 1
    average = seen["averages"][0]
    assert average < entry  # level 1 filled at 98.4's crossing
    assert after_level_1[0] == pytest.approx(average * Decimal("1.015"), rel=Decimal("1e-6"))
    assert after_level_1[0] < entry * Decimal("1.015")
    orders = rows(migrated_db, "select purpose, side, order_type, status, count(*) from orders where signal_id = %s"
                               " group by 1, 2, 3, 4 order by 1, 2, 3, 4", signal_id)
    assert orders == [("entry", "buy", "limit", "cancelled", 2), ("entry", "buy", "limit", "filled", 1),
                      ("entry", "buy", "market", "filled", 1), ("exit", "sell", "limit", "cancelled", 1),
                      ("exit", "sell", "limit", "filled", 1)]
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "take_profit"
    # at the level itself, not at the bid that crossed it (101.5 is 0.5 points past it)
    assert trade["exit_price"] == pytest.approx(after_level_1[0], rel=Decimal("1e-9"))
    assert trade["entry_price"] == pytest.approx(average)
    assert seen["after"][1] == pytest.approx(0, abs=Decimal("1e-12"))  # everything the grid bought was sold
    assert signal_row(migrated_db, signal_id)["status"] == "closed"


def test_the_grid_counts_against_the_balance(store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """Enough quote for the entry (50) but not for its three levels (3 x 20): rejected, nothing placed."""
    signal_id = emit(store, **GRID)

    async def scenario() -> None:
        harness = start(executor_config(outbox), PostgresQueue(migrated_db, retry=NO_WAIT),
                        balances={"USDT": 80, "BTC": 0, "ETH": 0})
        try:
            await harness.until(lambda: signal_row(migrated_db, signal_id)["status"] == "rejected")
        finally:
            stop(harness)

    run(scenario())
    assert "its grid of 60" in signal_row(migrated_db, signal_id)["reject_reason"]
    assert rows(migrated_db, "select count(*) from orders where signal_id = %s", signal_id) == [(0,)]


@pytest.mark.parametrize("strategy", ["channel", "dca"])
def test_two_bots_each_close_their_own_position_on_its_exit_signal_even_with_every_slot_full(
        store: PostgresStore, migrated_db: str, tmp_path: Path, strategy: str) -> None:
    """Two bots on one queue, one position each, every slot held (max_open_positions 1): the exit of each
    entry reaches the bot that holds it, which closes the position at market once, reason strategy_exit;
    neither bot rejects anything."""
    btc = emit(store, strategy=strategy)
    eth = emit(store, symbol="ETH-USDT", price=50.0, strategy=strategy)

    async def scenario() -> tuple[dict[str, Harness], list[UUID]]:
        bots = {name: start(executor_config(tmp_path / f"outbox-{name}.jsonl", consumer=name, trading_pairs=[pair],
                                            max_open_positions=1),
                            PostgresQueue(migrated_db, retry=NO_WAIT))
                for name, pair in (("bot-a", "BTC-USDT"), ("bot-b", "ETH-USDT"))}
        try:
            for name, signal_id in (("bot-a", btc), ("bot-b", eth)):
                await open_position(bots[name], migrated_db, signal_id)
            exits = [emit(store, symbol=s, price=p, side="sell", kind="exit", entry_signal_id=e, strategy=strategy)
                     for s, p, e in (("ETH-USDT", 50.0, eth), ("BTC-USDT", 100.0, btc))]
            while any(b.strategy.positions for b in bots.values()):
                for bot in bots.values():
                    await bot.step(1, real_pause=0.01)
                if bots["bot-a"].now - bots["bot-a"].clock.start_time > 120:
                    raise AssertionError("positions still open: " + "; ".join(
                        b.strategy.format_status() for b in bots.values()))
            for bot in bots.values():
                await bot.step(3)
                await bot.drained()
            return bots, exits
        finally:
            for bot in bots.values():
                stop(bot)

    bots, (eth_exit, btc_exit) = run(scenario())
    for entry, exit_id, holder in ((btc, btc_exit, "bot-a"), (eth, eth_exit, "bot-b")):
        assert trade_row(migrated_db, entry)["exit_reason"] == "strategy_exit"
        assert signal_row(migrated_db, exit_id)["claimed_by"] == holder
        assert signal_row(migrated_db, exit_id)["status"] == "closed"
        assert rows(migrated_db, "select purpose, status from orders where signal_id = %s order by created_at",
                    entry) == [("entry", "filled"), ("exit", "filled")]
    assert all(not bot.strategy.rejections for bot in bots.values())


def test_a_restarted_bot_keeps_the_grid_it_placed_and_places_none_again(
        store: PostgresStore, migrated_db: str, tmp_path: Path) -> None:
    """The bot dies with its three levels resting. The restarted bot takes the resting limit buys of its filled
    entry as the grid (none placed twice, none reported lost); a level fills, then the take profit of the
    average cancels the two left and sells everything once."""
    signal_id = emit(store, **GRID, take_profit_pct=1.5, stop_loss_pct=8.0)

    async def scenario() -> tuple[Harness, list[tuple[int | None, Decimal | None]]]:
        config = executor_config(tmp_path / "first.jsonl", lost_order_grace_s=5, health_check_interval_s=2)
        first = start(config, PostgresQueue(migrated_db, retry=NO_WAIT))
        await open_position(first, migrated_db, signal_id)
        await first.until(lambda: len(first.exchange.limit_orders) == 3)
        await first.drained()
        stop(first)  # gone, with the grid resting

        second = start(config.model_copy(update={"outbox_path": str(tmp_path / "second.jsonl")}),
                       PostgresQueue(migrated_db, retry=NO_WAIT), exchange=first.exchange)
        try:
            await second.until(lambda: signal_id in second.strategy.positions)
            await second.step(20)  # several health checks past the lost-order grace
            position = second.strategy.positions[signal_id]
            levels = sorted(((o.level, o.price) for o in position.open_orders()), key=lambda x: x[0] or 0)
            assert len(second.exchange.limit_orders) == 3
            second.book("BTC-USDT", 98.4)
            await second.until(lambda: len(second.exchange.limit_orders) == 2)
            second.book("BTC-USDT", 101.5)
            await second.until(lambda: signal_id not in second.strategy.positions)
            await second.drained()
            return second, levels
        finally:
            stop(second)

    second, levels = run(scenario())
    assert [level for level, _ in levels] == [1, 2, 3]
    assert levels[0][1] > levels[1][1] > levels[2][1]  # level 1 nearest the entry
    assert second.strategy.health["lost_reconciled"] == 0
    statuses = rows(migrated_db, "select purpose, order_type, status, count(*) from orders where signal_id = %s"
                                 " group by 1, 2, 3 order by 1, 2, 3", signal_id)
    assert statuses == [("entry", "limit", "cancelled", 2), ("entry", "limit", "filled", 1),
                        ("entry", "market", "filled", 1), ("exit", "market", "filled", 1)]
    trade = trade_row(migrated_db, signal_id)
    assert trade["exit_reason"] == "take_profit"
    done = fills(migrated_db, signal_id)
    entries = [f for f in done if f[0] == "entry"]
    [sold] = [f for f in done if f[0] == "exit"]
    assert trade["entry_price"] == pytest.approx(sum(f[2] * f[3] for f in entries) / sum(f[3] for f in entries))
    assert sold[3] == pytest.approx(sum(f[3] for f in entries) * (1 - FEE))


def test_an_exit_that_arrives_while_its_entry_is_still_sampled_cancels_the_entry(
        store: PostgresStore, migrated_db: str, outbox: Path) -> None:
    """The entry is claimed but not placed yet (its price is still being sampled) when the strategy already
    wants out: no order is placed, the entry is rejected with the reason, the exit is done."""
    signal_id = emit(store, **GRID)

    async def scenario() -> None:
        harness = start(executor_config(outbox, stability_window_s=60), PostgresQueue(migrated_db, retry=NO_WAIT))
        try:
            await harness.until(lambda: signal_id in harness.strategy.pending)
            exit_id = emit(store, side="sell", kind="exit", entry_signal_id=signal_id)
            await harness.until(lambda: signal_row(migrated_db, exit_id)["status"] == "closed")
            await harness.step(70)  # past the stability window: nothing is entered after all
            await harness.drained()
            assert not harness.strategy.positions and harness.strategy.worker.slots.held == 0
        finally:
            stop(harness)

    run(scenario())
    entry = signal_row(migrated_db, signal_id)
    assert entry["status"] == "rejected" and "came before the entry was placed" in entry["reject_reason"]
    assert rows(migrated_db, "select count(*) from orders where signal_id = %s", signal_id) == [(0,)]
