"""Every command the README and docs/live-paper.md show, exercised as a user would type it.

- `python -m controller …` and `python -m offline.demo …` are parsed by the real command line (an unknown
  command or option fails); `make` targets are checked against the Makefile (`make -n`).
- The live-paper commands that need no network run for real, in the page's order, on a migrated Postgres.
- The rest need a real service (Docker, a Supabase project, an exchange's API): offline, what they name is
  checked (compose services, mounted paths, the pinned image, the Supabase CLI's install); run against a real
  project in the opt-in tier (`pytest -m supabase`, LIVE_PAPER_DATABASE_URL).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import psycopg
import pytest
import yaml

from bridge.version import VERSION
from controller.config import PROJECT_ROOT
from offline.demo import build_parser
from tests.support.markdown import Command, bash_commands, inline_commands

PAGES = (PROJECT_ROOT / "README.md", PROJECT_ROOT / "docs" / "live-paper.md")
LIVE_PAPER = PROJECT_ROOT / "docs" / "live-paper.md"
SECRET = "a-test-jwt-secret-of-32-characters-or-more"
COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def shown() -> list[Command]:
    return [c for page in PAGES for c in (*bash_commands(page, PROJECT_ROOT), *inline_commands(page, PROJECT_ROOT))]


def python_module(command: Command, module: str) -> list[str] | None:
    if command.argv[:3] == ("python", "-m", module):
        return list(command.argv[3:])
    return None


def env_for(url: str | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONTROLLER_", "SUPABASE_", "PGRST_")) and k not in ("DATABASE_URL", "EXECUTOR_JWT")}
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(extra or {}, COLUMNS="200")
    return env


def controller(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller", *argv], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def test_the_pages_show_the_commands_this_test_is_about() -> None:
    commands = {" ".join(c.argv) for c in shown()}
    assert {"make demo", "make test", "python -m controller migrate", "python -m controller run",
            "docker compose up -d hummingbot", "python -m controller close --all"} <= commands


@pytest.mark.parametrize("command", [c for c in shown() if python_module(c, "controller") is not None], ids=str)
def test_every_controller_command_shown_is_one_the_cli_accepts(command: Command) -> None:
    argv = python_module(command, "controller")
    assert argv is not None
    if argv == ["--version"]:  # eager: it prints the release and exits before --help is read
        result = controller(argv, env_for(None, command.env))
        assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        assert result.stdout.strip() == VERSION
        return
    result = controller([*argv, "--help"], env_for(None, command.env))
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
    assert "Usage:" in result.stdout


@pytest.mark.parametrize("command", [c for c in shown() if python_module(c, "offline.demo") is not None], ids=str)
def test_every_demo_command_shown_parses(command: Command) -> None:
    argv = python_module(command, "offline.demo")
    assert argv is not None
    if argv == ["--help"]:
        result = subprocess.run([sys.executable, "-m", "offline.demo", "--help"], cwd=PROJECT_ROOT,
                                capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0 and "--quick" in result.stdout, result.stderr
    else:
        build_parser().parse_args(argv)  # an unknown option exits 2


@pytest.mark.parametrize("command", [c for c in shown() if c.argv[0] == "make"], ids=str)
def test_every_make_command_shown_is_a_target_running_what_the_page_says(command: Command) -> None:
    result = subprocess.run(["make", "-n", *command.argv[1:]], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    target = command.argv[1]
    says = {"demo": ["-m controller db start", "-m controller migrate", "-m offline.demo"],
            "test": ["-m pytest"]}[target]
    for text in says:
        assert text in result.stdout, result.stdout
    for assignment in command.argv[2:]:  # make demo DEMO_ARGS="--quick": the options reach the demo
        name, value = assignment.split("=", 1)
        assert name == "DEMO_ARGS"
        assert f"-m offline.demo {value}" in result.stdout
        build_parser().parse_args(value.split())


def test_ci_runs_the_readme_test_command() -> None:
    lines = [line.strip() for line in (PROJECT_ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines


# --- the commands that need a real service: what they name exists --------------------------------------

def check_cp(argv: tuple[str, ...]) -> None:
    assert argv[1:] == (".env.example", ".env") and (PROJECT_ROOT / ".env.example").is_file()


def check_docker(argv: tuple[str, ...]) -> None:
    if argv[1] == "compose":
        verb, rest = argv[2], [a for a in argv[3:] if not a.startswith("-")]
        assert verb in ("up", "logs", "stop")
        assert rest and set(rest) <= set(COMPOSE["services"]), argv
        return
    assert argv[1] == "run"
    mounts = [argv[i + 1] for i, a in enumerate(argv) if a == "-v"]
    compose_mounts = {v.split(":")[1] for v in COMPOSE["services"]["hummingbot"]["volumes"] if v.startswith("./")}
    for mount in mounts:
        host, inside, mode = mount.split(":")
        assert host.startswith("$PWD/") and (PROJECT_ROOT / host.removeprefix("$PWD/")).exists(), mount
        assert inside in compose_mounts and mode == "ro", mount
    assert compose_mounts <= {m.split(":")[1] for m in mounts}  # every mount the compose service has
    assert argv[-1] == COMPOSE["services"]["hummingbot"]["image"]


def check_supabase_cli(argv: tuple[str, ...]) -> None:
    # Installed by make setup at the pinned version; tests/integration/sql/test_supabase_cli.py runs this
    # very push on the embedded Postgres and compares the schema with `controller migrate`'s.
    assert (PROJECT_ROOT / "tools" / "supabase-cli" / "package-lock.json").is_file()
    assert argv[1:4] == ("db", "push", "--db-url")
    test = (PROJECT_ROOT / "tests" / "integration" / "sql" / "test_supabase_cli.py").read_text()
    assert '"db", "push", "--db-url"' in test


def check_shell(argv: tuple[str, ...]) -> None:
    assert argv in (("set", "-a"), ("set", "+a"), (".", "./.env"))


def check_pytest(argv: tuple[str, ...]) -> None:
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()
    assert argv[3:] == ("-m", "supabase") and '"supabase: opt-in tier' in pyproject


NEEDS_SERVICE: dict[str, Callable[[tuple[str, ...]], None]] = {
    "cp": check_cp, "docker": check_docker, "tools/supabase-cli/node_modules/.bin/supabase": check_supabase_cli,
    "set": check_shell, ".": check_shell,
}


def test_every_other_command_shown_names_what_exists() -> None:
    others = [c for c in shown() if c.argv[0] not in ("make",) and python_module(c, "controller") is None
              and python_module(c, "offline.demo") is None]
    assert others
    for command in others:
        if python_module(command, "pytest") is not None:
            check_pytest(command.argv)
            continue
        assert command.argv[0] in NEEDS_SERVICE, f"{command}: a command this test does not know"
        NEEDS_SERVICE[command.argv[0]](command.argv)


# --- the live-paper commands that run offline, for real -------------------------------------------------

# The controller commands of docs/live-paper.md that talk to the exchange's API: the opt-in tier only.
NEEDS_NETWORK = {("scan", "--once"), ("run",)}


def live_paper_controller_commands() -> list[list[str]]:
    found = [python_module(c, "controller") for c in
             (*bash_commands(LIVE_PAPER, PROJECT_ROOT), *inline_commands(LIVE_PAPER, PROJECT_ROOT))]
    return [argv for argv in found if argv]


def check_run(argv: list[str], result: subprocess.CompletedProcess[str], url: str, tmp: Path) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    joined = " ".join(argv)
    if joined.startswith("token executor"):
        assert result.returncode == 0, output
        token = result.stdout.strip()
        assert len(token.splitlines()) == 1  # only the token on stdout: EXECUTOR_JWT=$(…) works
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        assert claims["role"] == "executor" and claims["consumer"] == "hummingbot-1"
        days = int(argv[argv.index("--days") + 1]) if "--days" in argv else 90  # the CLI's default
        expected = datetime.now(UTC) + timedelta(days=days)
        assert abs(claims["exp"] - expected.timestamp()) < 3600
    elif joined == "status":  # nothing has heartbeated yet: the controller is down, exit 1, the store healthy
        assert result.returncode == 1 and re.search(r"store\s.*healthy", result.stdout), output
    elif joined.startswith("report --out"):
        assert result.returncode == 0, output
        assert (tmp / argv[2]).stat().st_size > 10_000
    elif joined.startswith("access add"):  # plain Postgres has no auth.users: one line saying what to give
        assert result.returncode == 2 and result.stderr.startswith("error: ") and "UUID" in result.stderr
    elif joined == "flags set signals.enabled false":
        assert result.returncode == 0, output
        with psycopg.connect(url) as conn:
            assert conn.execute("select value from flags where name = 'signals.enabled'").fetchone()[0] is False
    elif joined == "close --all":
        assert result.returncode == 0 and "no executing signal" in output, output
    elif joined.startswith("verify"):
        assert result.returncode == 0 and "nothing stuck" in output, output
    elif joined == "flags show":
        assert result.returncode == 0 and "signals.enabled" in output, output
    else:  # migrate, flags phase 1
        assert result.returncode == 0, output


def test_the_live_paper_commands_run_in_order_on_a_migrated_database(migrated_db: str, tmp_path: Path) -> None:
    commands = live_paper_controller_commands()
    ran = []
    for argv in commands:
        if tuple(argv) in NEEDS_NETWORK:
            continue
        # the report goes to the test's folder, not the repository's root
        run_argv = ["report", "--out", str(tmp_path / argv[2])] if argv[0] == "report" else argv
        result = controller(run_argv, env_for(migrated_db, {"PGRST_JWT_SECRET": SECRET}))
        check_run(argv, result, migrated_db, tmp_path)
        ran.append(" ".join(argv[:2]))
    assert {"migrate", "flags phase", "flags show", "token executor", "status", "verify --window", "report --out",
            "access add", "flags set", "close --all"} <= set(ran)


@pytest.mark.supabase
def test_the_live_paper_commands_against_a_real_project() -> None:
    """Opt-in: LIVE_PAPER_DATABASE_URL = a Supabase project's session pooler (or any Postgres you may write
    to), with network to the exchange of conf/controller.yml. Runs the page's controller commands that read
    and write the database, and one live scan."""
    url = os.environ.get("LIVE_PAPER_DATABASE_URL")
    if not url:
        pytest.skip("LIVE_PAPER_DATABASE_URL is not set (a real Supabase project's session-pooler URL)")
    env = env_for(url, {"CONTROLLER_UNIVERSE__SYMBOLS": '["BTC-USDT","ETH-USDT"]'})
    for argv in (["migrate"], ["flags", "show"], ["scan", "--once"], ["verify", "--window", "24h"]):
        result = controller(argv, env)
        assert result.returncode == 0, result.stdout + result.stderr
