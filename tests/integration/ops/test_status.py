"""`status` on a migrated database: heartbeats written by the `heartbeat()` SQL function, their times moved
back as superuser, then the table and the exit code."""

from __future__ import annotations

import json

import psycopg
import pytest

from controller.data import flags
from tests.support.status import backdate, beat, context, healthy_world, row, run_status


def test_all_components_progressing_exits_zero(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
    code, out = run_status(migrated_db, capsys)
    assert code == 0, out
    assert ": healthy" in out.splitlines()[0] + out.splitlines()[1]
    assert "healthy" in row(out, "controller")
    assert "healthy" in row(out, "hummingbot:hb-1")
    assert "healthy" in row(out, "store")
    # flags not synced yet: conf/flags.yml's defaults say ML and shadow are off
    assert "disabled" in row(out, "ml") and "ml.enabled is false" in row(out, "ml")
    assert "disabled" in row(out, "shadow")


def test_hummingbot_alive_but_without_progress_is_degraded(migrated_db: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
        backdate(conn, "hummingbot:hb-1", progress="20 minutes")
        # The same progress again: last_seen moves to now, last_progress_at stays 20 minutes back.
        beat(conn, "hummingbot:hb-1", {"tick": "t1", "queue_breaker": "closed", "claimed": 3})
        seen, moved = conn.execute("select now() - last_seen < interval '1 minute', "
                                   "now() - last_progress_at > interval '19 minutes' "
                                   "from heartbeats where component = 'hummingbot:hb-1'").fetchone()
        assert seen and moved
    code, out = run_status(migrated_db, capsys)
    assert code == 1
    line = row(out, "hummingbot:hb-1")
    assert "degraded" in line and "alive but no progress for 20 min" in line


def test_a_silent_controller_is_down(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
        backdate(conn, "controller", seen="30 minutes", progress="30 minutes")
    code, out = run_status(migrated_db, capsys)
    assert code == 1
    assert "down" in row(out, "controller") and "no heartbeat for 30 min" in row(out, "controller")


def test_a_controller_without_new_candles_is_degraded(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
        conn.execute("select heartbeat('controller', jsonb_build_object('last_candle', now() - interval '1 hour', "
                     "'cycles', 13))")
    code, out = run_status(migrated_db, capsys)
    assert code == 1
    assert "degraded" in row(out, "controller") and "no new candle for 60 min" in row(out, "controller")


def test_ml_switched_on_without_a_heartbeat_is_down(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    ctx = context(migrated_db)
    specs = ctx.flag_specs()
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
        flags.set_flag(conn, specs, "ml.enabled", "true", "test")
    code, out = run_status(migrated_db, capsys)
    assert code == 1
    assert "down" in row(out, "ml") and "no heartbeat ever recorded" in row(out, "ml")
    assert "disabled" in row(out, "shadow")


def test_json_output_lists_every_component(migrated_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        healthy_world(conn)
        backdate(conn, "hummingbot:hb-1", seen="10 minutes", progress="10 minutes")
    code, out = run_status(migrated_db, capsys, as_json=True)
    data = json.loads(out)
    assert code == 1 and data["state"] == "down"
    states = {c["name"]: c["state"] for c in data["components"]}
    assert states == {"controller": "healthy", "store": "healthy", "hummingbot:hb-1": "down", "ml": "disabled",
                      "shadow": "disabled"}


def test_an_unmigrated_database_says_to_migrate(fresh_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_status(fresh_db, capsys)
    assert code == 1
    assert "down" in row(out, "store") and "python -m controller migrate" in out


def test_an_unreachable_database_is_the_store_down_without_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    code, out = run_status(f"postgresql://app:pw-hunter2@127.0.0.1:{port}/trading?connect_timeout=2", capsys)
    assert code == 1
    assert "down" in row(out, "store") and "cannot read the database" in out
    assert "hunter2" not in out
