"""`python -m controller ARGS` run in this process through typer's runner, as the CLI tests use it."""

from __future__ import annotations

import os
import subprocess

from typer.testing import CliRunner

from controller.cli.main import app


def run(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m controller ARGS` with that environment, in this process (typer's runner: the same app, argument
    parsing, exit codes, stdout and stderr; a subprocess per command added only its interpreter start-up and
    imports, seconds each on a busy box)."""
    environ: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CONTROLLER_")}
    environ.update(DATABASE_URL=url, COLUMNS="200", **env)
    result = CliRunner().invoke(app, list(args), env=environ, prog_name="python -m controller")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["python", "-m", "controller", *args], result.exit_code, result.stdout,
                                       result.stderr)
