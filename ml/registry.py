"""The model registry: `ml_models` rows and joblib artefacts checked by SHA-256 and by feature list.

A model is saved as `<model_dir>/<version>.joblib` (a dict with the version, strategy, feature names and the
`ConfidenceModel`) and a row with its feature list, metrics, training window, path and SHA-256. Loading
refuses an artefact whose hash differs from the row's, or whose feature list differs (by name and order) from
the row's or from the features this code computes: a model never silently reads the wrong columns.

Promotion makes a model the active one of its strategy only when every figure of the promotion gate
(`ml.gate`) holds on its stored metrics and evaluations, and it beats the active model's trading figure; a
forced promotion records who forced it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from controller.config_base import resolve
from ml import gate as promotion_gate
from ml.config import GateParams
from ml.drift import DriftReference
from ml.features import FEATURES
from ml.novelty import Novelty
from ml.train import ConfidenceModel


class ArtefactMismatch(Exception):
    """An artefact that is not what its registry row says (hash, feature list, missing file)."""


class UnknownModel(LookupError):
    pass


@dataclass(frozen=True)
class LoadedModel:
    version: str
    strategy: str
    model: ConfidenceModel
    created_at: datetime
    metrics: dict[str, Any]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json(value: Any) -> Jsonb:
    return Jsonb(json.loads(json.dumps(value, default=str)))


def save(conn: psycopg.Connection, model: ConfidenceModel, *, strategy: str, metrics: dict[str, Any],
         training_start: datetime, training_end: datetime, model_dir: Path, now: datetime | None = None) -> str:
    """Write the artefact and its row (inactive); return the version."""
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S")
    folder = resolve(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    draft = folder / f"{strategy}-{stamp}.joblib.tmp"
    joblib.dump({"strategy": strategy, "features": list(model.features), "model": model}, draft)
    digest = sha256_of(draft)
    version = f"{strategy}-{stamp}-{digest[:8]}"
    final = folder / f"{version}.joblib"
    draft.replace(final)
    stored_path = Path(model_dir) / final.name  # as configured (relative to the project unless absolute)
    conn.execute(
        "insert into ml_models (version, strategy, features, metrics, training_start, training_end, artefact_path,"
        " artefact_sha256) values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (version, strategy, _json(list(model.features)), _json(metrics), training_start, training_end,
         str(stored_path), digest))
    return version


def _row(conn: psycopg.Connection, version: str) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("select * from ml_models where version = %s", (version,)).fetchone()
    if row is None:
        raise UnknownModel(f"no model {version!r} in ml_models (python -m controller ml list shows them)")
    return row


def _feature_difference(expected: list[str], got: list[str]) -> str:
    missing = [f for f in expected if f not in got]
    extra = [f for f in got if f not in expected]
    if missing or extra:
        return f"missing {missing or 'none'}, unexpected {extra or 'none'}"
    return "same names in another order"


def load(conn: psycopg.Connection, version: str, expected_features: tuple[str, ...] = FEATURES) -> LoadedModel:
    """The model of `version`, after checking its artefact's SHA-256 and feature list; ArtefactMismatch if not."""
    row = _row(conn, version)
    path = resolve(Path(row["artefact_path"]))
    if not path.is_file():
        raise ArtefactMismatch(f"model {version}: artefact {row['artefact_path']} not found")
    digest = sha256_of(path)
    if digest != row["artefact_sha256"]:
        raise ArtefactMismatch(f"model {version}: artefact {row['artefact_path']} has SHA-256 {digest[:16]}..., the "
                               f"registry recorded {row['artefact_sha256'][:16]}...: refusing a changed file")
    artefact = joblib.load(path)
    row_features = list(row["features"])
    for what, names in (("the registry row", row_features), ("the artefact", list(artefact["features"])),
                        ("the model object", list(artefact["model"].features))):
        if names != list(expected_features):
            raise ArtefactMismatch(f"model {version}: feature list of {what} differs from the features this code "
                                   f"computes: {_feature_difference(list(expected_features), names)}")
    model = artefact["model"]
    if not isinstance(getattr(model, "novelty", None), Novelty) or not isinstance(getattr(model, "drift", None),
                                                                                   DriftReference):
        raise ArtefactMismatch(f"model {version}: the artefact holds no nearest-neighbour or drift reference "
                               "(trained by an earlier release): train it again")
    return LoadedModel(version, str(row["strategy"]), model, row["created_at"], dict(row["metrics"]))


def active_versions(conn: psycopg.Connection) -> dict[str, str]:
    """strategy -> version of its active model."""
    rows = conn.execute("select strategy, version from ml_models where active and strategy is not null").fetchall()
    return {str(s): str(v) for s, v in rows}


def list_models(conn: psycopg.Connection) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "select version, strategy, active, created_at, training_start, training_end, promoted_at, promoted_by,"
            " promotion_note, demoted_at, demoted_by, demotion_note, drift, metrics from ml_models"
            " order by strategy, created_at desc").fetchall()


def _per_unit(metrics: dict[str, Any]) -> float | None:
    try:
        return float(metrics["out_of_sample"]["trading"]["ml_return_per_unit_pct"])
    except (KeyError, TypeError):
        return None


def gate(conn: psycopg.Connection, version: str, params: GateParams | None = None) -> tuple[bool, str]:
    """Whether `version` may replace its strategy's active model: every gate figure of its stored metrics and
    evaluations (`ml.gate.decide`), then the trading figure against the active model's."""
    row = _row(conn, version)
    metrics = dict(row["metrics"])
    if row.get("demoted_at") is not None:
        return False, (f"refused: demoted {row['demoted_at']:%Y-%m-%d %H:%M} UTC by {row['demoted_by']} "
                       f"({row['demotion_note']}): train a new model on recent candles")
    if "out_of_sample" not in metrics:
        return False, "refused: no walk-forward metrics recorded with this model: train it again"
    ok, why = promotion_gate.verdict(promotion_gate.decide(metrics, list(row["evaluations"] or []),
                                                           params or GateParams()))
    if not ok:
        return False, why
    current = active_versions(conn).get(str(row["strategy"]))
    if current and current != version:
        theirs = _per_unit(dict(_row(conn, current)["metrics"]))
        mine = _per_unit(metrics)
        if theirs is not None and mine is not None and mine <= theirs:
            return False, f"{why}; but the active model {current} does as well or better ({theirs:+.4f}% per unit)"
    return True, why


def promote(conn: psycopg.Connection, version: str, *, actor: str, force: bool = False,
            note: str | None = None, params: GateParams | None = None) -> tuple[bool, str]:
    """Make `version` its strategy's active model if the gate passes (or `force`); return (promoted, why)."""
    row = _row(conn, version)
    ok, why = gate(conn, version, params)
    if not ok and not force:
        return False, why
    reason = why if ok else f"forced by {actor} against the gate ({why})" + (f": {note}" if note else "")
    with conn.transaction():
        conn.execute("update ml_models set active = false where active and coalesce(strategy, '') = %s",
                     (row["strategy"] or "",))
        conn.execute("update ml_models set active = true, promoted_at = now(), promoted_by = %s, promotion_note = %s"
                     " where version = %s", ("gate" if ok else actor, reason, version))
    return True, reason


def record_drift(conn: psycopg.Connection, version: str, reading: dict[str, Any]) -> None:
    """Keep the model's latest drift reading on its row (what `ml list` and a post-mortem read)."""
    conn.execute("update ml_models set drift = %s where version = %s", (_json(reading), version))


def demote(conn: psycopg.Connection, version: str, *, actor: str, reason: str,
           reading: dict[str, Any] | None = None) -> bool:
    """Deactivate `version` and record who and why; False when it was not active (nothing changes)."""
    row = conn.execute(
        "update ml_models set active = false, demoted_at = now(), demoted_by = %s, demotion_note = %s,"
        " drift = coalesce(%s, drift) where version = %s and active returning version",
        (actor, reason, _json(reading) if reading is not None else None, version)).fetchone()
    return row is not None


def add_evaluation(conn: psycopg.Connection, version: str, evaluation: dict[str, Any]) -> None:
    """Append an out-of-sample evaluation (another dataset) to the model's row."""
    _row(conn, version)
    conn.execute("update ml_models set evaluations = evaluations || %s where version = %s",
                 (_json([evaluation]), version))


def record_evaluation(conn: psycopg.Connection, strategy: str, replay: str, metrics: dict[str, Any], *,
                      actor: str) -> int:
    """Store a walk-forward run of freshly fitted models (`ml evaluate` without a model) as its own record;
    no registered model's metrics change. Returns the record's id."""
    row = conn.execute("insert into ml_evaluations (strategy, replay, events, metrics, created_by) values"
                       " (%s, %s, %s, %s, %s) returning id",
                       (strategy, replay, int(metrics.get("events", 0)), _json(metrics), actor)).fetchone()
    return int(row[0])

