"""The deployment files: docker-compose.yml, the Dockerfiles and .env.example.

No Docker engine runs here, so nothing is built or started. Validation is in two layers:
- `docker-compose config` (Debian's docker-compose, or the `docker compose` plugin) when one is on PATH:
  Compose's own parser and schema, with .env.example as the environment. Skipped without it.
- Always: a structural check with PyYAML of the keys this file uses (the Compose specification's JSON
  schema is not vendored and the `jsonschema` package is not installed, so there is no offline schema
  check beyond docker-compose's), plus what no schema checks: every bind-mounted host path exists in
  the repository, every ${VAR} (in the compose file and in the code) is documented in .env.example,
  every image is pinned, and every COPY source of the Dockerfiles exists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILES = {ROOT / "Dockerfile": ROOT, ROOT / "docker" / "postgres" / "Dockerfile": ROOT / "docker" / "postgres"}

# Compose-specification keys this project uses; anything else is a typo until proven otherwise.
TOP_LEVEL = {"services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {"image", "build", "command", "entrypoint", "environment", "env_file", "volumes", "ports",
                "depends_on", "restart", "profiles", "healthcheck", "logging", "tty", "stdin_open", "user",
                "working_dir", "networks", "container_name", "labels", "expose", "extra_hosts"}
RESTART = {"no", "always", "on-failure", "unless-stopped"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)|(?<!\$)\$([A-Za-z_][A-Za-z0-9_]*)")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def documented() -> set[str]:
    """Variables .env.example documents, set or commented out (`NAME=` or `# NAME=`)."""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


# --- Compose's own validation ------------------------------------------------------------------------

def compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


@pytest.mark.parametrize("profile", [None, "selfhost"])
def test_docker_compose_accepts_the_file(profile: str | None) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither docker-compose nor the docker compose plugin is on PATH")
    args = [*cli, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE)]
    if profile:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config", "-q"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


# --- structure ---------------------------------------------------------------------------------------

def test_top_level_and_service_keys_are_known() -> None:
    data = compose()
    assert set(data) - TOP_LEVEL <= {k for k in data if k.startswith("x-")}
    assert {"hummingbot", "controller", "migrate", "postgres", "postgrest"} <= set(data["services"])
    for name, service in data["services"].items():
        unknown = set(service) - SERVICE_KEYS
        assert not unknown, f"{name}: unknown keys {unknown}"
        assert "image" in service, f"{name}: every service names its image (built ones get a local tag)"
        assert service.get("restart", "no") in RESTART, name
        for key in ("command", "entrypoint"):
            assert isinstance(service.get(key, []), list), f"{name}.{key}: exec form, a list"
        assert isinstance(service.get("environment", {}), dict), f"{name}.environment: a mapping"
        for target, spec in (service.get("depends_on") or {}).items():
            assert target in data["services"], f"{name} depends on unknown {target}"
            assert spec["condition"] in CONDITIONS
        for port in service.get("ports", []):
            assert re.fullmatch(r"127\.0\.0\.1:\d+:\d+", port), f"{name}: {port} is published on loopback only"


def test_selfhost_services_are_behind_the_profile_and_the_core_is_not() -> None:
    s = services()
    assert s["postgres"]["profiles"] == ["selfhost"]
    assert s["postgrest"]["profiles"] == ["selfhost"]
    for core in ("hummingbot", "controller", "migrate"):
        assert "profiles" not in s[core]
        # A core service may not wait for a service that is off without the profile.
        assert not set(s[core].get("depends_on") or {}) & {"postgres", "postgrest"}


def test_named_volumes_are_declared() -> None:
    data = compose()
    declared = set(data.get("volumes") or {})
    for name, service in data["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


# --- host paths --------------------------------------------------------------------------------------

def bind_mounts() -> list[tuple[str, str, str]]:
    mounts = []
    for name, service in services().items():
        for volume in service.get("volumes", []):
            if isinstance(volume, dict):
                if volume.get("type") == "bind":
                    mounts.append((name, volume["source"], volume["target"]))
                continue
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                mounts.append((name, source, target))
    return mounts


def test_every_bind_mounted_host_path_exists_in_the_repository() -> None:
    mounts = bind_mounts()
    assert mounts
    for name, source, _ in mounts:
        assert not source.startswith("/"), f"{name}: {source}: host paths are relative to the repository"
        assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_build_contexts_exist() -> None:
    for name, service in services().items():
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build["context"])
            dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
            assert dockerfile.is_file(), f"{name}: {dockerfile.relative_to(ROOT)} missing"


def test_hummingbot_gets_our_script_its_config_and_the_bridge_where_it_looks() -> None:
    hummingbot = services()["hummingbot"]
    targets = {target: source for _, source, target in bind_mounts() if _ == "hummingbot"}
    assert targets["/home/hummingbot/scripts/signal_executor.py"] == "./hummingbot_scripts/signal_executor.py"
    config_target = f"/home/hummingbot/conf/scripts/{hummingbot['environment']['SCRIPT_CONFIG']}"
    assert targets[config_target] == "./conf/hummingbot/conf_signal_executor.yml"
    assert targets["/home/hummingbot/bridge"] == "./bridge"
    assert targets["/home/hummingbot/executor"] == "./executor"
    assert hummingbot["environment"]["HEADLESS_MODE"] == "true"
    assert "CONFIG_PASSWORD" in hummingbot["environment"]
    script_config = yaml.safe_load((ROOT / "conf/hummingbot/conf_signal_executor.yml").read_text())
    assert script_config["script_file_name"] == "signal_executor.py"
    # The queue's address and credentials reach the script under the names its config reads.
    for key in ("queue_url_env", "queue_key_env", "queue_token_env"):
        assert script_config[key] in hummingbot["environment"], key


def test_postgres_preloads_pg_cron_for_the_database_it_creates() -> None:
    postgres = services()["postgres"]
    command = " ".join(postgres["command"])
    assert "shared_preload_libraries=pg_cron" in command
    assert f"cron.database_name={postgres['environment']['POSTGRES_DB']}" in command
    postgrest = services()["postgrest"]["environment"]
    assert postgrest["PGRST_DB_URI"].startswith("postgres://authenticator:")
    assert postgrest["PGRST_DB_URI"].endswith(f"@postgres:5432/{postgres['environment']['POSTGRES_DB']}")
    assert (postgrest["PGRST_DB_SCHEMAS"], postgrest["PGRST_DB_ANON_ROLE"]) == ("public", "anon")
    assert "PGRST_JWT_SECRET" in postgrest


# --- variables ---------------------------------------------------------------------------------------

def test_every_variable_the_compose_file_uses_is_documented() -> None:
    used = {a or b for text in strings(compose()) for a, b in VAR.findall(text)}
    assert {"DATABASE_URL", "CONFIG_PASSWORD", "EXECUTOR_JWT", "PGRST_JWT_SECRET", "POSTGRES_PASSWORD"} <= used
    assert used - documented() == set()


def code_variables() -> set[str]:
    """Environment variables the code reads: os.environ / getenv, validation aliases, *_ENV constants,
    and the env-var names of the Hummingbot script's config."""
    patterns = [r"os\.environ\.get\(\s*\"([A-Z][A-Z0-9_]+)\"", r"os\.environ\[\s*\"([A-Z][A-Z0-9_]+)\"\s*\]",
                r"os\.getenv\(\s*\"([A-Z][A-Z0-9_]+)\"", r"validation_alias=\"([A-Z][A-Z0-9_]+)\"",
                r"\b[A-Z_]*ENV\b\s*=\s*\"([A-Z][A-Z0-9_]+)\""]
    found: set[str] = set()
    for folder in ("controller", "bridge", "hummingbot_scripts", "ml", "shadow", "tests", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for pattern in patterns:
                found.update(re.findall(pattern, text))
    for path in (ROOT / "conf").rglob("*.yml"):
        found.update(re.findall(r"^\w+_env:\s*([A-Z][A-Z0-9_]+)", path.read_text(), re.M))
    return found


def test_every_variable_the_code_reads_is_documented() -> None:
    used = code_variables()
    assert {"DATABASE_URL", "SUPABASE_URL", "SUPABASE_SERVICE_ROLE_KEY", "ALERT_WEBHOOK_URL"} <= used
    assert used - documented() == set()


def test_controller_overrides_are_documented_by_example() -> None:
    names = documented()
    assert any(n.startswith("CONTROLLER_") and "__" in n for n in names)
    for name, service in services().items():
        for key in service.get("environment") or {}:
            if key.startswith("CONTROLLER_"):
                assert re.fullmatch(r"CONTROLLER_[A-Z0-9_]+__[A-Z0-9_]+", key), f"{name}: {key}"


# --- images and Dockerfiles ---------------------------------------------------------------------------

def pinned(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest")


def test_every_image_is_pinned() -> None:
    for name, service in services().items():
        assert pinned(service["image"]), f"{name}: {service['image']} is not pinned to a tag"
    for dockerfile in DOCKERFILES:
        for line in dockerfile.read_text().splitlines():
            if line.upper().startswith("FROM "):
                image = line.split()[1]
                assert pinned(image), f"{dockerfile.relative_to(ROOT)}: {image} is not pinned"


def copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts and parts[0].upper() in ("COPY", "ADD"):
            args = [p for p in parts[1:] if not p.startswith("--")]
            if any(p.startswith("--from=") for p in parts[1:]):
                continue
            sources += args[:-1]
    return sources


def test_dockerfile_copy_sources_exist_and_are_not_ignored() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for dockerfile, context in DOCKERFILES.items():
        for source in copy_sources(dockerfile):
            assert (context / source).exists(), f"{dockerfile.relative_to(ROOT)}: COPY {source} does not exist"
            if context == ROOT:
                assert source.rstrip("/") not in ignored, f"COPY {source} is excluded by .dockerignore"
    assert "requirements/" in copy_sources(ROOT / "Dockerfile")


def test_controller_image_runs_the_controller_and_installs_from_the_lock() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.12[\w.-]*$", text, re.M)
    assert 'ENTRYPOINT ["python", "-m", "controller"]' in text
    assert 'CMD ["run"]' in text
    assert "-c requirements/constraints.txt" in text
    install = text.split("RUN pip install", 1)[1].split("\n\n", 1)[0]
    assert "TA-Lib" in install
    assert "hummingbot" not in install  # Hummingbot runs in its own image
    assert services()["controller"]["command"] == ["run"]
    assert services()["migrate"]["command"] == ["migrate"]


def test_secrets_stay_out_of_the_image_and_the_repository() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ".env" in ignored and ".venv" in ignored
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
