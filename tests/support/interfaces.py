"""What each public interface looks like, as plain JSON: the fingerprint tests/contract/test_interfaces.py
compares against the committed tests/contract/interfaces.json.

Each reader returns only what a user of the interface depends on (names, types, arguments, returns,
defaults), in a stable order, so a change there and nowhere else changes the fingerprint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import typer

ROOT = Path(__file__).resolve().parents[2]
FINGERPRINT_FILE = ROOT / "tests" / "contract" / "interfaces.json"


def signal_schema() -> dict[str, Any]:
    """The JSON schema of every model bridge/schemas.py exchanges between the two sides."""
    from bridge.schemas import NewSignal, OrderEvent, Signal
    return {m.__name__: m.model_json_schema() for m in (NewSignal, Signal, OrderEvent)}


# The functions the executor role may execute, from the database's own catalogue (grants included).
QUEUE_FUNCTIONS_SQL = """
select p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid)
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = 'public'
   and exists (select 1 from aclexplode(p.proacl) a
                where a.grantee = 'executor'::regrole and a.privilege_type = 'EXECUTE')
 order by 1, 2
"""


def queue_functions(database_url: str) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(QUEUE_FUNCTIONS_SQL).fetchall()
    return {f"{name}({args})": {"arguments": args, "returns": result} for name, args, result in rows}


def executor_config() -> dict[str, Any]:
    """The script config's own fields (those Hummingbot's base class adds are Hummingbot's interface)."""
    from hummingbot.strategy.strategy_v2_base import StrategyV2ConfigBase

    from executor.config import SignalExecutorConfig
    inherited = set(StrategyV2ConfigBase.model_fields)
    fields = {}
    for name, field in SignalExecutorConfig.model_fields.items():
        if name in inherited:
            continue
        default = field.get_default(call_default_factory=True)
        kind = field.annotation
        fields[name] = {"type": kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", ""),
                        "required": field.is_required(), "default": _portable(default)}
    return fields


def cli() -> dict[str, Any]:
    """Every command's path and its options (names, type, required, default) and arguments."""
    from controller.cli.main import app
    out: dict[str, Any] = {}

    def walk(command: Any, path: str) -> None:
        # typer carries its own copy of click: read the parameters by attribute, not by class
        params = {}
        for p in command.params:
            params[p.name or ""] = {"kind": p.param_type_name, "opts": sorted(p.opts + p.secondary_opts),
                                    "type": p.bare_type(), "required": p.required, "multiple": p.multiple,
                                    "default": _portable(p.default)}
        out[path or "(root)"] = params
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, f"{path} {name}".strip())

    walk(typer.main.get_command(app), "")
    return out


def _portable(value: Any) -> Any:
    """A default as JSON; a path inside the checkout relative to it, so the file is the same on every machine."""
    if isinstance(value, Path) and value.is_absolute() and value.is_relative_to(ROOT):
        return str(value.relative_to(ROOT))
    return json.loads(json.dumps(value, default=str))


def current(database_url: str) -> dict[str, Any]:
    """Every interface's fingerprint, keyed by name, with the version bridge/version.py gives it."""
    from bridge.version import INTERFACES
    shapes = {"signal_schema": signal_schema(), "queue_functions": queue_functions(database_url),
              "executor_config": executor_config(), "cli": cli()}
    return {name: {"version": INTERFACES[name], "shape": shapes[name]} for name in sorted(shapes)}


def stale(committed: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One message per interface whose shape differs from the committed one, saying what to do."""
    import difflib
    problems = []
    for name in sorted(set(committed) | set(now)):
        old, new = committed.get(name), now.get(name)
        if old == new:
            continue
        if old is None or new is None:
            problems.append(f"{name}: {'new' if old is None else 'gone'} interface; record it in "
                            f"bridge/version.py, docs/interfaces.md and CHANGELOG.md")
            continue
        diff = "\n".join(difflib.unified_diff(
            json.dumps(old["shape"], indent=1, sort_keys=True).splitlines(),
            json.dumps(new["shape"], indent=1, sort_keys=True).splitlines(),
            f"{name} {old['version']} (committed)", f"{name} {new['version']} (now)", lineterm="", n=1))
        if old["version"] == new["version"]:
            problems.append(f"{name} changed but its version is still {new['version']}: bump INTERFACES[{name!r}] "
                            f"in bridge/version.py, add a CHANGELOG.md entry, then refresh "
                            f"tests/contract/interfaces.json (UPDATE_INTERFACES=1)\n{diff}")
        else:
            problems.append(f"{name} is now {new['version']} (was {old['version']}): refresh "
                            f"tests/contract/interfaces.json (UPDATE_INTERFACES=1)\n{diff}")
    return problems
