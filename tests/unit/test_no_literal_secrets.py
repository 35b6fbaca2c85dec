"""No literal secret in what the repository ships for people to copy: conf/, the compose file and its
Docker folder, .env.example, the docs, the CI and setup scripts. `.gitignore` listing `.env` protects
only that one file; a key pasted into a YAML or a README example would still be committed.

Each rule is first tried on a sample it must catch, so a rule that silently matches nothing fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.config_base import PROJECT_ROOT
from controller.ops.logs import SECRET_ENV_VARS

SHIPPED = ["conf/**/*", "docker-compose*.yml", "docker/**/*", "Dockerfile", ".env.example", "*.md", "docs/**/*",
           ".ci/**/*", "scripts/**/*", "Makefile", "hummingbot_scripts/**/*.yml"]

# A value that stands for a secret without being one.
PLACEHOLDER = re.compile(r"^$|CHANGE-ME|^\$\{[^}]+\}$|^<[^>]+>$|^…$|^\.\.\.$|^\*+$|^x+$|^your[-_]", re.I)

RULES: dict[str, re.Pattern[str]] = {
    "a JWT (Supabase keys are JWTs)": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"),
    "a private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----"),
    "a Supabase secret or access token": re.compile(r"\b(?:sb_secret_|sbp_)[A-Za-z0-9_-]{20,}"),
    "an AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    "a Slack or Discord webhook": re.compile(
        r"hooks\.slack\.com/services/T[A-Z0-9]+/[A-Z0-9]+/[A-Za-z0-9]{10,}|discord(?:app)?\.com/api/webhooks/\d+/[\w-]{20,}"),
    "a Telegram bot token": re.compile(r"\b\d{8,10}:AA[A-Za-z0-9_-]{30,}\b"),
}
# scheme://user:password@host, the password captured
URL_PASSWORD = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"`]+:(?P<password>[^\s@/'\"`]+)@")
# key: value / key=value where the key names a secret, in config-like files
SECRET_SETTING = re.compile(
    r"""^\s*(?:export\s+)?[\w.-]*(?:password|passwd|secret|token|api[_-]?key|apikey|private[_-]?key|webhook[_-]?url)
        [\w.-]*["']?\s*[:=]\s*["']?(?P<value>[^\s"'#]*)""", re.I | re.X)
# `queue_token_env: EXECUTOR_JWT` names the variable that holds the secret
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+")
CONFIG_SUFFIXES = {".yml", ".yaml", ".toml", ".ini", ".env", ".example", ".json", ".cfg", ".conf"}

CAUGHT = [
    "SUPABASE_SERVICE_ROLE_KEY=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJlLXNpZ24",
    "-----BEGIN PRIVATE KEY-----",
    "key: sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz",
    "aws: AKIAIOSFODNN7EXAMPLE",
    "token ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "https://discord.com/api/webhooks/123456789012345678/abcdefghijklmnopqrstuvwxyz0123",
    "bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1",
]


def shipped_files() -> Iterator[Path]:
    seen: set[Path] = set()
    for pattern in SHIPPED:
        for path in sorted(PROJECT_ROOT.glob(pattern)):
            if path.is_file() and path not in seen and ".venv" not in path.parts:
                seen.add(path)
                yield path


def findings(path: Path, text: str) -> list[str]:
    found = []
    config_like = path.suffix in CONFIG_SUFFIXES or path.name.startswith((".env", "docker-compose"))
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path}:{number}"
        found += [f"{where}: {what}" for what, rule in RULES.items() if rule.search(line)]
        for match in URL_PASSWORD.finditer(line):
            if not PLACEHOLDER.search(match["password"]):
                found.append(f"{where}: a password in a URL")
        setting = SECRET_SETTING.match(line) if config_like else None
        if setting and not (PLACEHOLDER.search(setting["value"]) or setting["value"].startswith("${")
                            or ENV_NAME.fullmatch(setting["value"])):
            found.append(f"{where}: a literal value for a secret setting")
    return found


@pytest.mark.parametrize("sample", CAUGHT)
def test_each_rule_catches_its_sample(sample: str) -> None:
    assert findings(PROJECT_ROOT / "sample.md", sample)


@pytest.mark.parametrize(("line", "caught"), [
    ("DATABASE_URL=postgresql://postgres:s3cr3t-pw@db.example.com:5432/postgres", True),
    ("DATABASE_URL=postgresql://postgres:CHANGE-ME@postgres:5432/trading", False),
    ("PGRST_DB_URI: postgres://authenticator:${AUTHENTICATOR_PASSWORD}@postgres:5432/trading", False),
    ("`postgresql://postgres:…@db.<project>.supabase.co:5432/postgres`", False),
    ("http://postgrest:3000", False),
])
def test_a_url_password_is_caught_unless_it_is_a_placeholder(line: str, caught: bool) -> None:
    assert bool(findings(PROJECT_ROOT / "sample.md", line)) is caught


@pytest.mark.parametrize(("line", "caught"), [
    ("  api_key: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", True),
    ("PGRST_JWT_SECRET=my-real-secret-value-that-is-long-enough", True),
    ("PGRST_JWT_SECRET=CHANGE-ME-TO-32-OR-MORE-RANDOM-CHARACTERS", False),
    ("SUPABASE_ANON_KEY=", False),
    ("      EXECUTOR_JWT: ${EXECUTOR_JWT:?set EXECUTOR_JWT in .env (see .env.example)}", False),
    ("queue_token_env: EXECUTOR_JWT", False),
])
def test_a_secret_setting_with_a_literal_value_is_caught_in_config_files(line: str, caught: bool) -> None:
    assert bool(findings(PROJECT_ROOT / "sample.yml", line)) is caught


def test_no_shipped_file_holds_a_literal_secret() -> None:
    files = list(shipped_files())
    assert {"docker-compose.yml", ".env.example", "README.md"} <= {p.name for p in files}
    assert any(p.is_relative_to(PROJECT_ROOT / "conf") for p in files)
    problems = [f for path in files for f in findings(path, path.read_text(errors="replace"))]
    assert problems == []


def test_every_secret_variable_in_env_example_is_empty_or_a_placeholder() -> None:
    values = dict(line.split("=", 1) for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
                  if "=" in line and not line.lstrip().startswith("#"))
    listed = [name for name in SECRET_ENV_VARS if name in values]
    assert "DATABASE_URL" in listed and "PGRST_JWT_SECRET" in listed
    literal = []
    for name in listed:
        value = values[name].strip()
        password = URL_PASSWORD.search(value)
        is_url_without_secret = "://" in value and (password is None or PLACEHOLDER.search(password["password"]))
        if not (PLACEHOLDER.search(value) or is_url_without_secret):
            literal.append(name)
    assert literal == []
