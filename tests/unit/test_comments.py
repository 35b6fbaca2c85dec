"""Comments and docstrings give the code's reasons, not the history of its planning.

A reader of the shipped packages cannot look up a planning document, an issue number or where a name used to
live; a reference to one says nothing about why the code is as it is.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("controller", "ml", "shadow", "bridge", "hummingbot_scripts", "executor")
HISTORY = re.compile(r"seed 0[0-9]|issue [0-9]|old home", re.IGNORECASE)


def _history_references(text: str) -> list[int]:
    return [number for number, line in enumerate(text.splitlines(), start=1) if HISTORY.search(line)]


def test_no_shipped_module_cites_planning_history() -> None:
    paths = [path for package in SHIPPED for path in sorted((ROOT / package).rglob("*.py"))]
    found = [f"{path.relative_to(ROOT)}:{line}" for path in paths for line in _history_references(path.read_text())]
    assert found == []


def test_the_pattern_catches_what_it_is_meant_to() -> None:
    text = "a\n# order health (seed 000)\nb  # issue 11: the grid\nre-exported: its old home\nphase 2 profile\n"
    assert _history_references(text) == [2, 3, 4]
