"""Which database the controller uses: DATABASE_URL when set, else the embedded one."""

from __future__ import annotations

from pathlib import Path

import psycopg
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.redaction import redact
from controller.config_base import ConfigError, Frozen, resolve
from controller.data.embedded_db import EmbeddedPostgres


class DatabaseConfig(Frozen):
    embedded: bool = Field(
        True, description="start the embedded Postgres under data_dir when DATABASE_URL is not set"
    )
    name: str = Field("trading", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="database name (embedded)")
    data_dir: Path = Field(Path(".data/postgres"), description="embedded server's files, relative to the project")
    connect_timeout_s: int = Field(5, ge=1, le=300, description="seconds to wait for a connection")


class Secrets(BaseSettings):
    """Credentials: only from the environment or a git-ignored `.env` file in the working directory."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_file=".env", case_sensitive=True)

    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    supabase_url: str | None = Field(None, validation_alias="SUPABASE_URL")
    supabase_service_role_key: SecretStr | None = Field(None, validation_alias="SUPABASE_SERVICE_ROLE_KEY")


def embedded(database: DatabaseConfig) -> EmbeddedPostgres:
    return EmbeddedPostgres(resolve(database.data_dir), database.name)


def database_url(database: DatabaseConfig, secrets: Secrets) -> str:
    """DATABASE_URL, or the embedded server's URL (started if it is not running)."""
    if secrets.database_url is not None:
        url = secrets.database_url.get_secret_value()
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:  # its message quotes the string, which may hold the password
            raise ConfigError("DATABASE_URL is not a Postgres connection string: expected "
                              "postgresql://user:password@host:5432/dbname") from None
        return url
    if not database.embedded:
        raise ConfigError("DATABASE_URL is not set and database.embedded is false: nowhere to store data; "
                          "set DATABASE_URL or database.embedded: true")
    return embedded(database).start().url


def connect(database: DatabaseConfig, secrets: Secrets) -> psycopg.Connection:
    # unprepared statements, so a transaction-mode pooler between carries the connection (docs/supabase.md)
    return psycopg.connect(database_url(database, secrets), connect_timeout=database.connect_timeout_s,
                           prepare_threshold=None)


def check_reachable(url: str, timeout_s: int) -> None:
    """Connect once, or raise ConfigError saying why (before a pool retries in the background for its whole
    timeout, logging each attempt)."""
    try:
        psycopg.connect(url, connect_timeout=timeout_s).close()
    except psycopg.Error as exc:
        raise ConfigError(f"cannot connect to the database: {one_line(exc)}") from None


def one_line(exc: BaseException) -> str:
    """libpq's multi-line message on one line, any password masked."""
    return redact(" ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__)
