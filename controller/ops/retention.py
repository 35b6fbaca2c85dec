"""`python -m controller retention run` and `python -m controller storage`: bounded storage, and what it costs.

Retention itself lives in SQL (`run_retention` in supabase/migrations/20260101000010_retention.sql), scheduled
by pg_cron where it runs; `retention_command` calls the same function and prints its report, for databases without
pg_cron or to run it by hand (`--dry-run` shows what a run would do and changes nothing).

`storage_command` prints, per table: rows, size on disk (partitions, indexes and TOAST included), growth per
day and a linear projection at 30 and 90 days. Growth per day is measured on the table's own time column
(`TIME_COLUMNS`: candles.ts, scans.scanned_at, signals.created_at, ...) as the rows of the last 7 days
divided by 7, times the table's average bytes per row. Projections ignore retention, so they are upper
bounds for the tables it trims. Tables above `warn_gb` now or in the 90-day projection get a warning line;
the command still exits 0 (it reports, it does not fail).

Wired into the typer app by controller/cli/ops.py as `retention run [--dry-run]` (the command migration 0002
names) and `storage [--warn-gb X]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql
from rich.table import Table

DEFAULT_WARN_TABLE_GB = 1.0
GROWTH_WINDOW = timedelta(days=7)

# The column that says when a row arrived, per table. Tables not listed fall back to a `created_at`
# column when they have one; tables without either (one row per flag, per component) show no growth.
# candles_archive is fed by retention a month at a time, not by time: no daily growth for it.
TIME_COLUMNS: dict[str, str | None] = {
    "candles": "ts",
    "candles_archive": None,
    "scans": "scanned_at",
    "scans_daily": "aggregated_at",
    "signals": "created_at",
    "orders": "created_at",
    "fills": "ts",
    "trades": "closed_at",
    "ml_predictions": "created_at",
    "shadow_outcomes": "created_at",
    "shadow_performance": "computed_at",
    "flag_changes": "changed_at",
}


def human_bytes(n: float) -> str:
    """1536 -> '1.5 kB'; negative values keep their sign."""
    sign, size = ("-" if n < 0 else ""), float(abs(n))
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{sign}{size:.0f} {unit}" if unit == "B" else f"{sign}{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


# --- retention -----------------------------------------------------------------------------------

# Report actions whose `rows` counts rows (the partition actions count partitions).
ROW_ACTIONS = ("moved", "deleted", "aggregated", "unlinked")


@dataclass(frozen=True)
class RetentionRow:
    table_name: str
    action: str
    rows: int
    bytes: int
    detail: str


class RetentionError(Exception):
    """Retention could not run; `code` is the exit code the command should end with."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def run_retention(conn: psycopg.Connection, *, dry_run: bool = False,
                  now: datetime | None = None) -> list[RetentionRow]:  # pragma: no mutate block
    """Run `run_retention` in SQL (one transaction, committed here) and return its report."""
    if conn.execute("select to_regprocedure('run_retention(boolean, timestamptz, interval)')").fetchone()[0] is None:
        conn.rollback()
        raise RetentionError("the database has no run_retention function yet: run python -m controller migrate")
    try:
        if now is None:
            rows = conn.execute("select * from run_retention(%s)", (dry_run,)).fetchall()
        else:
            rows = conn.execute("select * from run_retention(%s, %s)", (dry_run, now)).fetchall()
        conn.commit()
    except psycopg.errors.LockNotAvailable as exc:
        conn.rollback()
        raise RetentionError(f"retention waited too long for a lock ({exc.diag.message_primary}); nothing was changed, "
                    "run it again later", code=1) from None
    return [RetentionRow(*row) for row in rows]


def retention_table(report: list[RetentionRow], *, dry_run: bool) -> Table:
    table = Table(title="retention (dry run: nothing changed)" if dry_run else "retention")
    for column, justify in (("table", "left"), ("action", "left"), ("rows", "right"), ("bytes", "right"),
                            ("detail", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in report:
        rows = "" if row.action == "bytes_freed" else f"{row.rows:,}"
        shown = human_bytes(row.bytes) if row.bytes or row.action in ("bytes_freed", "partitions_dropped") else ""
        table.add_row(row.table_name, row.action.replace("_", " "), rows, shown, row.detail)
    return table


# --- storage -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TableStorage:
    table_name: str
    rows: int
    total_bytes: int
    time_column: str | None
    rows_last_7d: int | None

    @property
    def bytes_per_row(self) -> float:
        return self.total_bytes / self.rows if self.rows else 0.0

    @property
    def growth_bytes_per_day(self) -> float | None:
        """Bytes a day at the rate of the last 7 days (None when the table has no time column)."""
        if self.rows_last_7d is None:
            return None
        return self.rows_last_7d / GROWTH_WINDOW.days * self.bytes_per_row

    def projected_bytes(self, days: int) -> float:
        return self.total_bytes + days * (self.growth_bytes_per_day or 0.0)


_TABLES = """
    select c.relname, c.oid,
           (select coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint
              from (select c.oid as relid union select relid from pg_partition_tree(c.oid)) t),
           array(select a.attname::text from pg_attribute a
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped)
      from pg_class c join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
     where c.relkind in ('r', 'p') and not c.relispartition
     order by c.relname
"""


def _time_column(table: str, columns: list[str]) -> str | None:
    if table in TIME_COLUMNS:
        return TIME_COLUMNS[table]
    return "created_at" if "created_at" in columns else None


def storage_report(conn: psycopg.Connection,
                   now: datetime | None = None) -> list[TableStorage]:  # pragma: no mutate block
    """Rows (exact counts), size and rows of the last 7 days of every table of the public schema."""
    if now is None:
        now = conn.execute("select now()").fetchone()[0]
    report = []
    for name, _oid, total_bytes, columns in conn.execute(_TABLES).fetchall():
        table = sql.Identifier(name)
        rows = conn.execute(sql.SQL("select count(*) from {}").format(table)).fetchone()[0]
        column = _time_column(name, columns)
        recent = None
        if column is not None:
            recent = conn.execute(
                sql.SQL("select count(*) from {} where {} >= %s and {} < %s").format(
                    table, sql.Identifier(column), sql.Identifier(column)),
                (now - GROWTH_WINDOW, now),
            ).fetchone()[0]
        report.append(TableStorage(name, rows, total_bytes, column, recent))
    conn.rollback()  # read only: end the transaction the counts opened
    return sorted(report, key=lambda t: (-t.total_bytes, t.table_name))


def storage_warnings(report: list[TableStorage], warn_gb: float) -> list[str]:
    """One line per table above `warn_gb` now, or in the 90-day projection."""
    limit = warn_gb * 1024**3
    lines = []
    for t in report:
        if t.total_bytes > limit:
            lines.append(f"{t.table_name} is {human_bytes(t.total_bytes)}, above the {warn_gb:g} GB warning size")
        elif t.projected_bytes(90) > limit:
            lines.append(f"{t.table_name} is projected to reach {human_bytes(t.projected_bytes(90))} in 90 days "
                         f"(growing {human_bytes(t.growth_bytes_per_day or 0)}/day), above the {warn_gb:g} GB "
                         "warning size")
    return lines


def storage_table(report: list[TableStorage], warn_gb: float) -> Table:
    limit = warn_gb * 1024**3
    table = Table(title="storage (growth: rows of the last 7 days; projections are linear, before retention)")
    for column in ("table", "rows", "size", "growth/day", "in 30 days", "in 90 days", "from"):
        table.add_column(column, justify="left" if column in ("table", "from") else "right")
    for t in report:
        growth = t.growth_bytes_per_day
        style = "bold red" if t.total_bytes > limit else ("yellow" if t.projected_bytes(90) > limit else None)
        table.add_row(t.table_name, f"{t.rows:,}", human_bytes(t.total_bytes),
                      "-" if growth is None else human_bytes(growth),
                      human_bytes(t.projected_bytes(30)), human_bytes(t.projected_bytes(90)),
                      t.time_column or "-", style=style)
    total = sum(t.total_bytes for t in report)
    table.add_row("total", f"{sum(t.rows for t in report):,}", human_bytes(total),
                  human_bytes(sum(t.growth_bytes_per_day or 0 for t in report)),
                  human_bytes(sum(t.projected_bytes(30) for t in report)),
                  human_bytes(sum(t.projected_bytes(90) for t in report)), "", style="bold")
    return table


