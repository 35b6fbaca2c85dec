#!/bin/bash
# Runs once, when the data volume is first initialised (docker-entrypoint-initdb.d).
# PostgREST logs in as `authenticator`; it needs a password here, which plain Postgres has no
# default for. The migrations' compatibility bootstrap sees the role exists and only grants it
# anon, authenticated and service_role (sql/compat/0000_supabase_roles.sql).
set -euo pipefail
: "${AUTHENTICATOR_PASSWORD:?AUTHENTICATOR_PASSWORD must be set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v password="$AUTHENTICATOR_PASSWORD" <<'SQL'
create role authenticator login noinherit password :'password';
SQL
