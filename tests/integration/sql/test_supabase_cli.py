"""The real Supabase CLI (`supabase db push --db-url …`, pinned in tools/supabase-cli) applies
supabase/migrations/ to a plain Postgres and gives the same schema as `python -m controller migrate`.

Plain Postgres lacks Supabase's roles and auth functions, so the compatibility bootstrap (sql/compat/) runs
first, as it would before a push to a self-hosted database. Skipped, with the reason, where the CLI is not
installed (`make setup` installs it with npm).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from urllib.parse import quote

import psycopg
import pytest

from controller.config import PROJECT_ROOT
from controller.data.embedded_db import EmbeddedDbError, find_binaries
from controller.data.migrate import COMPAT_DIR, MIGRATIONS_DIR
from tests.conftest import PgServer

SUPABASE_CLI = PROJECT_ROOT / "tools" / "supabase-cli" / "node_modules" / ".bin" / "supabase"
PINNED = '"supabase": "2.117.0"'

pytestmark = pytest.mark.skipif(
    not SUPABASE_CLI.exists(),
    reason="the Supabase CLI is not installed: make setup installs it (npm ci in tools/supabase-cli; needs npm)")


def pg_dump_binary() -> str:
    try:
        return str(find_binaries()[1] / "pg_dump")  # the embedded server's own, so the versions match
    except EmbeddedDbError:
        found = shutil.which("pg_dump")
        if found is None:
            pytest.skip("no pg_dump to compare schemas with")
        return found


def schema(url: str) -> str:
    """The schema as pg_dump prints it, less each tool's own bookkeeping and pg_dump's per-run key."""
    dump = subprocess.run([pg_dump_binary(), "--schema-only", "--exclude-schema=supabase_migrations",
                           "--exclude-table=public.schema_migrations", "--dbname", url],
                          capture_output=True, text=True, check=True, timeout=120).stdout
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict")))


def as_url(conninfo: str) -> str:
    """A postgresql:// URL (the CLI takes no key=value conninfo), TLS off: the test server has none."""
    parts = psycopg.conninfo.conninfo_to_dict(conninfo)
    password = f":{quote(str(parts['password']), safe='')}" if parts.get("password") else ""
    return (f"postgresql://{quote(str(parts.get('user', 'postgres')), safe='')}{password}@{parts['host']}:"
            f"{parts.get('port', 5432)}/{parts['dbname']}?sslmode=disable")


def controller_migrate(url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env["DATABASE_URL"] = url
    return subprocess.run([sys.executable, "-m", "controller", "migrate"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_cli_is_the_pinned_version() -> None:
    assert PINNED in (PROJECT_ROOT / "tools" / "supabase-cli" / "package.json").read_text()
    version = subprocess.run([str(SUPABASE_CLI), "--version"], capture_output=True, text=True, check=True,
                             timeout=60).stdout.strip()
    assert f'"supabase": "{version}"' == PINNED


def test_supabase_db_push_and_controller_migrate_give_the_same_schema(pg_server: PgServer) -> None:
    by_cli = pg_server.create_database()
    by_controller = pg_server.create_database()
    try:
        with psycopg.connect(by_cli, autocommit=True) as conn:
            for path in sorted(COMPAT_DIR.glob("*.sql")):
                conn.execute(path.read_text())
        pushed = subprocess.run(
            [str(SUPABASE_CLI), "db", "push", "--db-url", as_url(by_cli), "--include-all", "--yes",
             "--workdir", str(PROJECT_ROOT)],
            capture_output=True, text=True, timeout=300, check=False)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        migrations = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
        with psycopg.connect(by_cli) as conn:
            versions = [r[0] for r in conn.execute(
                "select version from supabase_migrations.schema_migrations order by version")]
        assert versions == [name.split("_", 1)[0] for name in migrations]

        migrated = controller_migrate(by_controller)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr

        pushed_schema, migrated_schema = schema(by_cli), schema(by_controller)
        assert "create table public.signals" in migrated_schema.lower()
        assert pushed_schema == migrated_schema

        # A database the CLI migrated is up to date for `controller migrate` too: it records, runs nothing.
        after_push = controller_migrate(by_cli)
        assert after_push.returncode == 0, after_push.stdout + after_push.stderr
        assert f"recorded {len(migrations)} migration(s) applied by the Supabase CLI" in after_push.stdout
        assert schema(by_cli) == migrated_schema
    finally:
        pg_server.drop_database(by_cli)
        pg_server.drop_database(by_controller)
