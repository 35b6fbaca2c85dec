"""Who may do what, on a real Postgres: the full matrix of roles x tables, views and functions of the
public schema read from the catalog (so objects added by later migrations are covered without editing
this file), row-level security on every table, then a sample of the matrix tried for real under
`set role`.

    anon           nothing
    authenticated  select on the dashboard_* views (rows only for dashboard_members, migration 0016) and
                   execute on is_dashboard_member and shadow_p_shown (the views call them as the reader), nothing else
    executor       execute on claim_signals, claim_signals_wait, ack_signal, report_order_event, heartbeat,
                   executor_positions, nothing else
    service_role   select/insert/update/delete on every table, select on every view, execute on every function
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

ROLES = ["anon", "authenticated", "executor", "service_role"]
EXECUTOR_FUNCTIONS = {"claim_signals", "claim_signals_wait", "ack_signal", "report_order_event", "heartbeat",
                      "executor_positions"}
AUTHENTICATED_FUNCTIONS = {"is_dashboard_member", "shadow_p_shown"}
MEMBER = "5d9f4a8e-0000-4000-8000-00000000000a"
TABLE_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"]
SERVICE_TABLE_PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}
VIEW_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE"]

TABLES = """
    select c.oid, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition order by 2"""
VIEWS = """
    select c.oid, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'public' and c.relkind in ('v', 'm') order by 2"""
FUNCTIONS = """
    select p.oid, p.oid::regprocedure::text, p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'public' and p.prokind in ('f', 'p') order by 2"""


@pytest.fixture
def admin(module_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(module_db, autocommit=True) as conn:
        yield conn


def expected_on_table(role: str, privilege: str) -> bool:
    return role == "service_role" and privilege in SERVICE_TABLE_PRIVILEGES


def expected_on_view(role: str, view: str, privilege: str) -> bool:
    if privilege != "SELECT":
        return False
    return role == "service_role" or (role == "authenticated" and view.startswith("dashboard_"))


def expected_on_function(role: str, name: str) -> bool:
    return (role == "service_role" or (role == "executor" and name in EXECUTOR_FUNCTIONS)
            or (role == "authenticated" and name in AUTHENTICATED_FUNCTIONS))


def test_the_catalog_lists_the_objects_the_matrix_is_about(admin: psycopg.Connection) -> None:
    tables = {r[1] for r in admin.execute(TABLES)}
    views = {r[1] for r in admin.execute(VIEWS)}
    functions = {r[2] for r in admin.execute(FUNCTIONS)}

    assert {"signals", "orders", "fills", "trades", "heartbeats", "candles", "flags", "strategy_params",
            "dashboard_members"} <= tables
    # partitions are reached through their parent (candles_archive is a table of its own)
    assert not any(t.startswith("candles_") for t in tables - {"candles_archive"})
    assert {"dashboard_signal_funnel", "dashboard_open_positions", "dashboard_storage"} <= views
    assert EXECUTOR_FUNCTIONS | {"emit_signal", "apply_access_policy", "queue_error"} <= functions
    assert set(ROLES) <= {r[0] for r in admin.execute("select rolname from pg_roles")}


@pytest.mark.parametrize("role", ROLES)
def test_table_privileges_match_the_matrix(admin: psycopg.Connection, role: str) -> None:
    wrong = []
    for oid, table in admin.execute(TABLES).fetchall():
        for privilege in TABLE_PRIVILEGES:
            has = admin.execute("select has_table_privilege(%s, %s::oid, %s)", [role, oid, privilege]).fetchone()[0]
            if has != expected_on_table(role, privilege):
                wrong.append(f"{role} {'has' if has else 'lacks'} {privilege} on table {table}")
        if role != "service_role":
            columns = admin.execute("select has_any_column_privilege(%s, %s::oid, 'SELECT, INSERT, UPDATE')",
                                    [role, oid]).fetchone()[0]
            if columns:
                wrong.append(f"{role} has a column privilege on table {table}")
    assert wrong == []


@pytest.mark.parametrize("role", ROLES)
def test_view_privileges_match_the_matrix(admin: psycopg.Connection, role: str) -> None:
    wrong = []
    for oid, view in admin.execute(VIEWS).fetchall():
        for privilege in VIEW_PRIVILEGES:
            has = admin.execute("select has_table_privilege(%s, %s::oid, %s)", [role, oid, privilege]).fetchone()[0]
            if has != expected_on_view(role, view, privilege):
                wrong.append(f"{role} {'has' if has else 'lacks'} {privilege} on view {view}")
    assert wrong == []


def test_every_view_authenticated_may_read_asks_for_membership(admin: psycopg.Connection) -> None:
    # On Supabase anyone who signs up is `authenticated`: a view open to that role must filter on
    # is_dashboard_member(), which Postgres records as a dependency of the view's rewrite rule.
    ungated = admin.execute("""
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and c.relkind in ('v', 'm')
           and has_table_privilege('authenticated', c.oid, 'SELECT')
           and not exists (select 1 from pg_rewrite w join pg_depend d on d.classid = 'pg_rewrite'::regclass
                                                                     and d.objid = w.oid
                            where w.ev_class = c.oid and d.refobjid = 'is_dashboard_member()'::regprocedure)
         order by 1""").fetchall()
    assert ungated == []


@pytest.mark.parametrize("role", ROLES)
def test_function_privileges_match_the_matrix(admin: psycopg.Connection, role: str) -> None:
    wrong = []
    for oid, signature, name in admin.execute(FUNCTIONS).fetchall():
        has = admin.execute("select has_function_privilege(%s, %s::oid, 'EXECUTE')", [role, oid]).fetchone()[0]
        if has != expected_on_function(role, name):
            wrong.append(f"{role} {'may' if has else 'may not'} execute {signature}")
    assert wrong == []


@pytest.mark.parametrize("role", ["anon", "authenticated", "executor", "service_role"])
def test_the_queue_functions_without_the_consumer_check_are_out_of_every_api_roles_reach(
        admin: psycopg.Connection, role: str) -> None:
    # 0016 moved the original queue functions to queue_core; only their public wrappers may be called.
    functions = admin.execute("""
        select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'queue_core'::regnamespace
         order by 1""").fetchall()
    callable_ = admin.execute("""
        select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'queue_core'::regnamespace
           and has_function_privilege(%s, p.oid, 'EXECUTE') order by 1""", [role]).fetchall()
    usage = admin.execute("select has_schema_privilege(%s, 'queue_core', 'USAGE')", [role]).fetchone()[0]

    assert len(functions) == len(EXECUTOR_FUNCTIONS)
    assert (callable_, usage) == ([], False)


@pytest.mark.parametrize("role", ["anon", "authenticated", "executor"])
def test_only_service_role_touches_sequences_and_nobody_else_creates_in_public(admin: psycopg.Connection,
                                                                                role: str) -> None:
    sequences = admin.execute("""
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public'
           and case when c.relkind = 'S' then has_sequence_privilege(%s, c.oid, 'USAGE, SELECT, UPDATE') end
        """, [role]).fetchall()
    assert sequences == []
    assert admin.execute("select has_schema_privilege(%s, 'public', 'CREATE')", [role]).fetchone()[0] is False


def test_row_level_security_is_on_for_every_table_and_partition(admin: psycopg.Connection) -> None:
    without_rls = admin.execute("""
        select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relrowsecurity order by 1""").fetchall()
    partitions = admin.execute("select count(*) from pg_inherits where inhparent = 'candles'::regclass").fetchone()[0]

    assert without_rls == []
    assert partitions > 0


def test_no_policy_opens_rows_to_anon_or_authenticated(admin: psycopg.Connection) -> None:
    policies = admin.execute("""
        select tablename, policyname, roles from pg_policies
         where schemaname = 'public' and roles && array['public', 'anon', 'authenticated']::name[]""").fetchall()
    assert policies == []


# The matrix tried for real -------------------------------------------------------------------------


def a_signal(symbol: str = "BTC-USDT") -> Jsonb:
    return Jsonb({"strategy": "rsi_dip", "exchange": "binance", "symbol": symbol, "side": "buy", "price": 65000,
                  "quote_amount": 100, "take_profit_pct": 1.5, "confidence": 0.7,
                  "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()})


@pytest.fixture
def seeded(module_db: str) -> Iterator[tuple[str, uuid.UUID, str]]:
    """The module's database holding just one new signal and one candle in the current month's partition."""
    with psycopg.connect(module_db, autocommit=True) as conn:
        conn.execute("truncate signals, heartbeats, candles cascade")
        signal_id = conn.execute("select emit_signal(%s)", [a_signal()]).fetchone()[0]
        conn.execute("insert into candles values ('binance', 'BTC-USDT', '1m', now(), 1, 2, 0.5, 1.5, 10)")
        partition = conn.execute("select tableoid::regclass::text from candles").fetchone()[0]
    yield module_db, signal_id, partition


def as_role(url: str, role: str) -> psycopg.Connection:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(role)))
    return conn


DENIED = [
    pytest.param("anon", "select * from signals", id="anon-reads-signals"),
    pytest.param("anon", "select * from dashboard_signal_funnel", id="anon-reads-dashboard"),
    pytest.param("anon", "select * from claim_signals('bot-a', 1, 60)", id="anon-claims"),
    pytest.param("anon", "select * from claim_signals_wait('bot-a', 1, 60, null, 0)", id="anon-waits-to-claim"),
    pytest.param("anon", "select heartbeat('anon', '{}')", id="anon-heartbeat"),
    pytest.param("authenticated", "select * from signals", id="authenticated-reads-signals"),
    pytest.param("authenticated", "select * from trades", id="authenticated-reads-trades"),
    pytest.param("authenticated", "select * from candles", id="authenticated-reads-candles"),
    pytest.param("authenticated", "update signals set status = 'rejected'", id="authenticated-updates-signals"),
    pytest.param("authenticated", "select * from claim_signals('bot-a', 1, 60)", id="authenticated-claims"),
    pytest.param("authenticated", "select * from claim_signals_wait('bot-a', 1, 60, null, 0)",
                 id="authenticated-waits-to-claim"),
    pytest.param("authenticated", "update flags set value = 'true'", id="authenticated-updates-flags"),
    pytest.param("authenticated", "select * from dashboard_members", id="authenticated-reads-members"),
    pytest.param("authenticated", "insert into dashboard_members (user_id, added_by) values (gen_random_uuid(), 'me')",
                 id="authenticated-adds-itself"),
    pytest.param("executor", "select * from signals", id="executor-reads-signals"),
    pytest.param("executor", "select * from orders", id="executor-reads-orders"),
    pytest.param("executor", "insert into heartbeats (component) values ('x')", id="executor-writes-heartbeats"),
    pytest.param("executor", "update signals set status = 'closed'", id="executor-updates-signals"),
    pytest.param("executor", "select * from dashboard_signal_funnel", id="executor-reads-dashboard"),
    pytest.param("executor", "select queue_error('x', 'y')", id="executor-calls-a-helper"),
    pytest.param("executor", "select apply_access_policy()", id="executor-applies-the-policy"),
    pytest.param("executor", "select * from flags", id="executor-reads-flags"),
    pytest.param("executor", "select * from queue_core.claim_signals_wait('bot-a', 1, 60, null, 0)",
                 id="executor-waits-without-the-consumer-check"),
]


@pytest.mark.parametrize(("role", "statement"), DENIED)
def test_what_a_role_may_not_do_is_denied(seeded: tuple[str, uuid.UUID, str], role: str, statement: str) -> None:
    url, signal_id, _ = seeded
    with as_role(url, role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    with psycopg.connect(url) as conn:
        assert conn.execute("select status, claimed_by from signals where id = %s", [signal_id]).fetchone() == (
            "new", None)
        assert conn.execute("select count(*) from heartbeats").fetchone()[0] == 0


@pytest.mark.parametrize("role", ["anon", "authenticated", "executor"])
def test_only_service_role_may_emit_a_signal(seeded: tuple[str, uuid.UUID, str], role: str) -> None:
    url, _, _ = seeded
    with as_role(url, role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select emit_signal(%s)", [a_signal("ETH-USDT")])
    with as_role(url, "service_role") as conn:
        conn.execute("select emit_signal(%s)", [a_signal("ETH-USDT")])
        assert conn.execute("select count(*) from signals").fetchone()[0] == 2


def test_a_member_reads_every_dashboard_view_and_sees_the_funnel(seeded: tuple[str, uuid.UUID, str]) -> None:
    url, _, _ = seeded
    with psycopg.connect(url, autocommit=True) as conn:
        views = [r[0] for r in conn.execute("select relname from pg_class where relkind in ('v', 'm')"
                                            " and relnamespace = 'public'::regnamespace and relname like 'dashboard%'")]
        conn.execute("insert into dashboard_members (user_id, added_by) values (%s, 'test')"
                     " on conflict do nothing", [MEMBER])
    assert views
    with as_role(url, "authenticated") as conn:
        conn.execute("select set_config('request.jwt.claims', %s, false)",
                     [f'{{"role": "authenticated", "sub": "{MEMBER}"}}'])
        for view in views:
            conn.execute(sql.SQL("select * from {} limit 1").format(sql.Identifier(view)))
        funnel = conn.execute("select strategy, emitted, claimed, open from dashboard_signal_funnel").fetchall()
    assert funnel == [("rsi_dip", 1, 0, 1)]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_a_candle_partition_read_directly_is_denied(seeded: tuple[str, uuid.UUID, str], role: str) -> None:
    url, _, partition = seeded
    with as_role(url, role) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(sql.SQL("select * from {}").format(sql.Identifier(partition)))


def test_with_supabase_default_grants_a_new_partition_shows_authenticated_no_rows(migrated_db: str) -> None:
    # Supabase grants every new table in public to anon and authenticated by default; a partition that
    # pg_cron creates later gets those grants, and row-level security must still show them nothing.
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("alter default privileges in schema public grant all on tables to anon, authenticated")
        conn.execute("select create_candle_partitions(now() + interval '2 years', now() + interval '2 years')")
        conn.execute("insert into candles values ('binance', 'BTC-USDT', '1h', now() + interval '2 years',"
                     " 1, 2, 0.5, 1.5, 10)")
        partition = conn.execute("select tableoid::regclass::text from candles where timeframe = '1h'").fetchone()[0]
    with as_role(migrated_db, "authenticated") as conn:
        rows = conn.execute(sql.SQL("select * from {}").format(sql.Identifier(partition))).fetchall()
    assert rows == []


def test_executor_runs_the_whole_queue_protocol_through_its_four_functions(
        seeded: tuple[str, uuid.UUID, str]) -> None:
    url, signal_id, _ = seeded
    with as_role(url, "executor") as conn:
        claimed = conn.execute("select id from claim_signals('bot-a', 5, 60)").fetchall()
        assert claimed == [(signal_id,)]
        assert conn.execute("select status from ack_signal(%s, 'bot-a', 'executing')", [signal_id]).fetchone() == (
            "executing",)
        reply = conn.execute("select report_order_event(%s)", [Jsonb({
            "type": "order_created", "signal_id": str(signal_id), "ts": datetime.now(UTC).isoformat(),
            "client_order_id": "buy-1", "exchange": "binance", "symbol": "BTC-USDT", "side": "buy",
            "purpose": "entry", "order_type": "market", "amount": 0.001})]).fetchone()[0]
        assert reply["status"] == "created"
        conn.execute("select heartbeat('bot-a', %s)", [Jsonb({"claimed": 1})])
    with psycopg.connect(url) as conn:
        assert conn.execute("select status, claimed_by from signals").fetchall() == [("executing", "bot-a")]
        assert conn.execute("select client_order_id from orders").fetchall() == [("buy-1",)]
        assert conn.execute("select component from heartbeats").fetchall() == [("bot-a",)]


def test_service_role_reads_and_writes_tables_and_reads_views(seeded: tuple[str, uuid.UUID, str]) -> None:
    url, signal_id, _ = seeded
    with as_role(url, "service_role") as conn:
        assert conn.execute("select id from signals").fetchall() == [(signal_id,)]
        conn.execute("update signals set reject_reason = 'checked', status = 'rejected' where id = %s", [signal_id])
        conn.execute("insert into heartbeats (component) values ('controller')")
        conn.execute("delete from heartbeats where component = 'controller'")
        assert conn.execute("select count(*) from candles").fetchone()[0] == 1
        assert conn.execute("select rejected from dashboard_signal_funnel").fetchall() == [(1,)]
