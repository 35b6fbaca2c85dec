"""Heartbeats written through the `heartbeat()` SQL function and moved back in time as superuser, and the
`status` command run on them: what the status tests share."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from controller.cli.base import Context
from controller.cli.ops import status_command
from controller.config import ControllerConfig, Secrets


def context(url: str) -> Context:
    return Context(ControllerConfig(), Secrets(DATABASE_URL=url))


def beat(conn: psycopg.Connection, component: str, progress: dict) -> None:
    conn.execute("select heartbeat(%s, %s)", (component, Jsonb(progress)))


def backdate(conn: psycopg.Connection, component: str, *, seen: str | None = None,
             progress: str | None = None) -> None:
    """Move a heartbeat's times into the past (`seen` / `progress` are SQL intervals, e.g. '20 minutes')."""
    if seen:
        conn.execute("update heartbeats set last_seen = now() - %s::interval where component = %s", (seen, component))
    if progress:
        conn.execute("update heartbeats set last_progress_at = now() - %s::interval where component = %s",
                     (progress, component))


def healthy_world(conn: psycopg.Connection) -> None:
    conn.execute("select heartbeat('controller', jsonb_build_object('last_candle', now(), 'cycles', 12))")
    beat(conn, "hummingbot:hb-1", {"tick": "t1", "queue_breaker": "closed", "claimed": 3})


def run_status(url: str, capsys: pytest.CaptureFixture[str], **kwargs: bool) -> tuple[int, str]:
    code = status_command(context(url), **kwargs)
    return code, capsys.readouterr().out


def row(output: str, component: str) -> str:
    return next(line for line in output.splitlines() if f" {component} " in line)
