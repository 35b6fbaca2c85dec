"""Feature flags and the phases that bring ML and shadow testing back one at a time.

Definitions, defaults and phase presets live in `conf/flags.yml`; live values live in the `flags`
table, where the dashboard may edit them too (a trigger there validates every write and records it
in `flag_changes`). Processes re-read the live values each cycle.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import psycopg
from pydantic import Field, field_validator, model_validator

from controller.config_base import Frozen

logger = logging.getLogger(__name__)

FlagValue = bool | int | float | str
PHASES = range(5)


class FlagError(Exception):
    """An unknown flag, or a value the flag does not allow; the message says which and what is allowed."""


class FlagSpec(Frozen):
    kind: Literal["bool", "int", "float", "text"]
    default: FlagValue
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    description: str = ""

    def allowed(self) -> str:
        """What this flag accepts, in words."""
        if self.kind == "bool":
            return "true or false"
        if self.kind == "text":
            return f"one of {', '.join(self.choices)}" if self.choices else "any text"
        noun = "a whole number" if self.kind == "int" else "a number"
        if self.min is not None and self.max is not None:
            return f"{noun} from {self.min:g} to {self.max:g}"
        if self.min is not None:
            return f"{noun} >= {self.min:g}"
        if self.max is not None:
            return f"{noun} <= {self.max:g}"
        return noun

    def check(self, value: object) -> FlagValue:
        """`value` as this flag's type, or FlagError saying what is allowed."""
        problem = f"expected {self.allowed()}, got {value!r}"
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise FlagError(problem)
        if self.kind == "text":
            if isinstance(value, str) and (self.choices is None or value in self.choices):
                return value
            raise FlagError(problem)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise FlagError(problem)
        if self.kind == "int":
            if value != int(value):
                raise FlagError(problem)
            value = int(value)
        else:
            value = float(value)
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise FlagError(problem)
        return value

    def parse(self, text: str) -> FlagValue:
        """A command-line string as this flag's value."""
        if self.kind == "bool":
            lowered = text.strip().lower()
            truthy, falsy = {"true", "on", "yes", "1"}, {"false", "off", "no", "0"}
            return self.check(True if lowered in truthy else False if lowered in falsy else text)
        if self.kind in ("int", "float"):
            try:
                number: object = int(text) if self.kind == "int" else float(text)
            except ValueError:
                number = text
            return self.check(number)
        return self.check(text)

    @model_validator(mode="after")
    def _default_is_allowed(self) -> FlagSpec:
        try:
            self.check(self.default)
        except FlagError as exc:
            raise ValueError(f"default: {exc}") from None
        return self


class FlagsFile(Frozen):
    """`conf/flags.yml`: the flags, and the values each phase sets."""

    flags: dict[str, FlagSpec]
    phases: dict[int, dict[str, FlagValue]] = Field(description="phase number 0-4 -> flag values")

    @field_validator("flags")
    @classmethod
    def _names(cls, flags: dict[str, FlagSpec]) -> dict[str, FlagSpec]:
        if "phase" not in flags:
            raise ValueError("a flag named 'phase' (int, 0-4) is required: `flags phase N` records N in it")
        return flags

    @model_validator(mode="after")
    def _phases_are_valid(self) -> FlagsFile:
        if sorted(self.phases) != list(PHASES):
            raise ValueError(f"phases must be exactly {list(PHASES)}, got {sorted(self.phases)}")
        for number, values in self.phases.items():
            for name, value in values.items():
                if name not in self.flags:
                    raise ValueError(f"phases.{number}.{name}: unknown flag; known: {', '.join(self.flags)}")
                try:
                    self.flags[name].check(value)
                except FlagError as exc:
                    raise ValueError(f"phases.{number}.{name}: {exc}") from None
        return self

    def spec(self, name: str) -> FlagSpec:
        try:
            return self.flags[name]
        except KeyError:
            raise FlagError(f"unknown flag {name!r}; known flags: {', '.join(sorted(self.flags))}") from None

    def phase_values(self, number: int) -> dict[str, FlagValue]:
        if number not in self.phases:
            raise FlagError(f"unknown phase {number}; phases are {PHASES.start}-{PHASES.stop - 1}")
        return {**self.phases[number], "phase": number}


@dataclass(frozen=True)
class FlagRow:
    name: str
    value: FlagValue
    default: FlagValue
    kind: str
    description: str
    updated_at: datetime | None  # None: no row yet, the value is conf's default
    updated_by: str


@dataclass(frozen=True)
class FlagChange:
    name: str
    old: FlagValue | None
    new: FlagValue


def _shown(value: FlagValue | None) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def sync(conn: psycopg.Connection, specs: FlagsFile, actor: str) -> None:
    """Write the definitions from conf into the table; a new flag starts at its default, a live value stays."""
    with conn.transaction():
        for name, spec in specs.flags.items():
            conn.execute(
                """insert into flags (name, kind, value, default_value, min_value, max_value, choices,
                                      description, updated_by)
                   values (%(name)s, %(kind)s, %(default)s, %(default)s, %(min)s, %(max)s, %(choices)s,
                           %(description)s, %(actor)s)
                   on conflict (name) do update set
                       kind = excluded.kind, default_value = excluded.default_value,
                       min_value = excluded.min_value, max_value = excluded.max_value,
                       choices = excluded.choices, description = excluded.description""",
                {
                    "name": name, "kind": spec.kind, "default": json.dumps(spec.default),
                    "min": spec.min, "max": spec.max, "actor": actor,
                    "choices": json.dumps(list(spec.choices)) if spec.choices is not None else None,
                    "description": spec.description,
                },
            )


def show(conn: psycopg.Connection, specs: FlagsFile | None = None) -> list[FlagRow]:
    """Every flag with its live value, default and who changed it last. Reads only: with `specs`, a flag the
    table has no row for shows conf's default (what processes act on, see `live_values`), and every default is
    conf's, as the next `sync` would write it."""
    rows = {row[0]: FlagRow(*row) for row in conn.execute(
        "select name, value, default_value, kind, description, updated_at, updated_by from flags order by name")}
    for name, spec in (specs.flags.items() if specs is not None else ()):
        row = rows.get(name)
        rows[name] = (FlagRow(name, spec.default, spec.default, spec.kind, spec.description, None, "conf")
                      if row is None else FlagRow(name, row.value, spec.default, spec.kind, spec.description,
                                                  row.updated_at, row.updated_by))
    return [rows[name] for name in sorted(rows)]


def live_values(conn: psycopg.Connection, specs: FlagsFile) -> dict[str, FlagValue]:
    """The values processes act on: the table's, falling back to conf's default for a flag not yet synced."""
    values: dict[str, FlagValue] = {name: spec.default for name, spec in specs.flags.items()}
    for name, value in conn.execute("select name, value from flags"):
        if name in values:
            values[name] = value
    return values


def set_many(conn: psycopg.Connection, specs: FlagsFile, values: dict[str, FlagValue], actor: str) -> list[FlagChange]:
    """Set several flags in one transaction; return (and log) what changed, with old and new values."""
    checked = {}
    for name, value in values.items():
        try:
            checked[name] = specs.spec(name).check(value)
        except FlagError as exc:
            raise FlagError(f"flag {name}: {exc}") from None
    sync(conn, specs, actor)
    changes: list[FlagChange] = []
    with conn.transaction():
        for name, value in checked.items():
            old = conn.execute("select value from flags where name = %s for update", (name,)).fetchone()[0]
            if old == value and type(old) is type(value):
                continue
            conn.execute("update flags set value = %s, updated_by = %s where name = %s",
                         (json.dumps(value), actor, name))
            changes.append(FlagChange(name, old, value))
    for change in changes:
        logger.info("flag changed", extra={"flag": change.name, "old": _shown(change.old),
                                           "new": _shown(change.new), "by": actor})
    return changes


def set_flag(conn: psycopg.Connection, specs: FlagsFile, name: str, text: str, actor: str) -> list[FlagChange]:
    """Set one flag from its command-line text."""
    spec = specs.spec(name)
    try:
        value = spec.parse(text)
    except FlagError as exc:
        raise FlagError(f"flag {name}: {exc}") from None
    return set_many(conn, specs, {name: value}, actor)


def apply_phase(conn: psycopg.Connection, specs: FlagsFile, number: int, actor: str) -> list[FlagChange]:
    """Set every flag that phase `number` defines, and `phase` itself."""
    return set_many(conn, specs, specs.phase_values(number), actor)
