"""Access (issue 15) on a real, migrated Postgres, with the claims set the way PostgREST sets them
(`set role …; set_config('request.jwt.claims', …)`) and through the PostgREST stand-in:

- the dashboard views show rows to members of dashboard_members only; a signed-up stranger (role
  `authenticated`, any `sub`) gets zero rows, not an error; anon is refused;
- an executor token bound to bot A cannot claim, acknowledge, report, heartbeat or read positions as
  bot B, and nothing is written when it tries; an expired token is refused by the stand-in;
- without a JWT (the direct-Postgres transport) the consumer is taken as given.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import requests
from psycopg import sql
from psycopg.types.json import Jsonb

from bridge.queue_client import ClaimTaken, PostgresQueue, PostgrestQueue
from bridge.resilience import CallError, ErrorKind, RetryPolicy
from bridge.schemas import OrderEvent
from controller.cli.access import mint_executor_token
from tests.support.postgrest_standin import PostgrestStandin, make_jwt

SECRET = "access-test-secret-that-is-at-least-32-bytes"
MEMBER = uuid.UUID("5d9f4a8e-0000-4000-8000-000000000001")
STRANGER = uuid.UUID("5d9f4a8e-0000-4000-8000-000000000002")
NO_WAIT = RetryPolicy(base_s=0.0, cap_s=0.0, tries=1)
NOW = datetime.now(UTC)


def views(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "select relname from pg_class where relkind in ('v', 'm') and relnamespace = 'public'::regnamespace"
        " and relname like 'dashboard%' order by 1")]


def as_claims(url: str, role: str, **claims: Any) -> psycopg.Connection:
    """A session as PostgREST runs a request: the role switched to, the JWT's claims in request.jwt.claims."""
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
    conn.execute("select set_config('request.jwt.claims', %s, false)", [json.dumps({"role": role, **claims})])
    return conn


def signal(symbol: str, strategy: str = "rsi_dip", **extra: Any) -> Jsonb:
    return Jsonb({"strategy": strategy, "exchange": "binance", "symbol": symbol, "side": "buy", "price": 100,
                  "quote_amount": 50, "take_profit_pct": 2, "stop_loss_pct": 1, "confidence": 0.7,
                  "expires_at": (NOW + timedelta(hours=1)).isoformat(), **extra})


def event(signal_id: uuid.UUID, kind: str, **fields: Any) -> Jsonb:
    return Jsonb({"type": kind, "signal_id": str(signal_id), "ts": NOW.isoformat(), **fields})


def reset(conn: psycopg.Connection) -> None:
    conn.execute("truncate signals, heartbeats, dashboard_members, shadow_variations, strategy_params cascade")


# --- the dashboard ------------------------------------------------------------------------------------


@pytest.fixture
def dashboard(module_db: str) -> Iterator[str]:
    """Something in every dashboard view: a closed trade, a rejection, an open position and its exit signal, a
    shadow result."""
    with psycopg.connect(module_db, autocommit=True) as conn:
        reset(conn)
        closed, rejected, open_ = (conn.execute("select emit_signal(%s)", [signal(s, ml_confidence=0.8)]).fetchone()[0]
                                   for s in ("BTC-USDT", "ETH-USDT", "SOL-USDT"))
        conn.execute("select count(*) from claim_signals('bot-a', 10, 60)")
        conn.execute("select ack_signal(%s, 'bot-a', 'rejected', 'spread too wide')", [rejected])
        for sid, symbol in ((closed, "BTC-USDT"), (open_, "SOL-USDT")):
            conn.execute("select ack_signal(%s, 'bot-a', 'executing')", [sid])
            order = dict(client_order_id=f"buy-{symbol}", exchange="binance", symbol=symbol, side="buy",
                         purpose="entry", order_type="market", amount=0.5)
            conn.execute("select report_order_event(%s)", [event(sid, "order_created", **order)])
            conn.execute("select report_order_event(%s)", [event(
                sid, "order_filled", exchange_trade_id="t1", price=100, fee_quote=0.05,
                **{k: v for k, v in order.items() if k != "order_type"})])
        conn.execute("select report_order_event(%s)", [event(
            closed, "position_closed", exchange="binance", symbol="BTC-USDT", side="buy", amount=0.5,
            entry_price=100, exit_price=102, fees_quote=0.1, pnl_quote=0.9, pnl_pct=1.8, exit_reason="take_profit",
            opened_at=NOW.isoformat())])
        # the strategy asks to close the open position: an exit signal, counted apart from the entries
        conn.execute("select emit_signal(%s)", [signal("SOL-USDT", side="sell", kind="exit",
                                                       entry_signal_id=str(open_), confidence=1.0)])
        variation = conn.execute("insert into shadow_variations (name, strategy, params, params_hash,"
                                 " base_params_hash) values ('tp+', 'rsi_dip', '{}', 'h1', 'h0') returning id"
                                 ).fetchone()[0]
        conn.execute("insert into shadow_performance (variation_id, window_start, window_end, trades, wins)"
                     " values (%s, now() - interval '1 day', now(), 4, 3)", [variation])
        version = conn.execute("select register_strategy_params('rsi_dip', '{}', 'h0')").fetchone()[0]
        conn.execute("insert into strategy_params_activations (strategy, version, reason) values ('rsi_dip', %s,"
                     " 'test')", [version])
        conn.execute("insert into dashboard_members (user_id, email, added_by) values (%s, 'ann@example.com',"
                     " 'test')", [MEMBER])
    yield module_db


def count_rows(conn: psycopg.Connection, view: str) -> int:
    return conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(view))).fetchone()[0]


def test_a_member_sees_every_dashboard_view_and_a_signed_up_stranger_sees_empty_views(dashboard: str) -> None:
    with psycopg.connect(dashboard) as admin:
        names = views(admin)
        expected = {view: count_rows(admin, view) for view in names}
    assert len(names) >= 7 and all(expected.values()), expected

    with as_claims(dashboard, "authenticated", sub=str(MEMBER), email="ann@example.com") as member:
        seen_by_member = {view: count_rows(member, view) for view in names}
    with as_claims(dashboard, "authenticated", sub=str(STRANGER), email="eve@example.com") as stranger:
        seen_by_stranger = {view: count_rows(stranger, view) for view in names}
    with as_claims(dashboard, "authenticated") as no_subject:
        seen_without_subject = {view: count_rows(no_subject, view) for view in names}

    assert seen_by_member == expected
    assert seen_by_stranger == dict.fromkeys(names, 0)
    assert seen_without_subject == dict.fromkeys(names, 0)


@pytest.mark.parametrize("view", ["dashboard_strategy_performance", "dashboard_open_positions"])
def test_anon_is_refused_every_dashboard_view_even_with_a_members_subject(dashboard: str, view: str) -> None:
    with as_claims(dashboard, "anon", sub=str(MEMBER)) as anon, pytest.raises(psycopg.errors.InsufficientPrivilege):
        count_rows(anon, view)


def test_removing_a_member_takes_the_rows_away_at_once(dashboard: str) -> None:
    with as_claims(dashboard, "authenticated", sub=str(MEMBER)) as member:
        before = member.execute("select trades, pnl_quote from dashboard_strategy_performance").fetchall()
        with psycopg.connect(dashboard, autocommit=True) as admin:
            admin.execute("delete from dashboard_members where user_id = %s", [MEMBER])
        after = member.execute("select trades, pnl_quote from dashboard_strategy_performance").fetchall()
    assert [(t, float(p)) for t, p in before] == [(1, 0.9)]
    assert after == []


def test_a_view_a_later_migration_adds_is_gated_by_apply_access_policy(dashboard: str) -> None:
    with psycopg.connect(dashboard, autocommit=True) as admin:
        admin.execute("create view dashboard_later with (security_barrier) as select symbol, status from signals")
        admin.execute("select apply_access_policy()")
    try:
        with as_claims(dashboard, "authenticated", sub=str(STRANGER)) as stranger:
            assert count_rows(stranger, "dashboard_later") == 0
        with as_claims(dashboard, "authenticated", sub=str(MEMBER)) as member:
            assert count_rows(member, "dashboard_later") == 4  # the three entries and the exit
        with psycopg.connect(dashboard) as admin:
            admin.execute("select apply_access_policy()")  # a second run gates nothing twice
            definition, options = admin.execute("select pg_get_viewdef('dashboard_later'), reloptions from pg_class"
                                                " where oid = 'dashboard_later'::regclass").fetchone()
        assert definition.count("is_dashboard_member") == 1
        assert options == ["security_barrier=true"]
    finally:
        with psycopg.connect(dashboard, autocommit=True) as admin:
            admin.execute("drop view dashboard_later")


def test_through_postgrest_a_stranger_gets_an_empty_list_and_a_member_the_rows(dashboard: str) -> None:
    with PostgrestStandin(dashboard, SECRET) as standin:
        def get(token: str | None) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return requests.get(f"{standin.base_url}/rest/v1/dashboard_strategy_performance",
                                params={"select": "strategy,trades"}, headers=headers, timeout=10)

        stranger = get(make_jwt(SECRET, "authenticated", sub=str(STRANGER)))
        member = get(make_jwt(SECRET, "authenticated", sub=str(MEMBER)))
        anon = get(None)
    assert (stranger.status_code, stranger.json()) == (200, [])
    assert (member.status_code, member.json()) == (200, [{"strategy": "rsi_dip", "trades": 1}])
    assert anon.status_code == 401


# --- executor tokens bound to a consumer --------------------------------------------------------------


@pytest.fixture
def queue(module_db: str) -> Iterator[tuple[str, uuid.UUID, uuid.UUID]]:
    """A new signal for anyone, and one bot B holds (claimed with its own bound token)."""
    with psycopg.connect(module_db, autocommit=True) as conn:
        reset(conn)
        free = conn.execute("select emit_signal(%s)", [signal("BTC-USDT")]).fetchone()[0]
        held = conn.execute("select emit_signal(%s)", [signal("ETH-USDT", strategy="swing")]).fetchone()[0]
    with as_claims(module_db, "executor", consumer="bot-b") as bot_b:
        bot_b.execute("select ack_signal(id, 'bot-b', 'executing') from claim_signals('bot-b', 1, 60,"
                      " '[{\"exchange\": \"binance\", \"symbols\": [\"ETH-USDT\"]}]')")
    yield module_db, free, held


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {table: conn.execute(sql.SQL("select * from {} order by 1").format(sql.Identifier(table))).fetchall()
                for table in ("signals", "orders", "fills", "trades", "heartbeats")}


AS_BOT_B = [
    pytest.param("select * from claim_signals('bot-b', 5, 60)", '"bot-a", not "bot-b"', id="claim"),
    pytest.param("select ack_signal({held}, 'bot-b', 'closed')", '"bot-a", not "bot-b"', id="ack"),
    pytest.param("select ack_signal({free}, 'bot-b', 'rejected', 'no')", '"bot-a", not "bot-b"', id="ack-unclaimed"),
    pytest.param("select report_order_event({order_as_b})", '"bot-a", not "bot-b"', id="report-naming-b"),
    pytest.param("select report_order_event({order})", 'claimed by "bot-b", not "bot-a"', id="report-on-bs-signal"),
    pytest.param("select report_order_event({closed})", 'claimed by "bot-b", not "bot-a"', id="report-close"),
    pytest.param("select report_order_event({order_on_free})", 'claimed by nobody, not "bot-a"',
                 id="report-on-unclaimed"),
    pytest.param("select heartbeat('hummingbot:bot-b', '{{}}')", '"bot-a", not component "hummingbot:bot-b"',
                 id="heartbeat"),
    pytest.param("select * from executor_positions('bot-b')", '"bot-a", not "bot-b"', id="positions"),
]


@pytest.mark.parametrize(("statement", "message"), AS_BOT_B)
def test_a_token_for_bot_a_acting_as_bot_b_is_refused_by_name_and_writes_nothing(
        queue: tuple[str, uuid.UUID, uuid.UUID], statement: str, message: str) -> None:
    url, free, held = queue
    order = {"client_order_id": "sneaky-1", "exchange": "binance", "symbol": "ETH-USDT", "side": "sell",
             "purpose": "exit", "order_type": "market", "amount": 1}
    literals = {
        "held": held, "free": free,
        "order": event(held, "order_created", **order),
        "order_as_b": event(held, "order_created", consumer="bot-b", **order),
        "order_on_free": event(free, "order_created", **order),
        "closed": event(held, "position_closed", exchange="binance", symbol="ETH-USDT", side="buy", amount=1,
                        entry_price=100, exit_price=50, pnl_quote=-50, pnl_pct=-50, exit_reason="manual",
                        opened_at=NOW.isoformat()),
    }
    before = snapshot(url)
    with as_claims(url, "executor", consumer="bot-a") as bot_a:
        query = sql.SQL(statement).format(**{k: sql.Literal(v) for k, v in literals.items()})
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            bot_a.execute(query)
    assert message in refused.value.diag.message_primary
    assert snapshot(url) == before


def test_a_bound_token_works_as_its_own_consumer_which_it_need_not_repeat(
        queue: tuple[str, uuid.UUID, uuid.UUID]) -> None:
    url, free, _ = queue
    with as_claims(url, "executor", consumer="bot-a") as bot_a:
        assert bot_a.execute("select id, claimed_by from claim_signals(null, 5, 60)").fetchall() == [(free, "bot-a")]
        assert bot_a.execute("select status from ack_signal(%s, null, 'executing')", [free]).fetchone() == (
            "executing",)
        bot_a.execute("select report_order_event(%s)", [event(
            free, "order_created", client_order_id="buy-1", exchange="binance", symbol="BTC-USDT", side="buy",
            purpose="entry", order_type="market", amount=0.5)])
        bot_a.execute("select heartbeat('hummingbot:bot-a', '{\"claimed\": 1}')")
        positions = bot_a.execute("select signal ->> 'id' from executor_positions('bot-a')").fetchall()
    assert positions == [(str(free),)]
    with psycopg.connect(url) as conn:
        assert conn.execute("select consumer from orders").fetchall() == [("bot-a",)]  # filled in from the token
        assert conn.execute("select component from heartbeats").fetchall() == [("hummingbot:bot-a",)]


def test_without_a_jwt_the_direct_transport_acts_as_the_consumer_given(
        queue: tuple[str, uuid.UUID, uuid.UUID]) -> None:
    url, free, held = queue
    client = PostgresQueue(url, retry=NO_WAIT)  # switches to the executor role; no claims
    try:
        assert [s.id for s in client.claim("bot-c", 5, 60)] == [free]
        assert client.ack(free, "bot-c", "executing") == "executing"
        client.report(OrderEvent(type="order_created", signal_id=free, ts=NOW, client_order_id="c-1",
                                 exchange="binance", symbol="BTC-USDT", side="buy", purpose="entry",
                                 order_type="market", amount=1))
        client.heartbeat("hummingbot:bot-c", {})
        # the signal bot B holds still needs bot B's name
        with pytest.raises(CallError) as refused:
            client.ack(held, "bot-c", "closed")
    finally:
        client.close()
    assert isinstance(refused.value, ClaimTaken) and "claimed by bot-b, not bot-c" in str(refused.value)
    with psycopg.connect(url) as conn:
        assert conn.execute("select claimed_by, status from signals where id = %s", [free]).fetchone() == (
            "bot-c", "executing")


def test_a_minted_token_through_postgrest_claims_for_its_bot_only_and_an_expired_one_is_401(
        queue: tuple[str, uuid.UUID, uuid.UUID]) -> None:
    url, free, _ = queue
    token = mint_executor_token(SECRET, "bot-a", days=30, now=datetime.now(UTC))
    expired = mint_executor_token(SECRET, "bot-a", days=1, now=datetime.now(UTC) - timedelta(days=2))
    with PostgrestStandin(url, SECRET) as standin:
        as_b = PostgrestQueue(standin.base_url, token, retry=NO_WAIT)
        with pytest.raises(CallError) as wrong_bot:
            as_b.claim("bot-b", 5, 60)
        stale = PostgrestQueue(standin.base_url, expired, retry=NO_WAIT)
        with pytest.raises(CallError) as too_late:
            stale.claim("bot-a", 5, 60)
        with psycopg.connect(url) as conn:
            untouched = conn.execute("select status, claim_count from signals where id = %s", [free]).fetchone()
        claimed = PostgrestQueue(standin.base_url, token, retry=NO_WAIT).claim("bot-a", 5, 60)

    assert (wrong_bot.value.status, wrong_bot.value.kind) == (403, ErrorKind.AUTH)
    assert 'bound to consumer "bot-a", not "bot-b"' in str(wrong_bot.value)
    assert too_late.value.status == 401 and "expired" in str(too_late.value).lower()
    assert untouched == ("new", 0)
    assert [s.id for s in claimed] == [free]
