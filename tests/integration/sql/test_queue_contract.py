"""One contract, two transports of the Hummingbot side's queue client: direct Postgres and PostgREST RPC.

The HTTP transport talks to the in-repo PostgREST stand-in (tests/support/postgrest_standin.py) with an
executor JWT, on the same real database; the direct transport connects and switches to the executor role.
The long-poll claim (claim_signals_wait, PostgREST's stand-in for LISTEN) is tested through the stand-in.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import psycopg
import pytest

from bridge.queue_client import ClaimTaken, PostgresQueue, PostgrestQueue, SignalQueue
from bridge.resilience import CallError, ErrorKind, RetryPolicy
from bridge.schemas import NewSignal, OrderEvent
from controller.data.storage.postgres import PostgresStore
from tests.conftest import PgServer
from tests.support import pgbouncer
from tests.support.clock import wait_until
from tests.support.net import BlackHole, refusing_port
from tests.support.postgrest_standin import PostgrestStandin, make_jwt

JWT_SECRET = "queue-contract-secret-at-least-32-bytes"
NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=3)


def emit(url: str, symbol: str, exchange: str = "binance", strategy: str = "dca") -> UUID:
    store = PostgresStore(url)
    try:
        return store.emit_signal(NewSignal(
            strategy=strategy, exchange=exchange, symbol=symbol, side="buy", price=100.5, quote_amount=20,
            take_profit_pct=2, stop_loss_pct=1, expires_at=datetime.now(UTC) + timedelta(minutes=5), confidence=0.6))
    finally:
        store.close()


@pytest.fixture(scope="module")
def pooler(pg_server: PgServer) -> Iterator[str]:
    """pgbouncer in transaction mode in front of the test server (Supabase's port 6543 works this way)."""
    if pgbouncer.binary() is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer): the pooler path is not tested")
    with pgbouncer.pgbouncer(pg_server.url_for("postgres")) as url:
        yield url


@pytest.fixture(params=["postgres", "postgrest", "pgbouncer"])
def transport(request: pytest.FixtureRequest,
              migrated_db: str) -> Iterator[tuple[SignalQueue, PostgrestStandin | None]]:
    if request.param in ("postgres", "pgbouncer"):
        url = migrated_db
        if request.param == "pgbouncer":  # the same database, each call through the pooler
            dbname = psycopg.conninfo.conninfo_to_dict(migrated_db)["dbname"]
            url = psycopg.conninfo.make_conninfo(request.getfixturevalue("pooler"), dbname=dbname)
        queue = PostgresQueue(url, retry=NO_WAIT)
        yield queue, None
        queue.close()
        return
    with PostgrestStandin(migrated_db, JWT_SECRET) as standin:
        queue = PostgrestQueue(standin.base_url, make_jwt(JWT_SECRET, "executor"), retry=NO_WAIT)
        yield queue, standin
        queue.close()


def test_claim_returns_typed_signals_oldest_first(transport: tuple[SignalQueue, object], migrated_db: str) -> None:
    queue, _ = transport
    first, second = emit(migrated_db, "BTC-USDT"), emit(migrated_db, "ETH-USDT")

    claimed = queue.claim("bot-a", 10, 30)

    assert [s.id for s in claimed] == [first, second]
    assert claimed[0].price == Decimal("100.5") and isinstance(claimed[0].quote_amount, Decimal)
    assert claimed[0].status == "claimed" and claimed[0].claimed_by == "bot-a"
    assert queue.claim("bot-b", 10, 30) == []


def test_claim_is_limited_to_the_markets_given(transport: tuple[SignalQueue, object], migrated_db: str) -> None:
    queue, _ = transport
    btc = emit(migrated_db, "BTC-USDT")
    emit(migrated_db, "ETH-USDT")
    kraken = emit(migrated_db, "BTC-USD", exchange="kraken")

    assert [s.id for s in queue.claim("bot-a", 10, 30, {"binance": ["BTC-USDT"]})] == [btc]
    assert [s.id for s in queue.claim("bot-k", 10, 30, {"kraken": None})] == [kraken]


def test_ack_moves_a_claimed_signal_on_and_repeats_are_harmless(transport: tuple[SignalQueue, object],
                                                                migrated_db: str) -> None:
    queue, _ = transport
    signal_id = emit(migrated_db, "BTC-USDT")
    queue.claim("bot-a", 1, 30)

    assert queue.ack(signal_id, "bot-a", "executing") == "executing"
    assert queue.ack(signal_id, "bot-a", "executing") == "executing"
    assert queue.ack(signal_id, "bot-a", "closed") == "closed"
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select status from signals where id = %s", (signal_id,)).fetchone()[0] == "closed"


def test_only_the_claim_holder_may_ack(transport: tuple[SignalQueue, object], migrated_db: str) -> None:
    queue, _ = transport
    signal_id = emit(migrated_db, "BTC-USDT")
    queue.claim("bot-a", 1, 30)
    with pytest.raises(ClaimTaken) as refused:  # its own code, not AUTH: the executor drops it, keeps AUTH
        queue.ack(signal_id, "bot-b", "executing")
    assert refused.value.kind == ErrorKind.CLIENT and "bot-a" in str(refused.value)


def test_a_rejection_records_its_reason(transport: tuple[SignalQueue, object], migrated_db: str) -> None:
    queue, _ = transport
    signal_id = emit(migrated_db, "BTC-USDT")
    queue.claim("bot-a", 1, 30)
    assert queue.ack(signal_id, "bot-a", "rejected", "price moved 1.2% from reference") == "rejected"
    with psycopg.connect(migrated_db) as conn:
        reason = conn.execute("select reject_reason from signals where id = %s", (signal_id,)).fetchone()[0]
    assert reason == "price moved 1.2% from reference"


def entry_events(signal_id: UUID) -> list[OrderEvent]:
    common = {"signal_id": signal_id, "client_order_id": "buy-1", "exchange": "binance", "symbol": "BTC-USDT",
              "side": "buy", "purpose": "entry", "consumer": "bot-a"}
    t0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    return [
        OrderEvent(type="order_created", ts=t0, order_type="market", price=Decimal("100.5"), amount=Decimal("0.2"),
                   **common),
        OrderEvent(type="order_filled", ts=t0 + timedelta(seconds=1), exchange_trade_id="t-1", price=Decimal("100.6"),
                   amount=Decimal("0.2"), fee_quote=Decimal("0.02012"), fee_asset="USDT", fee_amount=Decimal("0.02012"),
                   **common),
        OrderEvent(type="order_completed", ts=t0 + timedelta(seconds=1), **common),
    ]


def test_reported_events_are_idempotent(transport: tuple[SignalQueue, object], migrated_db: str) -> None:
    queue, _ = transport
    signal_id = emit(migrated_db, "BTC-USDT")
    queue.claim("bot-a", 1, 30)
    queue.ack(signal_id, "bot-a", "executing")
    events = entry_events(signal_id)

    results = [queue.report(e) for e in events + events]

    assert results[2]["status"] == "filled" and results[-1] == results[2]
    with psycopg.connect(migrated_db) as conn:
        orders = conn.execute("select client_order_id, status, filled_amount, price from orders").fetchall()
        fills = conn.execute("select exchange_trade_id, amount, fee_quote from fills").fetchall()
    assert orders == [("buy-1", "filled", Decimal("0.2"), Decimal("100.5"))]
    assert fills == [("t-1", Decimal("0.2"), Decimal("0.02012"))]


def test_an_event_as_the_outbox_stores_it_is_reported_as_the_event_itself(
        transport: tuple[SignalQueue, object], migrated_db: str) -> None:
    """The outbox keeps the RPC's own parameters (`to_payload()` through a JSON line) and sends them as they
    are: the rows they write are those the event writes, and a replay of either is a no-op."""
    queue, _ = transport
    signal_id = emit(migrated_db, "BTC-USDT")
    queue.claim("bot-a", 1, 30)
    queue.ack(signal_id, "bot-a", "executing")
    events = entry_events(signal_id)
    stored = [json.loads(json.dumps(e.to_payload(), default=str)) for e in events]

    results = [queue.report_payload(p) for p in stored] + [queue.report(e) for e in events]

    assert results[2]["status"] == "filled" and results[-1] == results[2]
    with psycopg.connect(migrated_db) as conn:
        orders = conn.execute("select client_order_id, status, filled_amount, price from orders").fetchall()
        fills = conn.execute("select exchange_trade_id, amount, fee_quote from fills").fetchall()
    assert orders == [("buy-1", "filled", Decimal("0.2"), Decimal("100.5"))]
    assert fills == [("t-1", Decimal("0.2"), Decimal("0.02012"))]


def test_a_bad_event_is_refused_once_without_retry(transport: tuple[SignalQueue, PostgrestStandin | None],
                                                   migrated_db: str) -> None:
    queue, standin = transport
    signal_id = emit(migrated_db, "BTC-USDT")
    bad = OrderEvent(type="order_filled", ts=datetime.now(UTC), signal_id=signal_id, client_order_id="x",
                     exchange="binance", symbol="BTC-USDT", side="buy", purpose="entry", price=Decimal(1),
                     amount=Decimal(1))  # a fill without exchange_trade_id
    with pytest.raises(CallError) as refused:
        queue.report(bad)
    assert refused.value.kind == ErrorKind.CLIENT
    assert "exchange_trade_id" in str(refused.value)
    if standin is not None:
        assert [r.path for r in standin.requests_seen].count("/rpc/report_order_event") == 1
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select count(*) from orders").fetchone()[0] == 0


def test_heartbeat_is_recorded(transport: tuple[SignalQueue, object], migrated_db: str) -> None:
    queue, _ = transport
    queue.heartbeat("hummingbot:bot-a", {"claimed": 3, "open_positions": 1})
    with psycopg.connect(migrated_db) as conn:
        progress = conn.execute("select progress from heartbeats where component = 'hummingbot:bot-a'").fetchone()[0]
    assert progress == {"claimed": 3, "open_positions": 1}


def test_the_direct_transport_has_only_the_executor_rights_and_leaves_none_on_the_session(migrated_db: str) -> None:
    queue = PostgresQueue(migrated_db)
    with pytest.raises(CallError) as refused:
        queue._call("select", "select * from signals", ())
    assert refused.value.kind == ErrorKind.AUTH
    queue.heartbeat("bot", {})
    # the role and the timeout lived in each call's transaction: a pooler's next client gets a clean session
    session = queue._connection().execute("select current_user, current_setting('statement_timeout')").fetchone()
    assert session == {"current_user": "postgres", "current_setting": "0"}
    queue.close()


# --- failures: timeouts, refused connections, retries only where idempotent -------------------------

@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    server = BlackHole()
    yield server
    server.close()


def test_an_unanswered_http_call_times_out_and_idempotent_calls_retry(black_hole: BlackHole) -> None:
    queue = PostgrestQueue(f"http://127.0.0.1:{black_hole.port}", "key", timeout_s=0.2, retry=NO_WAIT)
    with pytest.raises(CallError) as failed:
        queue.heartbeat("bot", {})
    # a timeout, not a hang (pytest's timeout would end a hang): no duration asserted on a shared 2-core box
    assert failed.value.kind == ErrorKind.TIMEOUT
    assert len(black_hole.accepted) == 3  # heartbeat is idempotent: all three tries


def test_a_claim_is_never_retried(black_hole: BlackHole) -> None:
    queue = PostgrestQueue(f"http://127.0.0.1:{black_hole.port}", "key", timeout_s=0.2, retry=NO_WAIT)
    with pytest.raises(CallError) as failed:
        queue.claim("bot", 5, 30)
    assert failed.value.kind == ErrorKind.TIMEOUT
    assert len(black_hole.accepted) == 1


def test_a_refused_connection_is_a_connection_error_on_both_transports() -> None:
    with refusing_port() as port:
        http = PostgrestQueue(f"http://127.0.0.1:{port}", "key", timeout_s=0.5, retry=NO_WAIT)
        direct = PostgresQueue(f"postgresql://executor@127.0.0.1:{port}/none", timeout_s=1, retry=NO_WAIT)
        for queue in (http, direct):
            with pytest.raises(CallError) as failed:
                queue.heartbeat("bot", {})
            assert failed.value.kind == ErrorKind.CONNECTION


def test_positions_lists_what_the_consumer_is_executing(transport: tuple[SignalQueue, object],
                                                        migrated_db: str) -> None:
    queue, _ = transport
    signal_id = emit(migrated_db, "BTC-USDT")
    other = emit(migrated_db, "ETH-USDT")
    assert {s.id for s in queue.claim("bot-a", 10, 30)} == {signal_id, other}
    queue.ack(signal_id, "bot-a", "executing")
    for event in entry_events(signal_id)[:2]:  # created and filled, not yet completed
        queue.report(event)

    [position] = queue.positions("bot-a")  # `other` is claimed by bot-a but not executing: not a position

    assert str(position["signal"]["id"]) == str(signal_id)
    assert Decimal(str(position["entry_amount"])) == Decimal("0.2")
    assert Decimal(str(position["entry_quote"])) == Decimal("0.2") * Decimal("100.6")
    assert Decimal(str(position["fees_quote"])) == Decimal("0.02012")  # a restarted bot must not forget them
    assert [o["client_order_id"] for o in position["open_orders"]] == ["buy-1"]
    assert queue.positions("bot-b") == []


# --- the long-poll claim (claim_signals_wait, PostgREST) ------------------------------------------------

@pytest.fixture
def http_queue(migrated_db: str) -> Iterator[tuple[PostgrestQueue, PostgrestStandin]]:
    with PostgrestStandin(migrated_db, JWT_SECRET) as standin:
        queue = PostgrestQueue(standin.base_url, make_jwt(JWT_SECRET, "executor"), retry=NO_WAIT)
        yield queue, standin
        queue.close()


def claim_wait_in_thread(queue: PostgrestQueue, consumer: str, wait_s: float,
                         markets: dict[str, list[str] | None] | None = None) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(target=lambda: out.append(queue.claim_wait(consumer, 5, 30, markets, wait_s)))
    thread.start()
    return thread, out


def waiting_claims(url: str) -> int:
    """Backends inside claim_signals_wait's sleep right now (what PostgREST would be holding open)."""
    with psycopg.connect(url) as conn:
        return conn.execute("select count(*) from pg_stat_activity where wait_event = 'PgSleep'").fetchone()[0]


def test_a_waiting_claim_returns_the_signal_emitted_while_it_waits(http_queue: tuple[PostgrestQueue, object],
                                                                   migrated_db: str) -> None:
    queue, _ = http_queue
    thread, out = claim_wait_in_thread(queue, "bot-a", 60.0)  # the longest wait there is
    wait_until(lambda: waiting_claims(migrated_db) == 1, "the claim is waiting in the database")

    signal_id = emit(migrated_db, "BTC-USDT")
    thread.join(50)

    # back before its 60 s wait was over (the join would have given up first), with the new signal
    assert not thread.is_alive()
    [[signal]] = out
    assert signal.id == signal_id and signal.claimed_by == "bot-a" and signal.status == "claimed"
    with psycopg.connect(migrated_db) as conn:
        created, claimed, lease = conn.execute("select created_at, claimed_at, lease_until from signals").fetchone()
    # stamped when claimed, not when the waiting request began: after the emit, with a full lease
    assert created <= claimed and lease == claimed + timedelta(seconds=30)


def test_a_waiting_claim_with_nothing_to_claim_returns_empty_after_its_wait(
        http_queue: tuple[PostgrestQueue, PostgrestStandin], migrated_db: str) -> None:
    queue, standin = http_queue
    emit(migrated_db, "ETH-USDT")  # not in the markets asked for: never ends the wait

    thread, out = claim_wait_in_thread(queue, "bot-a", 5.0, {"binance": ["BTC-USDT"]})
    wait_until(lambda: waiting_claims(migrated_db) == 1 or not thread.is_alive(), "the claim waits or returns")
    waited = waiting_claims(migrated_db) == 1
    thread.join(30)

    assert waited and out == [[]]  # it waited (a claim that returned at once is never seen asleep), then empty
    [request] = [r for r in standin.requests_seen if r.path == "/rpc/claim_signals_wait"]
    assert request.body["wait_ms"] == 5000
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("select status from signals").fetchall() == [("new",)]
    assert waiting_claims(migrated_db) == 0


def test_a_waiting_claim_hands_out_what_is_already_there_at_once(http_queue: tuple[PostgrestQueue, object],
                                                                 migrated_db: str) -> None:
    queue, _ = http_queue
    first, second = emit(migrated_db, "BTC-USDT"), emit(migrated_db, "ETH-USDT")
    thread, out = claim_wait_in_thread(queue, "bot-a", 60.0)
    thread.join(20)
    assert not thread.is_alive() and [s.id for s in out[0]] == [first, second]


def test_two_waiting_consumers_never_claim_the_same_signal(http_queue: tuple[PostgrestQueue, object],
                                                           migrated_db: str) -> None:
    queue, _ = http_queue
    other = PostgrestQueue(queue.base_url, make_jwt(JWT_SECRET, "executor"), retry=NO_WAIT)
    claimed: dict[str, list[UUID]] = {"bot-a": [], "bot-b": []}
    emitted = []
    stop = threading.Event()

    def consume(client: PostgrestQueue, consumer: str) -> None:
        while not stop.is_set():
            claimed[consumer] += [s.id for s in client.claim_wait(consumer, 1, 30, None, 5.0)]

    threads = [threading.Thread(target=consume, args=(client, name))
               for client, name in ((queue, "bot-a"), (other, "bot-b"))]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: waiting_claims(migrated_db) == 2, "both claims are waiting")
        for i in range(12):
            emitted.append(emit(migrated_db, "BTC-USDT", strategy=f"s{i}"))
        wait_until(lambda: len(claimed["bot-a"]) + len(claimed["bot-b"]) >= len(emitted), "all claimed")
    finally:
        stop.set()
        for thread in threads:
            thread.join(20)
        other.close()

    everything = claimed["bot-a"] + claimed["bot-b"]
    assert sorted(everything) == sorted(emitted)  # each exactly once
    with psycopg.connect(migrated_db) as conn:
        rows = conn.execute("select claimed_by, claim_count from signals").fetchall()
    assert all(count == 1 for _, count in rows)
    assert {by for by, _ in rows} <= {"bot-a", "bot-b"}


def test_a_waiting_claim_keeps_exits_for_the_bot_that_holds_the_entry(
        http_queue: tuple[PostgrestQueue, object], migrated_db: str) -> None:
    queue, _ = http_queue
    entry = emit(migrated_db, "BTC-USDT")
    [signal] = queue.claim("bot-a", 1, 30)
    queue.ack(signal.id, "bot-a", "executing")
    store = PostgresStore(migrated_db)
    try:
        exit_id = store.emit_signal(NewSignal(
            strategy="dca", exchange="binance", symbol="BTC-USDT", side="sell", kind="exit",
            entry_signal_id=entry, price=101, quote_amount=20, take_profit_pct=2,
            expires_at=datetime.now(UTC) + timedelta(minutes=5), confidence=0.6))
    finally:
        store.close()

    # another bot waits its whole (short) wait and gets nothing; the holder gets the exit at once, with
    # max_count 0 (every slot full), as from claim_signals
    assert queue.claim_wait("bot-b", 5, 30, None, 0.3) == []
    assert [s.id for s in queue.claim_wait("bot-a", 0, 30, None, 30.0)] == [exit_id]


def test_a_waiting_claim_refuses_a_bad_wait_and_another_consumers_name_at_once(migrated_db: str) -> None:
    with PostgrestStandin(migrated_db, JWT_SECRET) as standin:
        bound = PostgrestQueue(standin.base_url, make_jwt(JWT_SECRET, "executor", consumer="bot-a"), retry=NO_WAIT)
        try:
            with pytest.raises(CallError) as bad_wait:
                bound.claim_wait("bot-a", 5, 30, None, 61.0)
            with pytest.raises(CallError) as other_name:
                bound.claim_wait("bot-b", 5, 30, None, 30.0)
        finally:
            bound.close()
    assert bad_wait.value.kind == ErrorKind.CLIENT and "wait_ms must be between 0 and 60000" in str(bad_wait.value)
    assert other_name.value.kind == ErrorKind.AUTH and 'bound to consumer "bot-a"' in str(other_name.value)


def test_a_waiting_claim_ends_before_the_statement_timeout(migrated_db: str) -> None:
    """Supabase gives each API role a statement_timeout: the wait stops short of it, so a long wait_ms
    ends in an ordinary (empty) claim, never in a cancelled statement."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("set role executor")
        conn.execute("set statement_timeout = '1500ms'")
        assert conn.execute("select * from claim_signals_wait('bot-a', 5, 30, null, 30000)").fetchall() == []
