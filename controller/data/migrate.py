"""Apply the SQL migrations in `sql/migrations/` in file-name order, each once, recorded with a checksum.

Before them, the compatibility bootstrap in `sql/compat/` creates Supabase's roles and `auth.*`
functions on plain Postgres, where (and only where) they are missing; it is never applied on Supabase.
An applied migration whose file changed afterwards stops everything: migrations are immutable, a
change is a new file.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from controller.config_base import PROJECT_ROOT

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "sql" / "migrations"
COMPAT_DIR = PROJECT_ROOT / "sql" / "compat"

# Serialises concurrent `migrate` runs against one database (any constant works; this one spells "migr").
_LOCK_KEY = 0x6D696772

SUPABASE_ROLES = ("anon", "authenticated", "service_role", "authenticator")
AUTH_FUNCTIONS = ("auth.uid()", "auth.role()", "auth.jwt()")


class MigrationError(Exception):
    """A migration cannot be applied; the message names the file."""


@dataclass(frozen=True)
class Migration:
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass
class MigrateReport:
    compat: str = ""
    applied: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of a folder, in file-name order."""
    return [Migration(p.name, p, p.read_text()) for p in sorted(directory.glob("*.sql"))]


def _compat_state(conn: psycopg.Connection) -> tuple[bool, list[str]]:
    """Whether this is Supabase, and which of the objects the bootstrap creates are missing."""
    on_supabase = conn.execute(
        "select exists (select 1 from pg_roles where rolname = 'supabase_admin')"
        " or to_regclass('auth.users') is not null"
    ).fetchone()[0]
    present = {r[0] for r in conn.execute("select rolname from pg_roles where rolname = any(%s)",
                                          (list(SUPABASE_ROLES),))}
    missing = [r for r in SUPABASE_ROLES if r not in present]
    for fn in AUTH_FUNCTIONS:
        if conn.execute("select to_regprocedure(%s)", (fn,)).fetchone()[0] is None:
            missing.append(fn)
    return bool(on_supabase), missing


def migrate(
    conn: psycopg.Connection,
    migrations_dir: Path = MIGRATIONS_DIR,
    compat_dir: Path = COMPAT_DIR,
) -> MigrateReport:
    """Bring the database up to date; return what was done. Idempotent."""
    report = MigrateReport()
    migrations = discover(migrations_dir)

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        report.notices.append(diag.message_primary or "")
        logger.info("postgres notice", extra={"notice": diag.message_primary})

    conn.add_notice_handler(on_notice)
    conn.autocommit = False
    try:
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            if conn.execute("select to_regclass('schema_migrations')").fetchone()[0] is None:
                conn.execute(
                    """create table schema_migrations (
                           filename   text primary key,
                           checksum   text not null,
                           applied_at timestamptz not null default now())"""
                )
            applied = {name: (checksum, at) for name, checksum, at in
                       conn.execute("select filename, checksum, applied_at from schema_migrations")}
            for m in migrations:
                if m.name in applied and applied[m.name][0] != m.checksum:
                    raise MigrationError(
                        f"{m.path}: this migration was applied on {applied[m.name][1]:%Y-%m-%d %H:%M} and "
                        "its file has been edited since (checksum differs); applied migrations are immutable: "
                        "restore the file and put the change in a new migration"
                    )
            missing_files = sorted(set(applied) - {m.name for m in migrations})
            if missing_files:
                logger.warning("applied migrations have no file", extra={"files": ",".join(missing_files)})

            on_supabase, missing = _compat_state(conn)
            if on_supabase:
                report.compat = "skipped: Supabase provides its roles and auth functions"
            elif missing:
                for path in sorted(compat_dir.glob("*.sql")):
                    conn.execute(path.read_text())
                report.compat = f"applied: created {', '.join(missing)}"
            else:
                report.compat = "not needed: roles and auth functions present"

            for m in migrations:
                if m.name in applied:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(m.sql)
                except psycopg.Error as exc:
                    raise MigrationError(f"{m.path}: {exc.diag.message_primary or exc}") from exc
                conn.execute("insert into schema_migrations (filename, checksum) values (%s, %s)",
                             (m.name, m.checksum))
                report.applied.append(m.name)
                logger.info("migration applied", extra={"migration": m.name})
    finally:
        conn.remove_notice_handler(on_notice)
    return report
