"""report_order_event on a real Postgres: events may arrive twice or in any order (reconnects, retries,
a restarted bot replaying its log) and still give the same orders, fills and trades; a bad event is
refused naming the key and writes nothing.

The tests share one migrated database per module (creating one costs about 0.4 s); each starts from
empty signals, orders, fills and trades.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

T0 = datetime(2024, 6, 3, 14, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def trade_events(signal_id: uuid.UUID) -> list[dict[str, Any]]:
    """One round trip as the Hummingbot script reports it: a limit buy filled in two parts, a market sell,
    then the closed position."""
    sid = str(signal_id)
    market = {"signal_id": sid, "consumer": "bot-a", "exchange": "binance", "symbol": "BTC-USDT"}
    entry = {**market, "client_order_id": "buy-BTCUSDT-1717423200001", "side": "buy", "purpose": "entry",
             "order_type": "limit", "exchange_order_id": "28457193"}
    exit_ = {**market, "client_order_id": "sell-BTCUSDT-1717423500002", "side": "sell", "purpose": "exit",
             "order_type": "market", "exchange_order_id": "28459911"}
    return [
        {**entry, "type": "order_created", "ts": at(0), "price": 65000.0, "amount": 0.002},
        {**entry, "type": "order_filled", "ts": at(2.5), "exchange_trade_id": "T-9001", "price": 64999.5,
         "amount": 0.0012, "fee_quote": 0.078, "fee_asset": "USDT", "fee_amount": 0.078},
        {**entry, "type": "order_filled", "ts": at(4), "exchange_trade_id": "T-9002", "price": 65000.0,
         "amount": 0.0008, "fee_quote": 0.052, "fee_asset": "BNB", "fee_amount": 0.000087},
        {**entry, "type": "order_completed", "ts": at(4.1)},
        {**exit_, "type": "order_created", "ts": at(300), "amount": 0.002},
        {**exit_, "type": "order_filled", "ts": at(300.4), "exchange_trade_id": "T-9377", "price": 65975.2,
         "amount": 0.002, "fee_quote": 0.132, "fee_asset": "USDT", "fee_amount": 0.132},
        {**exit_, "type": "order_completed", "ts": at(300.5)},
        {**market, "type": "position_closed", "ts": at(300.6), "side": "buy", "amount": 0.002,
         "entry_price": 64999.7, "exit_price": 65975.2, "fees_quote": 0.262, "pnl_quote": 1.689,
         "pnl_pct": 1.2993, "exit_reason": "take_profit", "opened_at": at(4.1), "closed_at": at(300.5)},
    ]


class Db:
    def __init__(self, admin: psycopg.Connection, executor: psycopg.Connection) -> None:
        self.admin = admin  # superuser: resets and inspects
        self.executor = executor  # the Hummingbot script's role

    def report(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.executor.execute("select report_order_event(%s)", [Jsonb(event)]).fetchone()[0]

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        with self.admin.cursor(row_factory=dict_row) as cur:
            return {
                "orders": cur.execute("select * from orders order by client_order_id").fetchall(),
                "fills": cur.execute("select * from fills order by client_order_id, exchange_trade_id").fetchall(),
                "trades": cur.execute("select * from trades order by signal_id").fetchall(),
            }

    def counts(self) -> tuple[int, int, int]:
        return self.admin.execute("select (select count(*) from orders), (select count(*) from fills),"
                                  " (select count(*) from trades)").fetchone()

    def signal_status(self, signal_id: uuid.UUID) -> str:
        return self.admin.execute("select status from signals where id = %s", [signal_id]).fetchone()[0]

    def reset(self, signal_id: uuid.UUID) -> None:
        """No orders, fills or trades; the signal is being executed again."""
        self.admin.execute("truncate fills, orders, trades")
        self.admin.execute("update signals set status = 'executing', finished_at = null where id = %s", [signal_id])


@pytest.fixture
def db(module_db: str) -> Iterator[Db]:
    with (psycopg.connect(module_db, autocommit=True) as admin,
          psycopg.connect(module_db, autocommit=True) as executor):
        admin.execute("truncate signals cascade")  # with the orders, fills and trades that refer to them
        executor.execute("set role executor")
        yield Db(admin, executor)


def executing_signal(db: Db, symbol: str = "BTC-USDT") -> uuid.UUID:
    """A signal emitted by the controller, claimed and being executed by bot-a."""
    signal = {"strategy": "rsi_dip", "exchange": "binance", "symbol": symbol, "side": "buy", "price": 65000,
              "quote_amount": 130, "take_profit_pct": 1.5, "confidence": 0.7,
              "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}
    signal_id = db.admin.execute("select emit_signal(%s)", [Jsonb(signal)]).fetchone()[0]
    db.executor.execute("select claim_signals('bot-a', 10, 60)")
    db.executor.execute("select ack_signal(%s, 'bot-a', 'executing')", [signal_id])
    return signal_id


def assert_filled_amounts_are_sums_of_fills(db: Db) -> None:
    mismatched = db.admin.execute("""
        select o.client_order_id, o.filled_amount, coalesce(sum(f.amount), 0)
          from orders o left join fills f using (client_order_id)
         group by o.client_order_id, o.filled_amount
        having o.filled_amount <> coalesce(sum(f.amount), 0)""").fetchall()
    assert mismatched == []


def test_a_round_trip_reported_in_order_gives_orders_fills_and_a_trade(db: Db) -> None:
    signal_id = executing_signal(db)
    events = trade_events(signal_id)

    replies = [db.report(e) for e in events]

    assert replies[2] == {"client_order_id": "buy-BTCUSDT-1717423200001", "status": "partially_filled",
                          "filled_amount": 0.002}
    rows = db.rows()
    entry, exit_ = sorted(rows["orders"], key=lambda o: o["purpose"])
    assert (entry["status"], str(entry["filled_amount"]), str(entry["price"]), str(entry["amount"])) == (
        "filled", "0.0020", "65000.0", "0.002")
    assert entry["created_at"] == T0 and entry["updated_at"] == T0 + timedelta(seconds=4.1)
    assert entry["exchange_order_id"] == "28457193" and entry["consumer"] == "bot-a"
    assert (exit_["status"], str(exit_["filled_amount"]), exit_["order_type"]) == ("filled", "0.002", "market")
    assert [(f["exchange_trade_id"], str(f["fee_quote"]), f["fee_asset"]) for f in rows["fills"]] == [
        ("T-9001", "0.078", "USDT"), ("T-9002", "0.052", "BNB"), ("T-9377", "0.132", "USDT")]
    [trade] = rows["trades"]
    assert (trade["signal_id"], str(trade["pnl_quote"]), trade["exit_reason"]) == (signal_id, "1.689", "take_profit")
    assert db.signal_status(signal_id) == "closed"
    assert_filled_amounts_are_sums_of_fills(db)


def test_any_order_with_any_duplicates_gives_the_same_rows_as_the_sequence_once(db: Db) -> None:
    signal_id = executing_signal(db)
    events = trade_events(signal_id)
    db.reset(signal_id)
    for event in events:
        db.report(event)
    expected = db.rows()
    assert [len(expected[t]) for t in ("orders", "fills", "trades")] == [2, 3, 1]

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(order=st.permutations(events),
           duplicates=st.lists(st.tuples(st.sampled_from(events), st.integers(min_value=0)), max_size=10))
    def replay(order: list[dict[str, Any]], duplicates: list[tuple[dict[str, Any], int]]) -> None:
        sequence = list(order)
        for event, position in duplicates:
            sequence.insert(position % (len(sequence) + 1), event)
        db.reset(signal_id)

        for event in sequence:
            db.report(event)

        assert db.rows() == expected
        assert db.signal_status(signal_id) == "closed"
        assert_filled_amounts_are_sums_of_fills(db)

    replay()


def test_a_replayed_log_on_top_of_the_applied_one_changes_nothing(db: Db) -> None:
    signal_id = executing_signal(db)
    events = trade_events(signal_id)
    for event in events:
        db.report(event)
    before = db.rows()

    for event in reversed(events):
        db.report(event)

    assert db.rows() == before


def test_order_status_never_goes_backwards(db: Db) -> None:
    signal_id = executing_signal(db)
    created, fill_1, fill_2, completed = trade_events(signal_id)[:4]
    for event in [created, fill_1, fill_2, completed]:
        db.report(event)

    for late in [created, fill_1, {**created, "ts": at(-1)}]:
        reply = db.report(late)
        assert reply["status"] == "filled"

    [order] = db.rows()["orders"]
    assert order["status"] == "filled"
    assert order["created_at"] == T0 - timedelta(seconds=1)  # the earliest event time seen
    assert order["updated_at"] == T0 + timedelta(seconds=4.1)  # the latest event time seen


def test_a_cancel_after_a_partial_fill_is_kept_even_if_the_fill_report_comes_last(db: Db) -> None:
    signal_id = executing_signal(db)
    created, fill_1 = trade_events(signal_id)[:2]
    cancelled = {k: v for k, v in created.items() if k not in ("price", "amount")}
    cancelled.update(type="order_cancelled", ts=at(60), reason="time limit")

    for event in [created, cancelled, fill_1]:
        db.report(event)

    [order] = db.rows()["orders"]
    assert (order["status"], order["failure_reason"], str(order["filled_amount"])) == (
        "cancelled", "time limit", "0.0012")


def test_filled_amount_is_the_sum_of_the_fills_whatever_their_order(db: Db) -> None:
    signal_id = executing_signal(db)
    created, fill_1, fill_2 = trade_events(signal_id)[:3]
    fill_3 = {**fill_2, "exchange_trade_id": "T-9003", "amount": 0.0001, "ts": at(5)}

    for event, filled in [(fill_2, "0.0008"), (fill_2, "0.0008"), (created, "0.0008"), (fill_3, "0.0009"),
                          (fill_1, "0.0021"), (fill_1, "0.0021")]:
        assert str(db.report(event)["filled_amount"]) == filled
    assert_filled_amounts_are_sums_of_fills(db)
    assert db.counts() == (1, 3, 0)


def without(event: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != key}


BAD_EVENTS = [
    # (make the bad event from the realistic ones, the key its error must name)
    pytest.param(lambda ev, sid: {**ev[0], "type": "order_exploded"}, "type", id="unknown-type"),
    pytest.param(lambda ev, sid: without(ev[0], "type"), "type", id="missing-type"),
    pytest.param(lambda ev, sid: without(ev[1], "client_order_id"), "client_order_id", id="missing-client-order-id"),
    pytest.param(lambda ev, sid: without(ev[5], "exchange_trade_id"), "exchange_trade_id",
                 id="fill-of-a-new-order-without-trade-id"),
    pytest.param(lambda ev, sid: {**ev[1], "exchange_trade_id": "T-1", "price": "abc"}, "price",
                 id="fill-price-abc"),
    pytest.param(lambda ev, sid: {**ev[4], "price": "abc"}, "price", id="new-order-price-abc"),
    pytest.param(lambda ev, sid: {**ev[2], "exchange_trade_id": "T-2", "amount": "NaN"}, "amount",
                 id="fill-amount-NaN"),
    pytest.param(lambda ev, sid: {**ev[4], "signal_id": str(uuid.uuid4())}, "unknown signal",
                 id="unknown-signal-id"),
    pytest.param(lambda ev, sid: {**ev[4], "signal_id": "not-a-uuid"}, "signal_id", id="signal-id-not-a-uuid"),
    pytest.param(lambda ev, sid: {**ev[1], "exchange_trade_id": "T-3", "slippage": 0.1}, "slippage",
                 id="unknown-key"),
    pytest.param(lambda ev, sid: without(ev[4], "ts"), "ts", id="missing-ts"),
    pytest.param(lambda ev, sid: {**ev[4], "ts": "yesterday at noon"}, "ts", id="ts-not-a-time"),
    pytest.param(lambda ev, sid: without(ev[7], "pnl_quote"), "pnl_quote", id="position-without-pnl"),
]


@pytest.mark.parametrize(("make_bad", "named"), BAD_EVENTS)
def test_a_bad_event_is_refused_naming_the_key_and_writes_nothing(db: Db, make_bad: Any, named: str) -> None:
    signal_id = executing_signal(db)
    events = trade_events(signal_id)
    for event in events[:3]:  # the entry order exists, with its two fills
        db.report(event)
    before = db.rows()

    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        db.report(make_bad(events, signal_id))

    assert named in refused.value.diag.message_primary
    assert db.rows() == before
    assert db.signal_status(signal_id) == "executing"


def test_an_order_reported_for_another_signal_is_refused_and_writes_nothing(db: Db) -> None:
    signal_id = executing_signal(db)
    other_id = executing_signal(db, symbol="ETH-USDT")
    created, fill_1 = trade_events(signal_id)[:2]
    db.report(created)
    before = db.rows()

    stray_fill = {**fill_1, "signal_id": str(other_id)}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="belongs to signal"):
        db.report(stray_fill)

    assert db.rows() == before
