"""Fixtures every executor test uses: the real Postgres store the controller writes signals with, and the
script's outbox file in the test's own folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.data.storage.postgres import PostgresStore


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox.jsonl"
