"""A model saved into the registry of a real Postgres with a fixed training window, and the training
parameters small enough for the integration tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from ml import registry
from ml.config import TrainParams
from ml.train import ConfidenceModel

PARAMS = TrainParams(folds=2, min_events=100, max_iter=30)
WINDOW = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))


def save_model(url: str, model: ConfidenceModel, folder: Path, metrics: dict[str, Any] | None = None,
               strategy: str = "dca", now: datetime | None = None) -> str:
    with psycopg.connect(url) as conn:
        return registry.save(conn, model, strategy=strategy, metrics=metrics or {}, training_start=WINDOW[0],
                             training_end=WINDOW[1], model_dir=folder, now=now)
