"""Fixtures every executor test uses: the script's outbox file in the test's own folder (the real Postgres store
the controller writes signals with is `store` in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox.jsonl"
