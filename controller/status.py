"""`python -m controller status`: the health table from the database's heartbeats and flags.

Exit code 0 when every component that is not disabled is healthy, 1 when one is degraded or down
(the database itself unreachable counts as the store being down).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from rich.console import Console

from bridge.redaction import redact, secret_parts
from controller import db
from controller.config import ConfigError
from controller.embedded_db import EmbeddedDbError
from controller.health import HealthConfig, HealthReport, assess, read_database, render_table

if TYPE_CHECKING:
    from controller.cli import Context


def _flag_defaults(ctx_obj: Context) -> dict[str, Any]:
    try:
        specs = ctx_obj.flag_specs()
    except ConfigError:
        return {}  # the table's values still count; a flag missing from both is treated as off
    return {name: spec.default for name, spec in specs.flags.items()}


def _secrets(ctx_obj: Context) -> list[str]:
    url = ctx_obj.secrets.database_url
    return list(secret_parts(url.get_secret_value())) if url is not None else []


def health_from_database(ctx_obj: Context) -> HealthReport:
    """Read heartbeats and flags and judge them; a database that cannot be read makes the store down."""
    config = ctx_obj.config
    health_config: HealthConfig = getattr(config, "health", None) or HealthConfig()
    controller_name = config.loop.heartbeat_component
    try:
        with db.connect(config, ctx_obj.secrets) as conn:
            snapshot = read_database(conn, _flag_defaults(ctx_obj))
    except psycopg.errors.UndefinedTable:
        problem = "the database has no heartbeats or flags table: run python -m controller migrate"
    except (psycopg.Error, ConfigError, EmbeddedDbError) as exc:
        problem = f"cannot read the database: {redact(str(exc).strip(), _secrets(ctx_obj))}"
    else:
        return assess(snapshot.heartbeats, snapshot.now, health_config, flags=snapshot.flags,
                      controller_name=controller_name)
    return assess((), datetime.now(UTC), health_config, store_error=problem, controller_name=controller_name)


def report_json(report: HealthReport) -> str:
    return json.dumps({
        "at": report.at.isoformat(), "state": report.state.value,
        "components": [{"name": c.name, "kind": c.kind.value, "state": c.state.value, "reasons": list(c.reasons),
                        "last_seen": c.last_seen.isoformat() if c.last_seen else None,
                        "last_progress_at": c.last_progress_at.isoformat() if c.last_progress_at else None}
                       for c in report.components],
    }, indent=2)


def status_command(ctx_obj: Context, *, as_json: bool = False) -> int:
    """Print the health table (or JSON) and return the exit code: 0 healthy, 1 degraded or down."""
    report = health_from_database(ctx_obj)
    if as_json:
        print(report_json(report))
    else:
        # Created per call so that output follows sys.stdout as it is now (pipes, tests).
        console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)
        console.print(render_table(report))
    return report.exit_code()
