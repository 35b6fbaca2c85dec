"""Exit signals, the DCA grid and simulated time in the real queue (migration 0013), as the executor sees them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pandas as pd
import psycopg
import pytest
from psycopg.types.json import Jsonb

from bridge.queue_client import PostgresQueue
from bridge.resilience import RetryPolicy
from bridge.schemas import NewSignal
from controller.config import ControllerConfig
from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir
from controller.data.storage.port import SignalRejected
from controller.data.storage.postgres import PostgresStore
from controller.scan.pipeline import LoopConfig, Scanner
from controller.scan.regime import RegimeParams
from controller.scan.signals import QuoteSizing, SizingParams
from controller.scan.strategy_params import load_strategies

NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=3)


@pytest.fixture
def queue(migrated_db: str) -> Iterator[PostgresQueue]:
    client = PostgresQueue(migrated_db, retry=NO_WAIT)
    yield client
    client.close()


def entry(**extra: object) -> NewSignal:
    fields: dict[str, object] = {
        "strategy": "channel", "exchange": "bittrex", "symbol": "ETH-BTC", "side": "buy", "price": 0.1,
        "quote_amount": 0.002, "take_profit_pct": 4.0, "stop_loss_pct": 14.6, "confidence": 0.7,
        "expires_at": datetime.now(UTC) + timedelta(minutes=10)}
    return NewSignal(**{**fields, **extra})


def exit_for(entry_id: UUID, **extra: object) -> NewSignal:
    return entry(side="sell", kind="exit", entry_signal_id=entry_id, confidence=1.0, **extra)


def executing(queue: PostgresQueue, signal_id: UUID) -> None:
    [claimed] = queue.claim("hb-1", 1, 60)
    assert claimed.id == signal_id
    queue.ack(signal_id, "hb-1", "executing")


def test_an_exit_for_an_executing_entry_is_queued_once_and_claimed_with_its_reference(
        store: PostgresStore, queue: PostgresQueue) -> None:
    entry_id = store.emit_signal(entry())
    executing(queue, entry_id)

    exit_id = store.emit_signal(exit_for(entry_id))
    with pytest.raises(SignalRejected, match="duplicate: exit signal"):
        store.emit_signal(exit_for(entry_id))  # once: one open exit per entry
    [claimed] = queue.claim("hb-1", 5, 60)
    assert (claimed.id, claimed.kind, claimed.side, claimed.entry_signal_id) == (exit_id, "exit", "sell", entry_id)


def test_an_exit_is_claimed_only_by_the_consumer_holding_its_entry(store: PostgresStore, queue: PostgresQueue) -> None:
    """Two bots on one queue (migration 0018): the exit goes to the bot that holds the entry's position; the other
    never sees it, even when it claims with room to spare."""
    entry_id = store.emit_signal(entry())
    executing(queue, entry_id)  # hb-1 holds the position
    exit_id = store.emit_signal(exit_for(entry_id))
    other = store.emit_signal(entry(symbol="LTC-BTC"))

    assert [s.id for s in queue.claim("hb-2", 10, 60)] == [other]  # hb-2 gets the entry, not the exit
    assert queue.claim("hb-2", 10, 60) == []
    [claimed] = queue.claim("hb-1", 10, 60)
    assert (claimed.id, claimed.claimed_by) == (exit_id, "hb-1")


def test_a_bot_with_full_slots_still_gets_the_exits_of_its_positions(store: PostgresStore,
                                                                   queue: PostgresQueue) -> None:
    """Exits come on top of max_count, and max_count 0 asks for exits only: a bot at its position limit is handed
    the exit that frees a slot, and no entry it would have to refuse."""
    entry_id = store.emit_signal(entry())
    executing(queue, entry_id)
    waiting = store.emit_signal(entry(symbol="LTC-BTC"))
    exit_id = store.emit_signal(exit_for(entry_id))

    assert [s.id for s in queue.claim("hb-1", 0, 60)] == [exit_id]
    assert queue.claim("hb-1", 0, 60) == []
    assert [s.id for s in queue.claim("hb-1", 1, 60)] == [waiting]


@pytest.mark.parametrize("fate", ["never filled", "closed by its barrier"])
def test_an_exit_whose_position_closed_before_it_was_claimed_is_rejected_with_the_reason(
        store: PostgresStore, queue: PostgresQueue, migrated_db: str, fate: str) -> None:
    entry_id = store.emit_signal(entry())
    executing(queue, entry_id)
    exit_id = store.emit_signal(exit_for(entry_id))
    if fate == "closed by its barrier":
        with psycopg.connect(migrated_db) as conn:
            conn.execute("insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price,"
                         " pnl_quote, pnl_pct, exit_reason, opened_at, closed_at) values (%s, 'bittrex', 'ETH-BTC',"
                         " 'buy', 1, 0.1, 0.104, 0.004, 4, 'take_profit', now(), now())", [entry_id])
    queue.ack(entry_id, "hb-1", "closed")

    assert queue.claim("hb-1", 10, 60) == [] and queue.claim("hb-2", 10, 60) == []
    with psycopg.connect(migrated_db) as conn:
        status, reason = conn.execute("select status, reject_reason from signals where id = %s",
                                      [exit_id]).fetchone()
    assert status == "rejected"
    assert reason == (f"entry {entry_id} closed without a fill: no position to exit" if fate == "never filled"
                      else f"entry {entry_id} closed (take_profit) before its exit was claimed")


def test_an_exit_its_holder_never_claims_expires_like_an_entry(store: PostgresStore, queue: PostgresQueue,
                                                              migrated_db: str) -> None:
    from tests.support.clock import wait_for_database_time

    entry_id = store.emit_signal(entry())
    executing(queue, entry_id)
    expires = datetime.now(UTC) + timedelta(seconds=1)
    exit_id = store.emit_signal(exit_for(entry_id, expires_at=expires))
    assert queue.claim("hb-2", 10, 60) == []  # not hers, and the holder does not claim
    wait_for_database_time(migrated_db, expires)
    assert queue.claim("hb-1", 10, 60) == []
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select status from signals where id = %s", [exit_id]).fetchone()[0] == "expired"


@pytest.mark.parametrize(("bad", "message"), [
    ({"entry_signal_id": None}, "needs \"entry_signal_id\""),
    ({"side": "buy"}, "\"side\" must be \"sell\""),
    ({"symbol": "LTC-BTC"}, "its entry is channel/bittrex/ETH-BTC"),
])
def test_an_exit_that_does_not_match_its_entry_is_refused(store: PostgresStore, queue: PostgresQueue, migrated_db: str,
                                                          bad: dict[str, object], message: str) -> None:
    entry_id = store.emit_signal(entry())
    executing(queue, entry_id)
    with psycopg.connect(migrated_db) as conn:
        payload = {**exit_for(entry_id).to_payload(), **{k: v for k, v in bad.items()}}
        payload = {k: v for k, v in payload.items() if v is not None}
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            conn.execute("select emit_signal(%s)", [Jsonb(payload)])


def test_an_exit_for_an_entry_nobody_holds_is_refused(store: PostgresStore) -> None:
    entry_id = store.emit_signal(entry())  # still new: no position
    with pytest.raises(SignalRejected, match="the entry is new, not an open position"):
        store.emit_signal(exit_for(entry_id))


def test_an_open_exit_does_not_block_the_next_entry_of_the_pair(store: PostgresStore, queue: PostgresQueue) -> None:
    entry_id = store.emit_signal(entry())
    executing(queue, entry_id)
    store.emit_signal(exit_for(entry_id))
    with pytest.raises(SignalRejected, match="duplicate: entry signal"):
        store.emit_signal(entry())  # the position is still open: one open entry per pair
    queue.ack(entry_id, "hb-1", "closed")
    assert store.emit_signal(entry())


def test_the_grid_travels_on_the_entry_to_the_executor(store: PostgresStore, queue: PostgresQueue) -> None:
    entry_id = store.emit_signal(entry(strategy="dca", grid_levels=3, grid_spacing_pct=1.4, grid_level_quote=0.002))
    [claimed] = queue.claim("hb-1", 1, 60)
    assert claimed.id == entry_id and claimed.kind == "entry"
    assert (claimed.grid_levels, claimed.grid_spacing_pct, claimed.grid_level_quote) == (
        3, Decimal("1.4"), Decimal("0.002"))


def test_a_grid_needs_all_three_fields(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        payload = {**entry().to_payload(), "grid_levels": 3}
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="go together"):
            conn.execute("select emit_signal(%s)", [Jsonb(payload)])


def test_simulated_time_stamps_and_expires_signals_on_the_replayed_clock(store: PostgresStore,
                                                                          migrated_db: str) -> None:
    then = datetime(2018, 1, 11, 0, 15, tzinfo=UTC)
    first = store.emit_signal(entry(expires_at=then + timedelta(minutes=10)), as_of=then)
    with pytest.raises(SignalRejected, match="duplicate"):
        store.emit_signal(entry(expires_at=then + timedelta(minutes=15)), as_of=then + timedelta(minutes=5))
    second = store.emit_signal(entry(expires_at=then + timedelta(minutes=20)), as_of=then + timedelta(minutes=10))
    with psycopg.connect(migrated_db) as conn:
        rows = {r[0]: r[1:] for r in conn.execute("select id, created_at, status from signals").fetchall()}
    assert rows[first] == (then, "expired") and rows[second] == (then + timedelta(minutes=10), "new")


def always_exit(frame: pd.DataFrame, params: object) -> pd.DataFrame:
    return pd.DataFrame({"exit": True, "exit_reason": "test exit"}, index=frame.index)


def test_a_scan_sends_an_exit_signal_for_the_open_position_of_its_strategy(store: PostgresStore,
                                                                           queue: PostgresQueue,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    at = datetime(2018, 1, 11, 0, 15, tzinfo=UTC)
    entry_id = store.emit_signal(entry(expires_at=datetime.now(UTC) + timedelta(hours=1)))
    executing(queue, entry_id)
    from controller.scan import strategies

    monkeypatch.setitem(strategies.EXITS, "channel", always_exit)
    clock = SimClock(at)
    config = ControllerConfig(regime=RegimeParams(on_missing="caution"),
                              sizing=SizingParams(quotes={"BTC": QuoteSizing(amount=0.002, balance=0.2)}))
    scan = Scanner(config=config, strategy_config=load_strategies(), store=store,
                   source=ReplaySource(ohlcv_dir(), "bittrex", clock=clock), exchange="bittrex",
                   symbols=("ETH-BTC",), clock=clock.now)  # on by default: loop.exit_signals
    report = scan.scan()
    [exit_item] = [p for p in report.planned if p.outcome == "exit"]
    assert exit_item.decision.strategy == "channel" and exit_item.reason == "exit: test exit"
    assert exit_item.signal.entry_signal_id == entry_id
    off = config.model_copy(update={"loop": LoopConfig(exit_signals=False)})
    assert not any(p.outcome == "exit" for p in Scanner(
        config=off, strategy_config=load_strategies(), store=store, source=scan.source, exchange="bittrex",
        symbols=("ETH-BTC",), clock=clock.now).scan().planned)
    again = scan.scan()
    assert [p.outcome for p in again.planned if p.decision.strategy == "channel" and "exit" in p.reason] == [
        "blocked"]  # the first exit is still open: sent once
