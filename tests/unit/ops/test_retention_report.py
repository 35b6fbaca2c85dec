"""What `retention run` and `storage` print, from given figures (no database): sizes, growth, projections,
warnings. The SQL planning itself is tested in tests/integration/ops/test_retention*.py and by the SQL mutants."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from controller.ops.retention import (
    GROWTH_WINDOW,
    RetentionError,
    RetentionRow,
    TableStorage,
    _time_column,
    human_bytes,
    retention_table,
    storage_table,
    storage_warnings,
)

GB = 1024**3


def render(table: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    return out.getvalue()


@pytest.mark.parametrize(("n", "shown"), [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 kB"), (1536, "1.5 kB"), (1024**2, "1.0 MB"),
    (5 * GB, "5.0 GB"), (3000 * GB, "3000.0 GB"), (-1536, "-1.5 kB"), (-10, "-10 B"),
])
def test_human_bytes(n: float, shown: str) -> None:
    assert human_bytes(n) == shown


def test_growth_is_the_last_weeks_rows_per_day_times_the_bytes_per_row() -> None:
    t = TableStorage("scans", rows=1000, total_bytes=100_000, time_column="scanned_at", rows_last_7d=700)
    assert GROWTH_WINDOW.days == 7
    assert t.bytes_per_row == 100
    assert t.growth_bytes_per_day == 100 * 100
    assert t.projected_bytes(30) == 100_000 + 30 * 10_000
    empty = TableStorage("flags", rows=0, total_bytes=8192, time_column=None, rows_last_7d=None)
    assert empty.bytes_per_row == 0 and empty.growth_bytes_per_day is None and empty.projected_bytes(90) == 8192


def test_warnings_for_a_table_above_the_size_now_or_in_ninety_days_only() -> None:
    big = TableStorage("candles", 10, 2 * GB, "ts", 0)
    growing = TableStorage("scans", 700, 700 * 1024, "scanned_at", 700)  # 100 rows x 1 kB a day: + 9 MB in 90 d
    small = TableStorage("flags", 3, 1024, None, None)
    assert storage_warnings([big, growing, small], warn_gb=1.0) == ["candles is 2.0 GB, above the 1 GB warning size"]
    [line] = storage_warnings([growing], warn_gb=0.009)
    assert line == ("scans is projected to reach 9.5 MB in 90 days (growing 100.0 kB/day), above the 0.009 GB "
                    "warning size")
    at_limit = TableStorage("t", 1, GB, None, None)
    assert storage_warnings([at_limit], warn_gb=1.0) == []


def test_the_storage_table_shows_each_table_and_the_totals() -> None:
    rows = [TableStorage("candles", 2_000_000, 2 * GB, "ts", 700_000),
            TableStorage("flags", 3, 1024, None, None)]
    text = render(storage_table(rows, warn_gb=1.0))
    assert "candles" in text and "2,000,000" in text and "2.0 GB" in text
    flags_line = next(line for line in text.splitlines() if "flags" in line)
    assert "1.0 kB" in flags_line and " - " in flags_line
    total = next(line for line in text.splitlines() if "total" in line)
    assert "2,000,003" in total


def test_the_retention_table_shows_rows_for_row_actions_and_bytes_where_they_mean_something() -> None:
    report = [RetentionRow("candles", "moved", 1200, 0, "1m to archive"),
              RetentionRow("candles", "partitions_dropped", 2, 16384, "candles_2018_03"),
              RetentionRow("candles", "bytes_freed", 0, 4096, "")]
    text = render(retention_table(report, dry_run=False))
    lines = text.splitlines()
    moved = next(line for line in lines if "moved" in line)
    assert "1,200" in moved and " B " not in moved and "1m to archive" in moved
    dropped = next(line for line in lines if "partitions dropped" in line)
    assert "16.0 kB" in dropped
    freed = next(line for line in lines if "bytes freed" in line)
    assert "4.0 kB" in freed and "0" not in freed.replace("4.0 kB", "")
    assert "retention" in text and "dry run" not in text
    assert "dry run: nothing changed" in render(retention_table(report, dry_run=True))


def test_time_columns_fall_back_to_created_at() -> None:
    assert _time_column("candles", ["ts"]) == "ts"
    assert _time_column("candles_archive", ["ts"]) is None
    assert _time_column("ml_models", ["version", "created_at"]) == "created_at"
    assert _time_column("heartbeats", ["component"]) is None


def test_a_retention_error_carries_its_exit_code() -> None:
    assert RetentionError("x").code == 2 and RetentionError("y", code=1).code == 1 and str(RetentionError("z")) == "z"


def cells(table: object) -> list[list[str]]:
    columns = table.columns  # type: ignore[attr-defined]
    return [[str(c) for c in row] for row in zip(*(col._cells for col in columns), strict=True)]


def test_the_storage_table_layout_values_and_highlights() -> None:
    big = TableStorage("candles", 2_000_000, 2 * GB, "ts", 700_000)
    growing = TableStorage("scans", 700, 700 * 1024**2, "scanned_at", 700)  # 100 MB a day: 9.5 GB in 90 days
    quiet = TableStorage("flags", 3, 1024, None, None)
    table = storage_table([big, growing, quiet], warn_gb=1.0)
    assert table.title == "storage (growth: rows of the last 7 days; projections are linear, before retention)"
    assert [c.header for c in table.columns] == ["table", "rows", "size", "growth/day", "in 30 days", "in 90 days",
                                                 "from"]
    assert [c.justify for c in table.columns] == ["left", "right", "right", "right", "right", "right", "left"]
    assert cells(table) == [
        ["candles", "2,000,000", "2.0 GB", "102.4 MB", "5.0 GB", "11.0 GB", "ts"],
        ["scans", "700", "700.0 MB", "100.0 MB", "3.6 GB", "9.5 GB", "scanned_at"],
        ["flags", "3", "1.0 kB", "-", "1.0 kB", "1.0 kB", "-"],
        ["total", "2,000,703", "2.7 GB", "202.4 MB", "8.6 GB", "20.5 GB", ""],
    ]
    assert [r.style for r in table.rows] == ["bold red", "yellow", None, "bold"]


def test_a_table_exactly_at_the_warning_size_is_not_highlighted() -> None:
    table = storage_table([TableStorage("t", 1, GB, None, None)], warn_gb=1.0)
    assert table.rows[0].style is None


def test_the_retention_table_layout_and_values() -> None:
    report = [RetentionRow("candles", "moved", 1200, 0, "1m to archive"),
              RetentionRow("scans", "deleted", 0, 0, ""),
              RetentionRow("candles", "partitions_dropped", 2, 16384, "candles_2018_03"),
              RetentionRow("candles", "bytes_freed", 0, 0, ""),
              RetentionRow("ml_predictions", "deleted", 5, 2048, "")]
    table = retention_table(report, dry_run=False)
    assert table.title == "retention"
    assert retention_table([], dry_run=True).title == "retention (dry run: nothing changed)"
    assert [c.header for c in table.columns] == ["table", "action", "rows", "bytes", "detail"]
    assert [c.justify for c in table.columns] == ["left", "left", "right", "right", "left"]
    assert cells(table) == [
        ["candles", "moved", "1,200", "", "1m to archive"],
        ["scans", "deleted", "0", "", ""],
        ["candles", "partitions dropped", "2", "16.0 kB", "candles_2018_03"],
        ["candles", "bytes freed", "", "0 B", ""],
        ["ml_predictions", "deleted", "5", "2.0 kB", ""],
    ]


def test_the_warning_size_is_in_binary_gigabytes_and_projects_exactly_ninety_days() -> None:
    just_above = TableStorage("t", 1, GB + 1, None, None)
    assert storage_warnings([just_above], warn_gb=1.0) == ["t is 1.0 GB, above the 1 GB warning size"]
    assert storage_table([just_above], warn_gb=1.0).rows[0].style == "bold red"
    # 7 rows of 1 MB in the last week: 1 MB a day; at 90 days exactly at the limit, at 91 above it
    ninety = TableStorage("u", 7, 7 * 1024**2, "ts", 7)
    limit_gb = ninety.projected_bytes(90) / GB
    assert storage_warnings([ninety], warn_gb=limit_gb) == []
    assert storage_table([ninety], warn_gb=limit_gb).rows[0].style is None


def test_a_dropped_partition_shows_its_bytes_even_when_zero_and_totals_count_no_growth_as_zero() -> None:
    [row] = cells(retention_table([RetentionRow("candles", "partitions_dropped", 1, 0, "p")], dry_run=True))
    assert row == ["candles", "partitions dropped", "1", "0 B", "p"]
    table = storage_table([TableStorage("flags", 3, 1024, None, None)], warn_gb=1.0)
    assert cells(table)[-1][3] == "0 B"
