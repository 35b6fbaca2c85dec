"""The SQL mutants of `make mutation` still apply to the migrations, and none is planted in a normal run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.sql_mutants import ENV, MIGRATIONS, MUTANTS, ROOT, SqlMutant, mutated_sql


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_each_mutant_changes_exactly_its_function_and_names_existing_tests(mutant: SqlMutant) -> None:
    text = mutated_sql(mutant)
    assert text.startswith(f"create or replace function {mutant.function}(")
    assert mutant.mutated in text and mutant.original not in text
    assert mutant.original in (MIGRATIONS / mutant.migration).read_text()
    for test in mutant.tests:
        assert (ROOT / test.split("::")[0]).is_file(), test


def test_mutant_names_are_unique() -> None:
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)


def test_a_normal_run_plants_no_mutant() -> None:
    assert not os.environ.get(ENV), f"{ENV} is set: the suite would run on a mutated schema"


def test_the_script_is_reachable_from_make_mutation() -> None:
    assert "tests.sql_mutants" in (Path(ROOT) / "Makefile").read_text()
