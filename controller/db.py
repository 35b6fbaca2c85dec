"""Which database the controller uses: DATABASE_URL when set, else the embedded one."""

from __future__ import annotations

import psycopg

from controller.config import ConfigError, ControllerConfig, Secrets
from controller.embedded_db import EmbeddedPostgres


def embedded(config: ControllerConfig) -> EmbeddedPostgres:
    return EmbeddedPostgres(config.resolve(config.database.data_dir), config.database.name)


def database_url(config: ControllerConfig, secrets: Secrets) -> str:
    """DATABASE_URL, or the embedded server's URL (started if it is not running)."""
    if secrets.database_url is not None:
        return secrets.database_url.get_secret_value()
    if not config.database.embedded:
        raise ConfigError("DATABASE_URL is not set and database.embedded is false: nowhere to store data; "
                          "set DATABASE_URL or database.embedded: true")
    return embedded(config).start().url


def connect(config: ControllerConfig, secrets: Secrets) -> psycopg.Connection:
    return psycopg.connect(database_url(config, secrets), connect_timeout=config.database.connect_timeout_s)
