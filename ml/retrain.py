"""Training as one step (validate, fit, register, gate), and the retrainer that runs it beside the scan loop.

The retrainer is a daemon thread with its own timeout, never a stage of the scan: a cycle never waits on
it. It retrains when the newest model is older than `ml.retrain.interval_h`, or when at least
`ml.retrain.min_new_labels` trades have closed since that model was trained (fresh labels from the executor's
`trades`, the table the executor really writes). It learns from `ml.retrain.replay` (a folder of recorded
candles) or, when that is not set, from the candles the scan stored. A failure or a timeout alerts and
changes nothing: the active model stays active; a new model becomes active only through the promotion gate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import psycopg

from controller.scan.pipeline import StrategyTimeout, run_with_timeout
from controller.scan.strategy_params import StrategiesConfig
from ml import payoff, registry
from ml.config import MlConfig
from ml.events import build_events, events_from_series, series_from_store
from ml.gate import with_family
from ml.train import TrainingRefused, fit, walk_forward

logger = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> metrics, or {"refused": why}
    versions: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)


def train_and_register(conn: psycopg.Connection, events: pd.DataFrame, config: MlConfig, threshold: float, *,
                       actor: str, promote: bool, progress: Callable[[str, int], None] | None = None,
                       strategies: StrategiesConfig | None = None) -> TrainOutcome:
    """Per strategy: purged walk-forward metrics, a model fitted on all its events, registered (inactive), and
    with `promote` the gate applied. A refused strategy is reported with its reason and registers nothing.
    With `strategies`, each entry's threshold is its payoff break-even (`ml.payoff`), at least `threshold`;
    without, `threshold` for all."""
    outcome = TrainOutcome()
    fitted: dict[str, tuple[Any, pd.DataFrame]] = {}
    for name, group in events.groupby("strategy", sort=True):
        name = str(name)
        try:
            cut = threshold if strategies is None else payoff.for_events(group, strategies, config.costs, threshold)
            metrics = walk_forward(group, config.train, cut,
                                   progress=(lambda k, n=name: progress(n, k)) if progress else None,
                                   gate=config.gate)
            model = fit(group, config.train)
        except TrainingRefused as exc:
            outcome.results[name] = {"refused": str(exc)}
            outcome.verdicts[name] = "not trained"
            continue
        outcome.results[name] = metrics
        fitted[name] = (model, group)
    # the strategies of this retrain are one family: each model's metrics carry every p (Holm reads them)
    with_family(outcome.results, datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
    for name, (model, group) in fitted.items():
        metrics = outcome.results[name]
        version = registry.save(conn, model, strategy=name, metrics=metrics,
                                training_start=group["decided_at"].min().to_pydatetime(),
                                training_end=group["horizon_end"].max().to_pydatetime(), model_dir=config.model_dir)
        conn.commit()
        outcome.versions[name] = version
        if promote:
            promoted, why = registry.promote(conn, version, actor=actor, params=config.gate)
            outcome.verdicts[name] = f"{version}: {'promoted' if promoted else 'kept inactive'} ({why})"
        else:
            ok, why = registry.gate(conn, version, config.gate)
            outcome.verdicts[name] = f"{version}: registered, gate {'passes' if ok else 'refuses'} ({why})"
    return outcome


class Retrainer:
    """Checks every `check_every_s` whether a retrain is due and runs it in a worker with a timeout."""

    def __init__(self, config: MlConfig, strategies: StrategiesConfig, connect: Callable[[], psycopg.Connection],
                 alert: Callable[[str, str], Any], threshold: Callable[[], float],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 train: Callable[[], TrainOutcome] | None = None) -> None:
        self.config = config
        self.strategies = strategies
        self.connect = connect
        self.alert = alert
        self.threshold = threshold
        self.clock = clock
        self.train = train or self._train
        self.runs = 0
        self.failures = 0
        self.last: TrainOutcome | None = None
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None

    def due(self) -> str | None:
        """Why a retrain is due now, or None."""
        with self.connect() as conn:
            newest = conn.execute("select max(created_at) from ml_models").fetchone()[0]
            if newest is None:
                return "no model yet"
            if self.clock() - newest >= timedelta(hours=self.config.retrain.interval_h):
                return f"newest model older than {self.config.retrain.interval_h:g} h"
            fresh = conn.execute("select count(*) from trades where closed_at > %s", (newest,)).fetchone()[0]
        if fresh >= self.config.retrain.min_new_labels:
            return f"{fresh} trades closed since the newest model"
        return None

    def _train(self) -> TrainOutcome:
        with self.connect() as conn:
            if self.config.retrain.replay is not None:
                events, _ = build_events(self.config.retrain.replay, self.strategies, self.config.costs)
            else:
                events, _ = events_from_series(series_from_store(conn), self.strategies, self.config.costs)
            if events.empty:
                raise TrainingRefused("no labelled entries in the training candles")
            return train_and_register(conn, events, self.config, self.threshold(), actor="retrainer", promote=True,
                                      strategies=self.strategies)

    def run_once(self, reason: str = "asked") -> bool:
        """One retrain under the timeout. True when it finished; on failure alert and keep the active model."""
        self.runs += 1
        try:
            self.last = run_with_timeout(self.train, self.config.retrain.timeout_s, "ml-retrain")
        except (StrategyTimeout, Exception) as exc:  # any failure: the active model stays; say so loudly
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.error("ml retrain failed, the active model stays", extra={"reason": reason,
                                                                            "error": self.last_error})
            self.alert("ml:retrain", f"retrain ({reason}) failed, the active model stays: {self.last_error}")
            return False
        self.last_error = None
        logger.info("ml retrain done", extra={"reason": reason, "verdicts": self.last.verdicts})
        return True

    def start(self, stop: threading.Event) -> threading.Thread:
        """The retrainer's own thread, beside the scan loop (daemon: it never holds up an exit)."""

        def loop() -> None:
            while not stop.wait(self.config.retrain.check_every_s):
                try:
                    reason = self.due()
                except Exception as exc:  # the database is away: look again next time
                    logger.warning("ml retrain check failed", extra={"error": str(exc)})
                    continue
                if reason:
                    self.run_once(reason)

        self._thread = threading.Thread(target=loop, name="ml-retrainer", daemon=True)
        self._thread.start()
        return self._thread
