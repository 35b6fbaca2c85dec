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
from controller.scan.pipeline import Scanner
from controller.scan.regime import RegimeParams
from controller.scan.signals import QuoteSizing, SizingParams
from controller.scan.strategy_params import load_strategies

NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=3)


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


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
                   symbols=("ETH-BTC",), clock=clock.now, emit_exits=True)
    report = scan.scan()
    [exit_item] = [p for p in report.planned if p.outcome == "exit"]
    assert exit_item.decision.strategy == "channel" and exit_item.reason == "exit: test exit"
    assert exit_item.signal.entry_signal_id == entry_id
    assert not any(p.outcome == "exit" for p in Scanner(
        config=config, strategy_config=load_strategies(), store=store, source=scan.source, exchange="bittrex",
        symbols=("ETH-BTC",), clock=clock.now).scan().planned)  # off by default: loop.exit_signals
    again = scan.scan()
    assert [p.outcome for p in again.planned if p.decision.strategy == "channel" and "exit" in p.reason] == [
        "blocked"]  # the first exit is still open: sent once
