"""Apply the SQL migrations in `supabase/migrations/` in file-name order, each once, recorded with a checksum.

The files are the ones the Supabase CLI applies (`supabase db push`): `<version>_<name>.sql`, the version a
14-digit UTC timestamp as `supabase migration new` writes it, so both tools run the same files in the same
order. A database migrated by the CLI is recognised: the versions in its `supabase_migrations.schema_migrations`
count as applied here.

Before them, the compatibility bootstrap in `sql/compat/` creates Supabase's roles and `auth.*`
functions on plain Postgres, where (and only where) they are missing; it is never applied on Supabase.
An applied migration whose file changed afterwards stops everything: migrations are immutable, a
change is a new file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from controller.config_base import PROJECT_ROOT

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "supabase" / "migrations"
COMPAT_DIR = PROJECT_ROOT / "sql" / "compat"

# Serialises concurrent `migrate` runs against one database (any constant works; this one spells "migr").
_LOCK_KEY = 0x6D696772

SUPABASE_ROLES = ("anon", "authenticated", "service_role", "authenticator")
AUTH_FUNCTIONS = ("auth.uid()", "auth.role()", "auth.jwt()")


# The Supabase CLI's own file pattern: it skips any other file, so this tool refuses one rather than diverge.
_FILE_PATTERN = re.compile(r"^([0-9]+)_(.+)\.sql$")


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

    @property
    def version(self) -> str:
        return _version_and_title(self.name)[0]

    @property
    def title(self) -> str:
        return _version_and_title(self.name)[1]


def _version_and_title(filename: str) -> tuple[str, str]:
    match = _FILE_PATTERN.match(filename)
    return (match.group(1), match.group(2)) if match else ("", filename)


@dataclass
class MigrateReport:
    compat: str = ""
    applied: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # applied earlier by the Supabase CLI, recorded now
    notices: list[str] = field(default_factory=list)


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files of a folder, in file-name order."""
    paths = sorted(directory.glob("*.sql"))
    for path in paths:
        if not _FILE_PATTERN.match(path.name):
            raise MigrationError(f"{path}: not named <version>_<name>.sql (e.g. 20260101000020_my_change.sql), "
                                 "so the Supabase CLI would skip it; rename it")
    return [Migration(p.name, p, p.read_text()) for p in paths]


def _adopt_renamed(conn: psycopg.Connection, migrations: list[Migration],
                   applied: dict[str, tuple[str, object]]) -> None:
    """Rows recorded under an earlier file name of the same migration (same title after the version, same
    checksum) take the file's current name: renumbering files to Supabase's timestamps applies nothing twice."""
    by_title = {(_version_and_title(name)[1], checksum): name for name, (checksum, _) in applied.items()}
    for m in migrations:
        old = by_title.get((m.title, m.checksum))
        if m.name not in applied and old is not None and old != m.name:
            conn.execute("update schema_migrations set filename = %s where filename = %s", (m.name, old))
            applied[m.name] = applied.pop(old)
            logger.info("migration renamed", extra={"migration": m.name, "was": old})


def _applied_by_supabase_cli(conn: psycopg.Connection) -> set[str]:
    """The versions `supabase db push` recorded in this database (none where it never ran)."""
    if conn.execute("select to_regclass('supabase_migrations.schema_migrations')").fetchone()[0] is None:
        return set()
    return {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}


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
            _adopt_renamed(conn, migrations, applied)
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

            by_cli = _applied_by_supabase_cli(conn)
            for m in migrations:
                if m.name in applied:
                    continue
                if m.version in by_cli:  # applied by `supabase db push`: recorded here, not run again
                    conn.execute("insert into schema_migrations (filename, checksum) values (%s, %s)",
                                 (m.name, m.checksum))
                    report.adopted.append(m.name)
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
