"""The signal funnel as the dashboard shows it: read from the views `dashboard_signal_funnel` (entry signals
through stages that only narrow) and `dashboard_exit_signals` (exit signals, counted apart).

The stages are defined once, in SQL (migration 0027); the report, the demo's console tables and
`phase check` read them here, so none of them can count a stage differently from the dashboard.
"""

from __future__ import annotations

import psycopg

from controller.ops.report_figures import ExitCounts, Funnel

_FUNNEL = """
    select coalesce(sum(emitted), 0)::int, coalesce(sum(claimed), 0)::int, coalesce(sum(ordered), 0)::int,
           coalesce(sum(filled), 0)::int, coalesce(sum(closed), 0)::int, coalesce(sum(rejected), 0)::int,
           coalesce(sum(expired), 0)::int, coalesce(sum(open), 0)::int, coalesce(sum(waiting), 0)::int,
           coalesce(sum(skipped_claimed), 0)::int, coalesce(sum(skipped_ordered), 0)::int,
           coalesce(sum(skipped_filled), 0)::int
      from dashboard_signal_funnel
"""
_EXITS = """
    select coalesce(sum(emitted), 0)::int, coalesce(sum(claimed), 0)::int, coalesce(sum(executed), 0)::int,
           coalesce(sum(rejected), 0)::int, coalesce(sum(expired), 0)::int, coalesce(sum(open), 0)::int,
           coalesce(sum(waiting), 0)::int
      from dashboard_exit_signals
"""


def read_funnel(conn: psycopg.Connection) -> Funnel:
    """Every entry signal in the database, through the funnel's stages."""
    row = conn.execute(_FUNNEL).fetchone()
    assert row is not None  # an aggregate without group by always returns one row
    *counts, without_claim, without_order, without_fill = row
    skipped = {stage: n for stage, n in (("claimed", without_claim), ("ordered", without_order),
                                         ("filled", without_fill)) if n}
    return Funnel(*counts, skipped=skipped)


def read_exits(conn: psycopg.Connection) -> ExitCounts:
    """Every exit signal in the database, by what became of it."""
    row = conn.execute(_EXITS).fetchone()
    assert row is not None
    return ExitCounts(*row)
