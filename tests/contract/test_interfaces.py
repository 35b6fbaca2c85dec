"""The interfaces others build on (docs/interfaces.md) change only with a version bump.

The committed tests/contract/interfaces.json holds each interface's version and shape: the signal
schemas' JSON schema, the executor role's SQL functions read from a migrated Postgres (pg_proc), the
script config's fields and the CLI's command and option tree. A different shape under the same version fails
with the diff and what to do.
"""

from __future__ import annotations

import copy
import json
import os
import re

import pytest

from bridge.version import INTERFACES, VERSION
from tests.support import interfaces
from tests.support.interfaces import FINGERPRINT_FILE, ROOT, current, stale


@pytest.fixture
def now(migrated_db: str) -> dict:
    return current(migrated_db)


def test_no_interface_changed_without_a_version_bump(now: dict) -> None:
    if os.environ.get("UPDATE_INTERFACES") == "1":
        FINGERPRINT_FILE.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    committed = json.loads(FINGERPRINT_FILE.read_text())
    problems = stale(committed, now)
    assert not problems, "\n\n".join(problems)


def test_the_fingerprint_holds_what_users_depend_on(now: dict) -> None:
    queue = now["queue_functions"]["shape"]
    assert {k.split("(")[0] for k in queue} == {"claim_signals", "claim_signals_wait", "ack_signal",
                                                "report_order_event", "heartbeat", "executor_positions"}
    assert {"NewSignal", "Signal", "OrderEvent"} == set(now["signal_schema"]["shape"])
    assert "consumer" in now["executor_config"]["shape"] and "connector" in now["executor_config"]["shape"]
    assert "scan" in now["cli"]["shape"] and "--version" in now["cli"]["shape"]["(root)"]["version"]["opts"]


@pytest.mark.parametrize("change", ["renamed option", "dropped schema field", "new function argument",
                                    "changed config default"])
def test_a_changed_interface_under_the_same_version_fails_with_the_diff(now: dict, change: str) -> None:
    changed = copy.deepcopy(now)
    if change == "renamed option":
        changed["cli"]["shape"]["(root)"]["config"]["opts"] = ["--conf", "-c"]
        name = "cli"
    elif change == "dropped schema field":
        del changed["signal_schema"]["shape"]["NewSignal"]["properties"]["symbol"]
        name = "signal_schema"
    elif change == "new function argument":
        key = next(k for k in changed["queue_functions"]["shape"] if k.startswith("claim_signals("))
        changed["queue_functions"]["shape"][key]["arguments"] += ", extra integer"
        name = "queue_functions"
    else:
        changed["executor_config"]["shape"]["claim_batch"]["default"] = 50
        name = "executor_config"
    (problem,) = stale(now, changed)
    assert problem.startswith(f"{name} changed but its version is still {INTERFACES[name]}: bump")
    assert "CHANGELOG.md" in problem and "\n-" in problem and "\n+" in problem  # the diff is shown
    # with the version bumped, the same change asks only for the file to be refreshed
    changed[name]["version"] = "2.0"
    (problem,) = stale(now, changed)
    assert problem.startswith(f"{name} is now 2.0 (was {INTERFACES[name]})")


def test_the_changelog_and_the_docs_name_the_current_versions() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(VERSION)}\b", changelog, re.M), f"CHANGELOG.md has no ## {VERSION}"
    doc = (ROOT / "docs" / "interfaces.md").read_text()
    for name, version in INTERFACES.items():
        assert re.search(rf"`{name}`.*\b{re.escape(version)}\b", doc), f"docs/interfaces.md: {name} {version}"


def test_the_readers_see_a_real_change() -> None:
    """The CLI reader walks the live typer app: an option added to it shows up in the fingerprint."""
    import typer

    from controller.cli.main import app
    before = interfaces.cli()

    @app.command("contract-probe")
    def probe(flag: bool = typer.Option(False, "--flag")) -> None:
        """A command that exists only inside this test."""

    try:
        after = interfaces.cli()
    finally:
        app.registered_commands.pop()
    assert "contract-probe" not in before and after["contract-probe"]["flag"]["opts"] == ["--flag"]
