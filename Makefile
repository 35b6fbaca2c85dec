# The commands a user types. `make demo` and `make test` run the setup first when it is missing or
# stale (the stamp is older than a requirements file or the setup script), so on a fresh clone those
# two are all you need.

VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done

.PHONY: setup test test-repeat demo bench lint lock clean-db mutation

setup: $(STAMP)

$(STAMP): scripts/setup.sh tools/supabase-cli/package-lock.json requirements/hummingbot-runtime.in requirements/project.in requirements/pgserver.in requirements/constraints.txt
	bash scripts/setup.sh
	touch $@

# Two workers (pytest-xdist), each with its own embedded Postgres; a test file stays on one worker, and the
# files that read the shared demo run (fixture demo_run) share one (tests/conftest.py). TEST_ARGS= runs serially.
TEST_ARGS ?= -n 2 --dist loadfile
test: $(STAMP)
	$(PY) -m pytest $(TEST_ARGS)

# The suite N times, each on a fresh clone of HEAD: one line per run, a summary naming any test that failed in
# some runs only (flaky), a last JSON line. `make test-repeat N=10` is the check that the suite is stable.
N ?= 10
test-repeat: $(STAMP)
	bash scripts/repeat_tests.sh $(N) $(TEST_ARGS)

# Seed 004's phases 0-4 offline: retention, then the controller on recorded candles and the Hummingbot
# executor on its real Clock and paper exchange, both on the embedded Postgres; ends with every phase's
# checklist and the path of demo-report.html. DEMO_ARGS passes options, e.g. DEMO_ARGS="--quick".
demo: $(STAMP)
	$(PY) -m controller db start
	$(PY) -m controller migrate
	$(PY) -m offline.demo $(DEMO_ARGS)

# Mutation testing of the money paths (exit rule, sizing and caps, regime guard and cooldowns, config models,
# the executor's outbox, slots and fee/exit arithmetic,
# retention reporting) with mutmut, then the hand-written SQL mutants. Slow (tens of minutes): not part of
# `make test`. Prints a table and a last JSON line each; fails when an SQL mutant survives.
mutation: $(STAMP)
	rm -rf mutants
	$(PY) -m mutmut run --max-children 2 > /dev/null || true
	$(PY) scripts/mutation_report.py
	$(PY) -m tests.mutation.sql_mutants

bench: $(STAMP)
	@set -e; for script in bench/[!_]*.py; do echo "== $$script"; $(PY) $$script; done

lint: $(STAMP)
	$(PY) -m ruff check .

# Re-pin requirements/constraints.txt from what .venv holds now (after a deliberate upgrade).
lock: $(STAMP)
	{ sed -n '1,2p' requirements/constraints.txt; $(PY) -m pip freeze --all --exclude-editable | grep -vE '^(hummingbot|pip)=='; } > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

# Stop the embedded database and delete its data.
clean-db: $(STAMP)
	$(PY) -m controller db stop
	rm -rf .data/postgres
