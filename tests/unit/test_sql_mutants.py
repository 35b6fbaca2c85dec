"""The SQL mutants of `make mutation` still apply to the migrations, and none is planted in a normal run."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from tests.mutation.sql_mutants import ENV, MIGRATIONS, MUTANTS, ROOT, SqlMutant, check_live, live_source, mutated_sql


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_changes_exactly_its_function_and_names_existing_tests(mutant: SqlMutant) -> None:
    text = mutated_sql(mutant)
    assert text.startswith(f"create or replace function {mutant.schema}.{mutant.function}(")
    assert mutant.mutated in text and mutant.original not in text
    assert mutant.original in (MIGRATIONS / mutant.migration).read_text()
    for test in mutant.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_replaces_the_function_that_holds_the_logic_in_a_migrated_database(module_db: str,
                                                                                     mutant: SqlMutant) -> None:
    # The live function is the migration's text (not redefined later, not a wrapper); the mutant lands on it.
    with psycopg.connect(module_db) as conn:
        check_live(conn, mutant)
        assert mutant.original in live_source(conn, mutant)
        conn.execute(mutated_sql(mutant))
        source = live_source(conn, mutant)
        assert mutant.mutated in source and mutant.original not in source
        conn.rollback()
        assert mutant.original in live_source(conn, mutant)


def test_a_mutant_pointed_at_a_superseded_definition_is_refused(module_db: str) -> None:
    # The queue migration's report_order_event was replaced by the real-exchange one's: planting it would bring
    # back old logic besides the bug.
    [stale] = [m for m in MUTANTS if m.name == "status_rank_ignored"]
    stale = SqlMutant(**{**stale.__dict__, "migration": "20260101000006_queue.sql"})
    refused = r"is not the one in 20260101000006_queue\.sql"
    with psycopg.connect(module_db) as conn, pytest.raises(ValueError, match=refused):
        check_live(conn, stale)


def test_mutant_names_are_unique() -> None:
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


def test_a_normal_run_plants_no_mutant() -> None:
    assert not os.environ.get(ENV), f"{ENV} is set: the suite would run on a mutated schema"


def test_the_script_is_reachable_from_make_mutation() -> None:
    assert "tests.mutation.sql_mutants" in (Path(ROOT) / "Makefile").read_text()
