"""Configuration: frozen pydantic-settings models loaded from conf/*.yml, overridable from the environment.

Precedence, highest first: environment variables (`CONTROLLER_` prefix, `__` between nested keys,
e.g. `CONTROLLER_LOG__LEVEL=DEBUG`), then the YAML file, then the defaults below. Secrets are never in
YAML: they come from the environment or from an ignored `.env` file (see `Secrets`).

Every error names the file (or environment variable), the key and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from controller.config_base import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    PROJECT_ROOT,
    ConfigError,
    Frozen,
    describe_validation_error,
    load_model,
    read_yaml,
    resolve,
)
from controller.data.db import DatabaseConfig, Secrets
from controller.ops.alerts import AlertConfig, MetricsConfig
from controller.ops.health import HealthConfig
from controller.ops.supervisor import SupervisorConfig
from controller.scan.regime import ProtectionParams, RegimeParams
from controller.scan.settings import LoopConfig, UniverseConfig
from controller.scan.signals import SizingParams
from ml.config import MlConfig

DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "controller.yml"


class LogConfig(Frozen):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class FlagsConfig(Frozen):
    file: Path = Field(Path("conf/flags.yml"), description="flag definitions and phase presets")
    refresh_s: float = Field(30.0, ge=1, le=3600, description="how often running processes re-read flags")


class StorageConfig(Frozen):
    warn_table_gb: float = Field(1.0, gt=0, description="`storage` warns about a table larger than this")


class ControllerConfig(BaseSettings):
    """`conf/controller.yml`."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
    )

    database: DatabaseConfig = DatabaseConfig()
    log: LogConfig = LogConfig()
    flags: FlagsConfig = FlagsConfig()
    universe: UniverseConfig = UniverseConfig()
    loop: LoopConfig = LoopConfig()
    regime: RegimeParams = RegimeParams()
    protection: ProtectionParams = ProtectionParams()
    sizing: SizingParams = SizingParams()
    health: HealthConfig = HealthConfig()
    alerts: AlertConfig = AlertConfig()
    metrics: MetricsConfig = MetricsConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    storage: StorageConfig = StorageConfig()
    ml: MlConfig = MlConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init kwargs; the environment overrides it.
        return env_settings, init_settings

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative to the project root unless absolute."""
        return resolve(path)


def load_config(path: Path = DEFAULT_CONFIG) -> ControllerConfig:
    """Load and validate the controller config; raise ConfigError naming file, key and what is allowed."""
    data = read_yaml(path)
    try:
        return ControllerConfig(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path, ControllerConfig)) from None


def load_secrets() -> Secrets:
    try:
        return Secrets()
    except ValidationError as exc:
        # Never echo a secret's value back.
        raise ConfigError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None


__all__ = ["PROJECT_ROOT", "ControllerConfig", "Secrets", "load_config", "load_model",
           "load_secrets"]
