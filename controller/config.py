"""Configuration: frozen pydantic-settings models loaded from conf/*.yml, overridable from the environment.

Precedence, highest first: environment variables (`CONTROLLER_` prefix, `__` between nested keys,
e.g. `CONTROLLER_LOG__LEVEL=DEBUG`), then the YAML file, then the defaults below. Secrets are never in
YAML: they come from the environment or from an ignored `.env` file (see `Secrets`).

Every error names the file (or environment variable), the key and what is allowed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from controller.alerts import AlertConfig, MetricsConfig
from controller.health import HealthConfig
from controller.model import Frozen
from controller.regime import ProtectionParams, RegimeParams
from controller.signals import SizingParams
from controller.supervisor import SupervisorConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "conf" / "controller.yml"
ENV_PREFIX = "CONTROLLER_"
ENV_NESTED_DELIMITER = "__"


class ConfigError(Exception):
    """A configuration file or override that cannot be used; the message says where and why."""


class DatabaseConfig(Frozen):
    embedded: bool = Field(
        True, description="start the embedded Postgres under data_dir when DATABASE_URL is not set"
    )
    name: str = Field("trading", pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="database name (embedded)")
    data_dir: Path = Field(Path(".data/postgres"), description="embedded server's files, relative to the project")
    connect_timeout_s: int = Field(10, ge=1, le=300, description="seconds to wait for a connection")


class LogConfig(Frozen):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class FlagsConfig(Frozen):
    file: Path = Field(Path("conf/flags.yml"), description="flag definitions and phase presets")
    refresh_s: float = Field(30.0, ge=1, le=3600, description="how often running processes re-read flags")


class UniverseConfig(Frozen):
    exchange: str = Field("binance", description="ccxt id of the exchange whose public candles are scanned")
    backup_exchange: str | None = Field("kraken", description="ccxt id used while the primary's breaker is open")
    symbols: tuple[str, ...] = Field(("BTC-USDT", "ETH-USDT"), min_length=1, description="pairs as BASE-QUOTE")

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in symbols if not re.fullmatch(r"[A-Z0-9]+-[A-Z0-9]+", s)]
        if bad:
            raise ValueError(f"pairs must be BASE-QUOTE in capitals, e.g. BTC-USDT: {', '.join(bad)}")
        return symbols


class LoopConfig(Frozen):
    strategy_timeout_s: float = Field(5.0, gt=0, le=300, description="a strategy slower than this is skipped")
    lookback_candles: int = Field(300, ge=60, le=5000, description="candles per symbol fed to the indicators")
    strategies_file: Path = Field(Path("conf/strategies.yml"), description="strategy parameters and tiers")
    tiers_file: Path = Field(Path("conf/tiers.yml"), description="symbol -> tier map")
    heartbeat_component: str = "controller"


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
        return path if path.is_absolute() else PROJECT_ROOT / path


class Secrets(BaseSettings):
    """Credentials: only from the environment or a git-ignored `.env` file in the working directory."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_file=".env", case_sensitive=True)

    database_url: SecretStr | None = Field(None, validation_alias="DATABASE_URL")
    supabase_url: str | None = Field(None, validation_alias="SUPABASE_URL")
    supabase_service_role_key: SecretStr | None = Field(None, validation_alias="SUPABASE_SERVICE_ROLE_KEY")


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, or raise ConfigError naming the file (and the line, for syntax errors)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _allowed_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str] | None:
    """The keys a model accepts at `path` (a location inside it), when that can be told."""
    current: Any = model
    for part in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _field_description(model: type[BaseModel], path: tuple[str | int, ...]) -> str | None:
    current: Any = model
    field = None
    for part in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    return field.description if field else None


def _env_name(loc: tuple[str | int, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p) for p in loc).upper()


def describe_validation_error(exc: ValidationError, source: Path | str, model: type[BaseModel]) -> str:
    """One line per problem: `<file or env var>: <key>: <what is wrong>; <what is allowed>`."""
    lines = []
    environ = {k.upper() for k in os.environ}
    for error in exc.errors():
        loc = tuple(error["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        where = str(source)
        if loc and _env_name(loc) in environ:
            where = f"environment variable {_env_name(loc)}"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{where}: {key}: unknown key{hint}")
            continue
        got = error.get("input")
        message = error["msg"]
        description = _field_description(model, loc)
        detail = f" ({description})" if description else ""
        shown = "" if isinstance(got, dict) else f", got {got!r}"
        lines.append(f"{where}: {key}: {message}{shown}{detail}")
    return "\n".join(lines)


def load_config(path: Path = DEFAULT_CONFIG) -> ControllerConfig:
    """Load and validate the controller config; raise ConfigError naming file, key and what is allowed."""
    data = read_yaml(path)
    try:
        return ControllerConfig(**data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path, ControllerConfig)) from None


def load_model[M: BaseModel](model: type[M], path: Path) -> M:
    """Load a YAML file into a frozen model, with the same error messages as `load_config`."""
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path, model)) from None


def load_secrets() -> Secrets:
    try:
        return Secrets()
    except ValidationError as exc:
        # Never echo a secret's value back.
        raise ConfigError("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())) from None
