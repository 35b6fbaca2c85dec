"""The controller's storage port: one small interface, two adapters selected by configuration.

`PostgresStore` (psycopg 3) serves any Postgres: Supabase's connection string, a self-hosted server and
the embedded default. `SupabaseStore` (supabase-py over PostgREST) serves users who have only the
project URL and a service-role key. Both pass the same contract tests; SQL functions hold the queue
semantics, so neither adapter re-implements them.
"""

from __future__ import annotations

from controller.config_base import ConfigError
from controller.data.db import DatabaseConfig, Secrets, check_reachable, database_url
from controller.data.storage.port import (
    CANDLE_COLUMNS,
    OPEN_STATUSES,
    SCAN_COLUMNS,
    AlreadyEmitted,
    SignalRejected,
    Store,
)

__all__ = ["CANDLE_COLUMNS", "OPEN_STATUSES", "SCAN_COLUMNS", "AlreadyEmitted", "SignalRejected", "Store", "open_store"]


def open_store(database: DatabaseConfig, secrets: Secrets) -> Store:
    """The adapter the configuration asks for: DATABASE_URL (or the embedded database) first, else Supabase."""
    if secrets.database_url is not None or (database.embedded and not secrets.supabase_url):
        from controller.data.storage.postgres import PostgresStore

        url = database_url(database, secrets)
        check_reachable(url, database.connect_timeout_s)
        return PostgresStore(url)
    if secrets.supabase_url and secrets.supabase_service_role_key:
        from controller.data.storage.supabase import SupabaseStore

        return SupabaseStore.connect(secrets.supabase_url, secrets.supabase_service_role_key.get_secret_value())
    raise ConfigError("no store configured: set DATABASE_URL, or SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, "
                      "or database.embedded: true")
