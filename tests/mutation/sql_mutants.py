"""SQL mutants: hand-written one-line bugs in the queue and retention functions, each of which a test must catch.

`python -m tests.mutation.sql_mutants` (run by `make mutation`) runs, for each mutant, the tests that guard that
function with `SQL_MUTANT=<name>` set: the test fixtures (`migrated_db`, `module_db` in tests/conftest.py)
then apply every migration and `create or replace` the mutated function on top, so the tests run on a fresh
database that has the bug. A mutant is caught when its tests fail; the script prints a table and a last JSON
line and exits 1 when any mutant survives (or no longer applies: the function it mutates changed).

The migrations themselves are never edited: the mutated text is built from the applied file in memory. Each
mutant names the migration that holds the live definition of its function and the schema the function lives
in now (0016 moved the queue functions, unchanged, to `queue_core` behind public wrappers that check the
consumer; 0018 and then 0026 redefine `queue_core.claim_signals` there): the mutant replaces that function, not the
wrapper, and refuses to apply when the function in the migrated database is no longer the text it mutates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from controller.data.migrate import MIGRATIONS_DIR

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = MIGRATIONS_DIR
ENV = "SQL_MUTANT"


@dataclass(frozen=True)
class SqlMutant:
    name: str
    migration: str  # file name in supabase/migrations
    function: str  # the function whose `create [or replace] function` statement is mutated
    original: str  # exact text in that statement; must occur exactly once
    mutated: str
    tests: tuple[str, ...]  # pytest node ids (or files) that must fail on it
    why: str
    schema: str = "public"  # where the function lives once every migration has run


MUTANTS: tuple[SqlMutant, ...] = (
    SqlMutant(
        "long_poll_never_waits", "20260101000026_claim_wait.sql", "claim_signals_wait",
        "    while clock_timestamp() < deadline", "    while false and clock_timestamp() < deadline",
        ("tests/integration/sql/test_queue_contract.py::"
         "test_a_waiting_claim_returns_the_signal_emitted_while_it_waits",),
        "the long-poll claim answers at once: a PostgREST bot claims a signal only on its next call, and the "
        "claim thread asks again and again", "queue_core"),
    SqlMutant(
        "long_poll_wakes_for_other_markets", "20260101000026_claim_wait.sql", "claim_signals_wait",
        "                 and max_count > 0\n                 and (markets is null or exists (",
        "                 and max_count > 0\n                 and (true or exists (",
        ("tests/integration/sql/test_queue_contract.py::"
         "test_a_waiting_claim_with_nothing_to_claim_returns_empty_after_its_wait",),
        "a signal of a market the bot does not trade ends its wait with nothing: every bot of other markets "
        "turns into a busy loop of requests until that signal is claimed or expires", "queue_core"),
    SqlMutant(
        "skip_locked_removed", "20260101000026_claim_wait.sql", "claim_signals",
        "for update skip locked", "for update",
        ("tests/integration/sql/test_queue_concurrency.py::"
         "test_a_claim_skips_rows_another_consumer_is_still_claiming_instead_of_waiting",),
        "a claim waits behind another consumer's open claim instead of taking the next signal: bots serialise, "
        "and a slow one stalls the rest (the 8 x 1000 race test alone does not catch it)", "queue_core"),
    SqlMutant(
        "lease_check_dropped", "20260101000026_claim_wait.sql", "claim_signals",
        "where (s.status = 'new' or (s.status = 'claimed' and s.lease_until < as_of))\n           and s.expires_at",
        "where (s.status = 'new' or s.status = 'claimed')\n           and s.expires_at",
        ("tests/integration/sql/test_signal_contract.py", "tests/integration/sql/test_queue_contract.py"),
        "a signal under a live lease is handed to a second consumer: executed twice", "queue_core"),
    SqlMutant(
        "exit_routing_dropped", "20260101000026_claim_wait.sql", "claim_signals",
        "e.claimed_by = claim_signals.consumer and e.status in ('claimed', 'executing'))",
        "e.status in ('claimed', 'executing'))",
        ("tests/integration/sql/test_signal_kinds.py::"
         "test_an_exit_is_claimed_only_by_the_consumer_holding_its_entry",),
        "an exit signal is handed to a bot that does not hold its entry: it can only reject it, and the position "
        "the controller wanted closed stays open", "queue_core"),
    SqlMutant(
        "idempotency_key_ignored", "20260101000012_executor_real_exchange.sql", "report_order_event",
        "values (coid, queue_text(fn, event, 'exchange_trade_id', true), sid,",
        "values (coid, queue_text(fn, event, 'exchange_trade_id', true) || gen_random_uuid()::text, sid,",
        ("tests/integration/sql/test_order_events.py", "tests/integration/sql/test_queue_contract.py"),
        "a repeated fill report (a retry, a replayed outbox) is stored twice: amounts and fees doubled",
        "queue_core"),
    SqlMutant(
        "status_rank_ignored", "20260101000012_executor_real_exchange.sql", "report_order_event",
        "status = case when order_status_rank(excluded.status) > order_status_rank(cur.status)\n"
        "                      then excluded.status else cur.status end,",
        "status = excluded.status,",
        ("tests/integration/sql/test_order_events.py",),
        "a late 'created' or partial-fill report moves a filled order back to open", "queue_core"),
    SqlMutant(
        "fees_zeroed_in_executor_positions", "20260101000012_executor_real_exchange.sql", "executor_positions",
        "coalesce(sum(f.fee_quote), 0),", "0::numeric,",
        ("tests/integration/sql/test_queue_contract.py",),
        "a restarted executor forgets the entry fees: the P&L of the trade it closes is too high", "queue_core"),
    SqlMutant(
        "retention_lock_removed", "20260101000010_retention.sql", "run_retention",
        "execute format('lock table %s in share mode', p.rel);", "null;",
        ("tests/integration/ops/test_retention_lock.py",),
        "a candle written while retention rewrites its partition is lost with the old partition"),
)


def by_name(name: str) -> SqlMutant:
    for mutant in MUTANTS:
        if mutant.name == name:
            return mutant
    raise KeyError(f"{ENV}={name}: no such SQL mutant; known: {', '.join(m.name for m in MUTANTS)}")


def function_statement(sql: str, function: str) -> str:
    """The last whole `create [or replace] function <function>(...) ... $$;` statement of a migration."""
    matches = re.findall(rf"^create (?:or replace )?function (?:\w+\.)?{re.escape(function)}\(.*?^\$\$;$", sql,
                         re.DOTALL | re.MULTILINE)
    if not matches:
        raise ValueError(f"no `create function {function}(` ... `$$;` statement found")
    return matches[-1]


def function_body(statement: str) -> str:
    """The text between `as $$` and the closing `$$` (what the database keeps as the function's source)."""
    return statement.split("\nas $$", 1)[1].rsplit("$$;", 1)[0]


def mutated_sql(mutant: SqlMutant) -> str:
    """`create or replace function <schema>.<function>(...)` with the mutation applied; raises if the
    original text moved."""
    statement = function_statement((MIGRATIONS / mutant.migration).read_text(), mutant.function)
    found = statement.count(mutant.original)
    if found != 1:
        raise ValueError(f"SQL mutant {mutant.name}: expected the original text once in {mutant.function} "
                         f"({mutant.migration}), found it {found} times: update the mutant")
    header = re.compile(rf"^create (?:or replace )?function (?:\w+\.)?{re.escape(mutant.function)}\(")
    return header.sub(f"create or replace function {mutant.schema}.{mutant.function}(",
                      statement.replace(mutant.original, mutant.mutated), count=1)


def live_source(conn: psycopg.Connection, mutant: SqlMutant) -> str:
    """The source of the function the mutant replaces, as the migrated database holds it."""
    rows = conn.execute("select p.prosrc from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
                        "where n.nspname = %s and p.proname = %s", (mutant.schema, mutant.function)).fetchall()
    if len(rows) != 1:
        raise ValueError(f"SQL mutant {mutant.name}: {len(rows)} functions {mutant.schema}.{mutant.function}")
    return str(rows[0][0])


def check_live(conn: psycopg.Connection, mutant: SqlMutant) -> None:
    """Refuse a mutant whose function was redefined after its migration (it would plant stale logic)."""
    statement = function_statement((MIGRATIONS / mutant.migration).read_text(), mutant.function)
    if live_source(conn, mutant) != function_body(statement):
        raise ValueError(f"SQL mutant {mutant.name}: {mutant.schema}.{mutant.function} in the migrated database "
                         f"is not the one in {mutant.migration}: point the mutant at the migration that defines it")


def apply_from_environment(conn: psycopg.Connection) -> str | None:
    """Called by the test fixtures after `migrate`: plant the mutant named by $SQL_MUTANT, if any."""
    name = os.environ.get(ENV)
    if not name:
        return None
    mutant = by_name(name)
    check_live(conn, mutant)
    conn.execute(mutated_sql(mutant))
    conn.commit()
    return name


def run(mutant: SqlMutant) -> tuple[bool, float, str]:
    """Run the mutant's tests on a database with the bug; (caught, seconds, last line of pytest's output)."""
    env = {**os.environ, ENV: mutant.name}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p", "no:cacheprovider",
                             *mutant.tests], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else result.stderr.strip()[-200:]
    # a test failed: caught; all passed: survived. An error (say, the mutated SQL did not apply) is neither.
    broken = result.returncode not in (0, 1) or (result.returncode == 1 and " failed" not in summary)
    if broken:
        raise RuntimeError(f"{mutant.name}: pytest exited {result.returncode}: {summary}\n{result.stdout[-3000:]}")
    return result.returncode == 1, time.monotonic() - started, summary


def main(argv: list[str]) -> int:
    from rich.console import Console
    from rich.table import Table

    chosen = [by_name(n) for n in argv] if argv else list(MUTANTS)
    for mutant in chosen:
        mutated_sql(mutant)  # fail fast when a mutant no longer applies
    table = Table(title="SQL mutants")
    for column in ("mutant", "function", "result", "tests", "seconds"):
        table.add_column(column)
    caught = 0
    for mutant in chosen:
        killed, seconds, summary = run(mutant)
        caught += killed
        table.add_row(mutant.name, mutant.function, "caught" if killed else "[red]SURVIVED[/red]", summary,
                      f"{seconds:.0f}")
    Console(width=160).print(table)
    print(json.dumps({"sql_mutants": len(chosen), "caught": caught, "survived": len(chosen) - caught}))
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
