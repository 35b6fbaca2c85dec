"""Live flag values in the database: set, phases, the change log, and validation of dashboard edits."""

from __future__ import annotations

import psycopg
import pytest

from controller.config import PROJECT_ROOT, load_model
from controller.data import flags

SPECS = load_model(flags.FlagsFile, PROJECT_ROOT / "conf" / "flags.yml")


@pytest.fixture
def conn(migrated_db: str):
    with psycopg.connect(migrated_db) as connection:
        flags.sync(connection, SPECS, "test")
        yield connection


def changes_logged(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "select name, old_value, new_value, changed_by from flag_changes where old_value is not null order by id"
    ).fetchall()


def test_sync_starts_every_flag_at_its_default(conn: psycopg.Connection) -> None:
    assert flags.live_values(conn, SPECS) == {name: spec.default for name, spec in SPECS.flags.items()}


def test_set_records_old_and_new_value(conn: psycopg.Connection) -> None:
    changes = flags.set_flag(conn, SPECS, "ml.min_confidence", "0.7", "cli:alice")
    assert changes == [flags.FlagChange("ml.min_confidence", 0.0, 0.7)]
    assert flags.live_values(conn, SPECS)["ml.min_confidence"] == 0.7
    assert changes_logged(conn) == [("ml.min_confidence", 0.0, 0.7, "cli:alice")]


def test_setting_the_same_value_changes_and_logs_nothing(conn: psycopg.Connection) -> None:
    assert flags.set_flag(conn, SPECS, "ml.enabled", "false", "cli:alice") == []
    assert changes_logged(conn) == []


def test_phase_sets_its_flags_and_the_phase(conn: psycopg.Connection) -> None:
    flags.apply_phase(conn, SPECS, 3, "cli:bob")
    live = flags.live_values(conn, SPECS)
    assert live["phase"] == 3 and live["ml.enabled"] is True and live["shadow.enabled"] is False

    changes = flags.apply_phase(conn, SPECS, 0, "cli:bob")

    live = flags.live_values(conn, SPECS)
    assert live["phase"] == 0 and live["trading.enabled"] is False and live["ml.enabled"] is False
    assert {c.name for c in changes} == {"phase", "trading.enabled", "signals.enabled", "ml.enabled"}


@pytest.mark.parametrize(("name", "text"), [("ml.min_confidence", "1.5"), ("profile", "yolo"), ("nope", "1")])
def test_invalid_or_unknown_flags_are_refused_and_nothing_changes(conn: psycopg.Connection, name: str,
                                                                   text: str) -> None:
    before = flags.live_values(conn, SPECS)
    with pytest.raises(flags.FlagError):
        flags.set_flag(conn, SPECS, name, text, "cli:alice")
    assert flags.live_values(conn, SPECS) == before
    assert changes_logged(conn) == []


def test_a_dashboard_edit_is_validated_by_the_database(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation, match=r"flag ml.min_confidence: value must be <= 1"):
        conn.execute("update flags set value = '3' where name = 'ml.min_confidence'")
    conn.rollback()
    with pytest.raises(psycopg.errors.CheckViolation, match=r"flag ml.enabled: value expected true or false"):
        conn.execute("""update flags set value = '"yes"' where name = 'ml.enabled'""")
    conn.rollback()


def test_a_dashboard_edit_is_logged_and_seen_by_processes(conn: psycopg.Connection) -> None:
    conn.execute("update flags set value = 'true', updated_by = 'dashboard' where name = 'shadow.enabled'")
    conn.commit()
    assert flags.live_values(conn, SPECS)["shadow.enabled"] is True
    assert changes_logged(conn) == [("shadow.enabled", False, True, "dashboard")]


def test_a_live_value_survives_a_resync(conn: psycopg.Connection) -> None:
    flags.set_flag(conn, SPECS, "ml.enabled", "true", "cli:alice")
    flags.sync(conn, SPECS, "controller")
    assert flags.live_values(conn, SPECS)["ml.enabled"] is True
