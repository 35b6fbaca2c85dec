"""The signal contract on a real Postgres: emit_signal validates and deduplicates, claim_signals hands out
each signal to one consumer under a lease, ack_signal moves a claim on, heartbeat shows liveness and progress.

The controller side runs as service_role, the Hummingbot side as executor, the test's own checks and
clock tricks (moving expires_at or lease_until into the past) as the superuser that owns the tables.

Creating and migrating a database costs about 0.4 s and this module has ~80 tests, so they share one
migrated database per module and each test starts from empty queue tables (truncated before it runs).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.support.clock import wait_for_database_time

REQUIRED_KEYS = ["strategy", "exchange", "symbol", "side", "price", "quote_amount", "take_profit_pct",
                 "expires_at", "confidence"]
MISSING = object()


def in_future(seconds: float = 3600) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def make_signal(**overrides: Any) -> dict[str, Any]:
    signal: dict[str, Any] = {
        "strategy": "rsi_dip", "exchange": "binance", "symbol": "BTC-USDT", "side": "buy", "price": 65000.5,
        "quote_amount": 100, "take_profit_pct": 1.5, "expires_at": in_future(), "confidence": 0.72,
    }
    signal.update(overrides)
    return {k: v for k, v in signal.items() if v is not MISSING}


@dataclass
class Queue:
    admin: psycopg.Connection  # superuser: inspects rows, moves clocks
    controller: psycopg.Connection  # service_role: emits
    executor: psycopg.Connection  # executor: claims and acks

    def emit(self, **overrides: Any) -> uuid.UUID:
        return self.controller.execute("select emit_signal(%s)", [Jsonb(make_signal(**overrides))]).fetchone()[0]

    def claim(self, consumer: str, max_count: int = 10, lease_seconds: int = 60,
              markets: Any = None) -> list[dict[str, Any]]:
        with self.executor.cursor(row_factory=dict_row) as cur:
            return cur.execute("select * from claim_signals(%s, %s, %s, %s)",
                               [consumer, max_count, lease_seconds,
                                None if markets is None else Jsonb(markets)]).fetchall()

    def claim_ids(self, consumer: str, **kwargs: Any) -> list[uuid.UUID]:
        return [row["id"] for row in self.claim(consumer, **kwargs)]

    def ack(self, signal_id: uuid.UUID, consumer: str, status: str, reason: str | None = None) -> dict[str, Any]:
        with self.executor.cursor(row_factory=dict_row) as cur:
            return cur.execute("select * from ack_signal(%s, %s, %s, %s)",
                               [signal_id, consumer, status, reason]).fetchone()

    def row(self, signal_id: uuid.UUID) -> dict[str, Any]:
        with self.admin.cursor(row_factory=dict_row) as cur:
            return cur.execute("select * from signals where id = %s", [signal_id]).fetchone()

    def count(self) -> int:
        return self.admin.execute("select count(*) from signals").fetchone()[0]

    def expire(self, signal_id: uuid.UUID) -> None:
        self.admin.execute("update signals set expires_at = now() - interval '1 second' where id = %s", [signal_id])

    def end_lease(self, signal_id: uuid.UUID) -> None:
        self.admin.execute("update signals set lease_until = now() - interval '1 second' where id = %s", [signal_id])


@pytest.fixture
def q(module_db: str) -> Iterator[Queue]:
    with (psycopg.connect(module_db, autocommit=True) as admin,
          psycopg.connect(module_db, autocommit=True) as controller,
          psycopg.connect(module_db, autocommit=True) as executor):
        # every table referring to signals (orders, fills, trades, scans, ...) goes with it
        admin.execute("truncate signals, heartbeats cascade")
        controller.execute("set role service_role")
        executor.execute("set role executor")
        yield Queue(admin, controller, executor)


# emit_signal ---------------------------------------------------------------------------------------


def test_a_valid_signal_is_stored_as_new_and_its_uuid_returned(q: Queue) -> None:
    signal_id = q.emit()

    assert isinstance(signal_id, uuid.UUID)
    row = q.row(signal_id)
    assert row["status"] == "new"
    assert (row["strategy"], row["exchange"], row["symbol"], row["side"]) == ("rsi_dip", "binance", "BTC-USDT", "buy")
    assert row["price"] == Decimal("65000.5")
    assert row["quote_amount"] == Decimal("100")
    assert row["take_profit_pct"] == Decimal("1.5")
    assert row["confidence"] == pytest.approx(0.72)
    assert row["features"] == {}
    assert row["claimed_by"] is None and row["claim_count"] == 0
    assert row["expires_at"] > row["created_at"]


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_a_signal_missing_a_required_key_is_refused_naming_it(q: Queue, key: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        q.emit(**{key: MISSING})

    assert f'"{key}"' in refused.value.diag.message_primary
    assert q.count() == 0


@pytest.mark.parametrize(("overrides", "key"), [
    pytest.param({"price": "NaN"}, "price", id="price-NaN-string"),
    pytest.param({"price": 0}, "price", id="price-zero"),
    pytest.param({"price": -1}, "price", id="price-negative"),
    pytest.param({"quote_amount": 0}, "quote_amount", id="quote-amount-zero"),
    pytest.param({"quote_amount": -25}, "quote_amount", id="quote-amount-negative"),
    pytest.param({"take_profit_pct": 0}, "take_profit_pct", id="take-profit-zero"),
    pytest.param({"side": "long"}, "side", id="side-unknown"),
    pytest.param({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at", id="expires-at-past"),
    pytest.param({"expires_at": "tomorrow-ish"}, "expires_at", id="expires-at-not-a-time"),
    pytest.param({"leverage": 10}, "leverage", id="unknown-key"),
    pytest.param({"symbol": "btc-usdt"}, "symbol", id="symbol-lowercase"),
    pytest.param({"symbol": "BTCUSDT"}, "symbol", id="symbol-without-dash"),
    pytest.param({"symbol": "BTC/USDT"}, "symbol", id="symbol-with-slash"),
    pytest.param({"confidence": 1.2}, "confidence", id="confidence-above-one"),
    pytest.param({"strategy": ""}, "strategy", id="strategy-empty"),
    pytest.param({"time_limit_s": 1.5}, "time_limit_s", id="time-limit-fractional"),
    pytest.param({"trailing_activation_pct": 1.0}, "trailing_delta_pct", id="trailing-activation-alone"),
    pytest.param({"trailing_delta_pct": 0.3}, "trailing_activation_pct", id="trailing-delta-alone"),
    pytest.param({"features": [1, 2]}, "features", id="features-not-object"),
])
def test_an_invalid_signal_is_refused_naming_the_key_and_nothing_is_inserted(
        q: Queue, overrides: dict[str, Any], key: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        q.emit(**overrides)

    assert f'"{key}"' in refused.value.diag.message_primary
    assert q.count() == 0


def test_optional_keys_are_stored(q: Queue) -> None:
    features = {"rsi": 27.4, "volume_z": 2.1, "regime": "trend"}
    signal_id = q.emit(stop_loss_pct=0.8, time_limit_s=3600, trailing_activation_pct=1.0, trailing_delta_pct=0.3,
                       ml_confidence=0.64, model_version="lgbm-2024-06-01", params_hash="a1b2c3", features=features)

    row = q.row(signal_id)
    assert row["stop_loss_pct"] == Decimal("0.8")
    assert row["time_limit_s"] == 3600
    assert row["trailing_activation_pct"] == Decimal("1.0")
    assert row["trailing_delta_pct"] == Decimal("0.3")
    assert row["ml_confidence"] == pytest.approx(0.64)
    assert row["model_version"] == "lgbm-2024-06-01"
    assert row["params_hash"] == "a1b2c3"
    assert row["features"] == features


def test_a_second_open_signal_for_the_same_market_is_a_duplicate(q: Queue) -> None:
    first = q.emit()

    with pytest.raises(psycopg.errors.UniqueViolation) as refused:
        q.emit(price=65100)

    assert str(first) in refused.value.diag.message_primary
    assert q.count() == 1
    assert q.row(first)["price"] == Decimal("65000.5")


@pytest.mark.parametrize("state", ["claimed", "executing"])
def test_a_claimed_or_executing_signal_still_blocks_a_duplicate(q: Queue, state: str) -> None:
    first = q.emit()
    q.claim("bot-a")
    if state == "executing":
        q.ack(first, "bot-a", "executing")

    with pytest.raises(psycopg.errors.UniqueViolation):
        q.emit()
    assert q.count() == 1


def test_another_strategy_symbol_or_exchange_is_not_a_duplicate(q: Queue) -> None:
    ids = {q.emit(), q.emit(strategy="breakout"), q.emit(symbol="ETH-USDT"), q.emit(exchange="kraken")}

    assert len(ids) == 4
    assert q.count() == 4


@pytest.mark.parametrize("outcome", ["rejected", "closed"])
def test_once_the_first_signal_is_finished_a_new_one_is_accepted(q: Queue, outcome: str) -> None:
    first = q.emit()
    q.claim("bot-a")
    if outcome == "rejected":
        q.ack(first, "bot-a", "rejected", "spread too wide")
    else:
        q.ack(first, "bot-a", "executing")
        q.ack(first, "bot-a", "closed")

    second = q.emit()

    assert second != first
    assert q.row(first)["status"] == outcome
    assert q.row(second)["status"] == "new"


def test_a_signal_that_expired_unclaimed_no_longer_blocks_a_new_one(q: Queue) -> None:
    first = q.emit()
    q.expire(first)

    second = q.emit()

    assert q.row(second)["status"] == "new"
    old = q.row(first)
    assert old["status"] == "expired"
    assert old["finished_at"] is not None


def test_a_signal_that_expires_by_the_clock_no_longer_blocks_a_new_one(q: Queue) -> None:
    first = q.emit(expires_at=in_future(0.5))
    with pytest.raises(psycopg.errors.UniqueViolation):
        q.emit()
    wait_for_database_time(q.admin, q.row(first)["expires_at"])

    second = q.emit()

    assert q.row(first)["status"] == "expired"
    assert q.row(second)["status"] == "new"


# claim_signals -------------------------------------------------------------------------------------


def test_claims_hand_out_the_oldest_signals_first(q: Queue) -> None:
    a, b, c = q.emit(symbol="AAA-USDT"), q.emit(symbol="BBB-USDT"), q.emit(symbol="CCC-USDT")
    # creation times that differ from the insertion order: c is the oldest, then a, then b
    for signal_id, minutes_ago in [(c, 30), (a, 20), (b, 10)]:
        q.admin.execute("update signals set created_at = now() - make_interval(mins => %s) where id = %s",
                        [minutes_ago, signal_id])

    assert q.claim_ids("bot-a", max_count=2) == [c, a]
    assert q.claim_ids("bot-a", max_count=2) == [b]


def test_a_claim_hands_out_at_most_max_count_and_nothing_twice(q: Queue) -> None:
    emitted = [q.emit(symbol=f"S{i}-USDT") for i in range(5)]

    first = q.claim_ids("bot-a", max_count=2)
    second = q.claim_ids("bot-b", max_count=10)
    third = q.claim_ids("bot-c", max_count=10)

    assert first == emitted[:2]
    assert second == emitted[2:]
    assert third == []
    assert q.claim_ids("bot-a", max_count=10) == []  # claims with a live lease are not handed out again
    assert {q.row(i)["claimed_by"] for i in emitted[:2]} == {"bot-a"}
    assert {q.row(i)["claimed_by"] for i in emitted[2:]} == {"bot-b"}


def test_a_claim_sets_the_lease_and_the_claim_fields(q: Queue) -> None:
    signal_id = q.emit()

    [handed] = q.claim("bot-a", lease_seconds=90)

    row = q.row(signal_id)
    assert handed["id"] == signal_id and handed["status"] == "claimed"
    assert row["status"] == "claimed"
    assert row["claimed_by"] == "bot-a"
    assert row["claim_count"] == 1
    assert row["claimed_at"] is not None
    assert row["lease_until"] - row["claimed_at"] == timedelta(seconds=90)  # both from the claim's now()


def test_only_new_unexpired_signals_are_handed_out(q: Queue) -> None:
    claimed = q.emit(symbol="CLM-USDT")
    executing = q.emit(symbol="EXE-USDT")
    rejected = q.emit(symbol="REJ-USDT")
    closed = q.emit(symbol="CLO-USDT")
    assert set(q.claim_ids("bot-a")) == {claimed, executing, rejected, closed}
    q.ack(executing, "bot-a", "executing")
    q.ack(rejected, "bot-a", "rejected", "balance too low")
    q.ack(closed, "bot-a", "closed")
    expired = q.emit(symbol="EXP-USDT")
    q.expire(expired)
    fresh = q.emit(symbol="NEW-USDT")

    assert q.claim_ids("bot-b") == [fresh]
    assert q.claim_ids("bot-b") == []


def test_a_signal_past_its_expiry_becomes_expired_instead_of_being_handed_out(q: Queue) -> None:
    stale = q.emit(symbol="OLD-USDT")
    q.expire(stale)
    live = q.emit(symbol="NEW-USDT")

    assert q.claim_ids("bot-a") == [live]

    row = q.row(stale)
    assert row["status"] == "expired"
    assert row["finished_at"] is not None
    assert row["claimed_by"] is None and row["claim_count"] == 0


def test_a_claimed_signal_past_its_expiry_and_lease_becomes_expired(q: Queue) -> None:
    signal_id = q.emit()
    q.claim("bot-a")
    q.expire(signal_id)
    q.end_lease(signal_id)

    assert q.claim_ids("bot-b") == []

    row = q.row(signal_id)
    assert row["status"] == "expired"
    assert row["claimed_by"] == "bot-a" and row["lease_until"] is None


MARKET_SIGNALS = [("binance", "BTC-USDT"), ("binance", "ETH-USDT"), ("kraken", "BTC-USD"), ("kraken", "ETH-USD"),
                  ("coinbase", "BTC-USD")]


def test_a_markets_filter_limits_the_claim_so_bots_on_different_exchanges_share_one_queue(q: Queue) -> None:
    ids = {market: q.emit(exchange=market[0], symbol=market[1]) for market in MARKET_SIGNALS}

    binance_btc = q.claim_ids("bot-binance", markets=[{"exchange": "binance", "symbols": ["BTC-USDT"]}])
    kraken_all = q.claim_ids("bot-kraken", markets=[{"exchange": "kraken"}])
    nothing_left = q.claim_ids("bot-kraken", markets=[{"exchange": "kraken"}])
    mixed = q.claim_ids("bot-mixed", markets=[{"exchange": "binance", "symbols": ["ETH-USDT", "SOL-USDT"]},
                                              {"exchange": "coinbase"}])

    assert binance_btc == [ids["binance", "BTC-USDT"]]
    assert set(kraken_all) == {ids["kraken", "BTC-USD"], ids["kraken", "ETH-USD"]}
    assert nothing_left == []
    assert set(mixed) == {ids["binance", "ETH-USDT"], ids["coinbase", "BTC-USD"]}


def test_a_markets_filter_for_an_exchange_without_signals_hands_out_nothing(q: Queue) -> None:
    q.emit(exchange="binance")

    assert q.claim_ids("bot-okx", markets=[{"exchange": "okx"}]) == []
    assert q.claim_ids("bot-binance", markets=[{"exchange": "binance", "symbols": ["ETH-USDT"]}]) == []
    assert q.claim_ids("bot-any") != []


def test_a_claim_whose_lease_ran_out_returns_to_the_queue_for_another_consumer(q: Queue) -> None:
    signal_id = q.emit()
    [first] = q.claim("bot-a", lease_seconds=1)
    assert q.claim_ids("bot-b") == []  # the lease still holds

    wait_for_database_time(q.admin, first["lease_until"])
    [second] = q.claim("bot-b", lease_seconds=60)

    assert second["id"] == signal_id
    row = q.row(signal_id)
    assert row["claimed_by"] == "bot-b"
    assert row["claim_count"] == 2
    assert row["claimed_at"] == first["claimed_at"]  # the first claim is remembered
    assert row["lease_until"] > first["lease_until"]


@pytest.mark.parametrize(("args", "named"), [
    pytest.param(("bot-a", -1, 60, None), "max_count", id="max-count-negative"),  # 0: exits only (0018)
    pytest.param(("bot-a", 1001, 60, None), "max_count", id="max-count-too-large"),
    pytest.param(("bot-a", 10, 0, None), "lease_seconds", id="lease-zero"),
    pytest.param(("bot-a", 10, None, None), "lease_seconds", id="lease-null"),
    pytest.param(("bot-a", 10, 60, Jsonb({"exchange": "binance"})), "markets", id="markets-not-an-array"),
    pytest.param(("", 10, 60, None), "consumer", id="consumer-empty"),
])
def test_a_claim_with_bad_arguments_is_refused_and_claims_nothing(q: Queue, args: tuple, named: str) -> None:
    signal_id = q.emit()

    with pytest.raises(psycopg.errors.InvalidParameterValue) as refused:
        q.executor.execute("select * from claim_signals(%s, %s, %s, %s)", list(args))

    assert named in refused.value.diag.message_primary
    assert q.row(signal_id)["status"] == "new"


# ack_signal ----------------------------------------------------------------------------------------


def test_the_claiming_consumer_moves_a_signal_to_executing_then_closed(q: Queue) -> None:
    signal_id = q.emit()
    q.claim("bot-a")

    executing = q.ack(signal_id, "bot-a", "executing")
    assert executing["status"] == "executing"
    assert executing["executing_at"] is not None
    assert executing["lease_until"] is None  # an executing signal is never handed out again
    assert executing["finished_at"] is None
    q.end_lease(signal_id)
    assert q.claim_ids("bot-b") == []

    closed = q.ack(signal_id, "bot-a", "closed")
    assert closed["status"] == "closed"
    assert closed["finished_at"] is not None
    assert closed["executing_at"] == executing["executing_at"]
    assert q.row(signal_id) == closed


def test_a_rejection_needs_a_reason_and_stores_it(q: Queue) -> None:
    signal_id = q.emit()
    q.claim("bot-a")

    for reason in [None, ""]:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="reason"):
            q.ack(signal_id, "bot-a", "rejected", reason)
    assert q.row(signal_id)["status"] == "claimed"

    rejected = q.ack(signal_id, "bot-a", "rejected", "min notional not met")
    assert rejected["status"] == "rejected"
    assert rejected["reject_reason"] == "min notional not met"
    assert rejected["finished_at"] is not None


def test_only_the_consumer_holding_the_claim_may_ack(q: Queue) -> None:
    signal_id = q.emit()
    q.claim("bot-a")
    before = q.row(signal_id)

    with pytest.raises(psycopg.Error, match="bot-a") as refused:
        q.ack(signal_id, "bot-b", "executing")
    assert refused.value.sqlstate == "PT409"  # claim taken: its own code (migration 0012), not a privilege error

    assert q.row(signal_id) == before


@pytest.mark.parametrize("status", ["executing", "rejected", "closed"])
def test_a_repeated_ack_changes_nothing(q: Queue, status: str) -> None:
    signal_id = q.emit()
    q.claim("bot-a")
    if status == "closed":
        q.ack(signal_id, "bot-a", "executing")
    q.ack(signal_id, "bot-a", status, "stale price")
    before = q.row(signal_id)
    wait_for_database_time(q.admin, before["finished_at"] or before["executing_at"])  # a later now() would show

    again = q.ack(signal_id, "bot-a", status, "another reason")

    assert q.row(signal_id) == before
    assert again == before


@pytest.mark.parametrize(("path", "illegal"), [
    pytest.param(["rejected"], "executing", id="rejected-to-executing"),
    pytest.param(["rejected"], "closed", id="rejected-to-closed"),
    pytest.param(["executing", "closed"], "executing", id="closed-to-executing"),
    pytest.param(["executing", "closed"], "rejected", id="closed-to-rejected"),
    pytest.param(["executing"], "rejected", id="executing-to-rejected"),
])
def test_an_illegal_transition_is_refused(q: Queue, path: list[str], illegal: str) -> None:
    signal_id = q.emit()
    q.claim("bot-a")
    for status in path:
        q.ack(signal_id, "bot-a", status, "no edge")
    before = q.row(signal_id)

    with pytest.raises(psycopg.errors.InvalidParameterValue, match="cannot become"):
        q.ack(signal_id, "bot-a", illegal, "second thoughts")

    assert q.row(signal_id) == before


def test_an_unclaimed_signal_cannot_be_acked(q: Queue) -> None:
    signal_id = q.emit()

    with pytest.raises(psycopg.Error, match="nobody") as refused:
        q.ack(signal_id, "bot-a", "executing")
    assert refused.value.sqlstate == "PT409"

    assert q.row(signal_id)["status"] == "new"


@pytest.mark.parametrize("status", ["claimed", "new", "expired", "", None])
def test_an_ack_to_a_status_other_than_executing_rejected_closed_is_refused(q: Queue, status: str | None) -> None:
    signal_id = q.emit()
    q.claim("bot-a")

    with pytest.raises(psycopg.errors.InvalidParameterValue, match="status"):
        q.ack(signal_id, "bot-a", status)  # type: ignore[arg-type]

    assert q.row(signal_id)["status"] == "claimed"


def test_an_ack_of_an_unknown_signal_is_refused(q: Queue) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="unknown signal"):
        q.ack(uuid.uuid4(), "bot-a", "executing")


def test_after_the_lease_expired_and_another_consumer_reclaimed_the_first_ack_is_refused(q: Queue) -> None:
    signal_id = q.emit()
    q.claim("bot-a")
    q.end_lease(signal_id)
    assert q.claim_ids("bot-b") == [signal_id]

    with pytest.raises(psycopg.Error, match="bot-b") as refused:
        q.ack(signal_id, "bot-a", "executing")
    assert refused.value.sqlstate == "PT409"

    assert q.ack(signal_id, "bot-b", "executing")["status"] == "executing"
    assert q.row(signal_id)["claimed_by"] == "bot-b"


def test_an_expired_signal_cannot_be_acked_by_its_former_claimer(q: Queue) -> None:
    signal_id = q.emit()
    q.claim("bot-a")
    q.expire(signal_id)
    q.end_lease(signal_id)
    q.claim("bot-b")  # the sweep marks it expired

    with pytest.raises(psycopg.errors.InvalidParameterValue, match="cannot become"):
        q.ack(signal_id, "bot-a", "executing")
    assert q.row(signal_id)["status"] == "expired"


# heartbeat -----------------------------------------------------------------------------------------


def heartbeat_row(q: Queue, component: str) -> dict[str, Any]:
    with q.admin.cursor(row_factory=dict_row) as cur:
        return cur.execute("select * from heartbeats where component = %s", [component]).fetchone()


def beat(q: Queue, component: str, progress: dict[str, Any]) -> None:
    wait_for_database_time(q.admin, q.admin.execute("select clock_timestamp()").fetchone()[0])  # distinct now()
    q.executor.execute("select heartbeat(%s, %s)", [component, Jsonb(progress)])


def test_heartbeat_inserts_then_updates_last_seen_every_call_and_last_progress_only_on_change(q: Queue) -> None:
    beat(q, "hb-bot-1", {"claimed": 3, "last_signal": "a"})
    first = heartbeat_row(q, "hb-bot-1")
    assert first["progress"] == {"claimed": 3, "last_signal": "a"}
    assert first["first_seen"] == first["last_seen"] == first["last_progress_at"]

    beat(q, "hb-bot-1", {"last_signal": "a", "claimed": 3})  # same progress, keys in another order
    same = heartbeat_row(q, "hb-bot-1")
    assert same["last_seen"] > first["last_seen"]
    assert same["last_progress_at"] == first["last_progress_at"]
    assert same["first_seen"] == first["first_seen"]

    beat(q, "hb-bot-1", {"claimed": 4, "last_signal": "b"})
    moved = heartbeat_row(q, "hb-bot-1")
    assert moved["progress"] == {"claimed": 4, "last_signal": "b"}
    assert moved["last_seen"] > same["last_seen"]
    assert moved["last_progress_at"] == moved["last_seen"]
    assert moved["first_seen"] == first["first_seen"]

    assert q.admin.execute("select count(*) from heartbeats").fetchone()[0] == 1


def test_heartbeats_of_components_are_kept_apart(q: Queue) -> None:
    beat(q, "hb-bot-1", {"n": 1})
    beat(q, "hb-bot-2", {"n": 7})

    assert heartbeat_row(q, "hb-bot-1")["progress"] == {"n": 1}
    assert heartbeat_row(q, "hb-bot-2")["progress"] == {"n": 7}


@pytest.mark.parametrize(("component", "progress", "named"), [
    pytest.param("", Jsonb({}), "component", id="component-empty"),
    pytest.param(None, Jsonb({}), "component", id="component-null"),
    pytest.param("hb-bot-1", Jsonb([1, 2]), "progress", id="progress-array"),
])
def test_a_heartbeat_with_bad_arguments_is_refused(q: Queue, component: str | None, progress: Jsonb,
                                                   named: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=named):
        q.executor.execute("select heartbeat(%s, %s)", [component, progress])

    assert q.admin.execute("select count(*) from heartbeats").fetchone()[0] == 0


def test_null_symbols_in_a_markets_filter_mean_every_pair_of_that_exchange(q: Queue) -> None:
    ids = {q.emit(exchange="kraken", symbol=symbol) for symbol in ("BTC-USD", "ETH-USD")}
    q.emit(exchange="binance")
    assert set(q.claim_ids("bot-kraken", markets=[{"exchange": "kraken", "symbols": None}])) == ids


def test_null_features_are_stored_as_no_features(q: Queue) -> None:
    signal_id = q.emit(features=None)
    assert q.row(signal_id)["features"] == {}
