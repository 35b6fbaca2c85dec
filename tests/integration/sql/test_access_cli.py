"""`python -m controller access …` and `token executor` as a user runs them: a subprocess on a real database."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jwt
import psycopg
import pytest

from controller.cli.access import mint_executor_token
from controller.config import PROJECT_ROOT

SECRET = "cli-test-secret-that-is-at-least-32-bytes-long"
USER = "0b7c3a52-0000-4000-8000-0000000000aa"


def run(*args: str, cwd: Path = PROJECT_ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith("CONTROLLER_") and k not in {"DATABASE_URL", "SUPABASE_JWT_SECRET", "PGRST_JWT_SECRET"}}
    config = str(PROJECT_ROOT / "conf" / "controller.yml")
    return subprocess.run([sys.executable, "-m", "controller", "--config", config, *args], cwd=cwd,
                          env={**base, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200", **env},
                          capture_output=True, text=True, timeout=120, check=False)


def members(url: str) -> list[tuple[str, str | None, str]]:
    with psycopg.connect(url) as conn:
        return [(str(u), e, b) for u, e, b in conn.execute(
            "select user_id, email, added_by from dashboard_members order by added_at")]


def test_add_list_and_remove_a_member_by_uuid(migrated_db: str) -> None:
    added = run("access", "add", USER, DATABASE_URL=migrated_db)
    again = run("access", "add", USER, DATABASE_URL=migrated_db)
    listed = run("access", "list", DATABASE_URL=migrated_db)
    recorded = members(migrated_db)
    removed = run("access", "remove", USER, DATABASE_URL=migrated_db)
    gone = run("access", "remove", USER, DATABASE_URL=migrated_db)

    assert added.returncode == 0, added.stderr
    assert "already a member" in again.stdout
    assert USER in listed.stdout
    assert len(recorded) == 1 and recorded[0][0] == USER and recorded[0][2].startswith("cli:")
    assert removed.returncode == 0 and members(migrated_db) == []
    assert gone.returncode == 1 and "is not a dashboard member" in gone.stderr


def test_an_email_without_supabase_auth_users_is_refused_with_what_to_do(migrated_db: str) -> None:
    result = run("access", "add", "ann@example.com", DATABASE_URL=migrated_db)
    assert result.returncode == 2
    assert "no auth.users table" in result.stderr and "UUID" in result.stderr
    assert members(migrated_db) == []


def test_an_email_is_looked_up_in_auth_users_as_on_supabase(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:  # the part of Supabase's auth schema used
        conn.execute("create table auth.users (id uuid primary key, email text)")
        conn.execute("insert into auth.users values (%s, 'Ann@Example.com')", [USER])
    added = run("access", "add", "ann@example.com", DATABASE_URL=migrated_db)
    unknown = run("access", "add", "eve@example.com", DATABASE_URL=migrated_db)
    assert added.returncode == 0, added.stderr
    assert members(migrated_db) == [(USER, "Ann@Example.com", members(migrated_db)[0][2])]
    assert unknown.returncode == 2 and "no Supabase user has the email eve@example.com" in unknown.stderr
    assert run("access", "remove", "ann@example.com", DATABASE_URL=migrated_db).returncode == 0
    assert members(migrated_db) == []


def test_a_minted_token_is_printed_once_to_stdout_and_nowhere_else(tmp_path: Path) -> None:
    before = datetime.now(UTC).timestamp()
    result = run("token", "executor", "--consumer", "bot-a", "--days", "7", cwd=tmp_path,
                 SUPABASE_JWT_SECRET=SECRET, CONTROLLER_LOG__LEVEL="DEBUG")
    after = datetime.now(UTC).timestamp()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    token = lines[0]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert (claims["role"], claims["consumer"]) == ("executor", "bot-a")
    # 7 days from when it was minted, which is between the two readings (however long the command took)
    assert int(before) + 7 * 86400 <= claims["exp"] <= after + 7 * 86400 and claims["exp"] - claims["iat"] == 7 * 86400
    assert token not in result.stderr and token.split(".")[2] not in result.stderr
    assert "executor token minted consumer=bot-a" in result.stderr  # the log line says what, not the token
    assert list(tmp_path.iterdir()) == []  # written nowhere


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--consumer", "bot-a"], {}, "neither SUPABASE_JWT_SECRET nor PGRST_JWT_SECRET is set"),
    (["--consumer", "bot a; drop"], {"SUPABASE_JWT_SECRET": SECRET}, "consumer must be"),
], ids=["no-secret", "bad-consumer"])
def test_minting_refuses_bad_input_and_prints_no_token(tmp_path: Path, args: list[str], env: dict[str, str],
                                                       message: str) -> None:
    result = run("token", "executor", *args, cwd=tmp_path, **env)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(("secret", "days", "message"), [
    ("CHANGE-ME-TO-32-OR-MORE-RANDOM-CHARACTERS", 1, "placeholder"),
    ("short-secret", 1, "at least 32 characters"),
    (SECRET, 0, "days must be at least 1"),
])
def test_a_token_is_not_minted_from_a_weak_secret_or_for_no_time(secret: str, days: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mint_executor_token(secret, "bot-a", days, datetime.now(UTC))
