"""The command line as a user runs it: `python -m controller …` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.config import PROJECT_ROOT


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env.pop("DATABASE_URL", None)
    env.update(extra, COLUMNS="200")
    return env


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="TEST_DATABASE_URL replaces the launcher")
def test_embedded_database_lifecycle_migrate_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "controller.yml"
    config.write_text(f"database:\n  data_dir: {tmp_path / 'pg'}\n  name: clitest\n")
    env = clean_env()
    try:
        started = run("--config", str(config), "db", "start", env=env)
        assert started.returncode == 0, started.stderr
        url = run("--config", str(config), "db", "url", env=env).stdout.strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:") and url.endswith("/clitest")

        migrated = run("--config", str(config), "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "20260101000001_flags.sql" in migrated.stdout
        assert "nothing to apply" in run("--config", str(config), "migrate", env=env).stdout

        shown = run("--config", str(config), "flags", "show", env=env)
        assert shown.returncode == 0, shown.stderr
        assert "ml.enabled" in shown.stdout and "trading.enabled" in shown.stdout
    finally:
        stopped = run("--config", str(config), "db", "stop", env=env)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run("--config", str(config), "db", "url", env=env).returncode == 1


def test_flags_set_and_phase_through_database_url(migrated_db: str) -> None:
    env = clean_env(DATABASE_URL=migrated_db)
    result = run("flags", "set", "ml.enabled", "true", env=env)
    assert result.returncode == 0, result.stderr
    assert "ml.enabled: false -> true" in result.stdout
    assert "flag changed flag=ml.enabled old=false new=true" in result.stderr  # the log line

    result = run("flags", "phase", "4", env=env)
    assert result.returncode == 0, result.stderr
    assert "shadow.enabled: false -> true" in result.stdout
    assert "phase: 1 -> 4" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("flags", "set", "ml.enabeld", "true"), "unknown flag 'ml.enabeld'"),
        (("flags", "set", "ml.min_confidence", "7"), "flag ml.min_confidence: expected a number from 0 to 1"),
        (("flags", "phase", "9"), "unknown phase 9"),
    ],
)
def test_bad_flag_commands_exit_non_zero_with_a_reason(migrated_db: str, args: tuple[str, ...], message: str) -> None:
    result = run(*args, env=clean_env(DATABASE_URL=migrated_db))
    assert result.returncode != 0
    assert message in result.stderr


def test_misspelt_config_key_exits_non_zero_naming_key_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("log:\n  levle: INFO\n")
    result = run("--config", str(bad), "flags", "show", env=clean_env())
    assert result.returncode != 0
    assert f"{bad}: log.levle: unknown key; allowed keys here: level" in result.stderr


def test_a_database_password_is_masked_in_connection_errors(tmp_path: Path) -> None:
    env = clean_env(DATABASE_URL="postgresql://user:hunter2secret@127.0.0.1:1/nowhere")
    result = run("flags", "show", env=env)
    assert result.returncode != 0
    assert "cannot connect" in result.stderr
    assert "hunter2secret" not in result.stderr + result.stdout
