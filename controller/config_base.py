"""The base layer of the controller: frozen config models, how a YAML file becomes one, and its errors.

Every error names the file (or environment variable), the key and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CONTROLLER_"
ENV_NESTED_DELIMITER = "__"


class Frozen(BaseModel):
    """Immutable, and an unknown key is an error, not a silent no-op."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def resolve(path: Path) -> Path:
    """A path from the config, relative to the project root unless absolute."""
    return path if path.is_absolute() else PROJECT_ROOT / path


class ConfigError(Exception):
    """A configuration file or override that cannot be used; the message says where and why."""


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


def load_model[M: BaseModel](model: type[M], path: Path) -> M:
    """Load a YAML file into a frozen model, with the same error messages as `load_config`."""
    data = read_yaml(path)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, path, model)) from None
