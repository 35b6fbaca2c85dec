"""The composition root picks the store adapter from the configuration."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from controller.config import DatabaseConfig, Secrets
from controller.config_base import ConfigError
from controller.data.storage import open_store
from controller.data.storage.postgres import PostgresStore
from controller.data.storage.supabase import SupabaseStore
from tests.support.postgrest_standin import PostgrestStandin, make_jwt

SECRET = "open-store-secret-at-least-32-bytes-long"


def test_database_url_selects_the_postgres_store(migrated_db: str) -> None:
    store = open_store(DatabaseConfig(), Secrets(DATABASE_URL=SecretStr(migrated_db)))
    try:
        assert isinstance(store, PostgresStore)
        store.heartbeat("controller", {"ok": True})
    finally:
        store.close()


def test_supabase_url_and_key_select_the_supabase_store(migrated_db: str) -> None:
    with PostgrestStandin(migrated_db, SECRET) as standin:
        secrets = Secrets(SUPABASE_URL=standin.base_url,
                          SUPABASE_SERVICE_ROLE_KEY=SecretStr(make_jwt(SECRET, "service_role")))
        store = open_store(DatabaseConfig(embedded=False), secrets)
        try:
            assert isinstance(store, SupabaseStore)
            store.heartbeat("controller", {"ok": True})
        finally:
            store.close()


def test_nothing_configured_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in ("DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env either
    with pytest.raises(ConfigError, match="no store configured"):
        open_store(DatabaseConfig(embedded=False), Secrets())
