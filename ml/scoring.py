"""Batch scoring in the scan: the `Scorer` the pipeline's hook calls (wired by `controller.wiring`).

Per cycle: the active model of each strategy is (re)loaded when its version changes (hash and feature checks
in `ml.registry.load`), every entry candidate of the cycle is turned into features by `ml.features.build`
(the code training used) and scored in one `predict_proba` batch per model. Each candidate falls in one arm:

- `stale`: the active model is older than `ml.max_age_days`: scored and recorded, no effect;
- `ood`: its inputs are unlike the training set (`dissimilarity` above `ood_max_dissimilarity`): no effect;
- `control`: a share `ml.control_share` of candidates, chosen by a hash of the signal's key (strategy,
  exchange, symbol, candle close), scored but never boosted, so the dashboard compares like with like;
- `boosted`: size x `multiplier(confidence, threshold)` in [0.5, 1.5], 1 at the threshold; vetoed only when
  `ml.veto` is on and the confidence is below the threshold. The threshold is the candidate's break-even
  confidence from its strategy's and tier's take profit, stop and costs (`ml.payoff`), at least the
  `ml.min_confidence` flag.

After recording a cycle's predictions, every `ml.drift.check_every` new predictions of a model, the PSI of its
last `ml.drift.window` live scores and features against its training set is measured (`ml.drift`), kept on its
registry row and shown in the heartbeat; a score PSI past `ml.drift.level` demotes the model with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from controller.data.market_data import timeframe_seconds
from controller.scan.pipeline import MlVerdict
from controller.scan.regime import RegimeReading
from controller.scan.signals import Decision
from controller.scan.strategy_params import StrategiesConfig
from ml import drift as ml_drift
from ml import features as ml_features
from ml import payoff, registry
from ml.config import MlConfig
from ml.train import multiplier, warm_up

logger = logging.getLogger(__name__)


def control_draw(key: str) -> float:
    """A uniform number in [0, 1) fixed by `key`: the same signal always lands in the same arm."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / float(1 << 48)


def signal_key(strategy: str, exchange: str, symbol: str, candle_close: datetime) -> str:
    return f"{strategy}|{exchange}|{symbol}|{candle_close.isoformat()}"


def arms(confidence: np.ndarray, dissimilarity: np.ndarray, keys: Sequence[str], *, stale: bool,
         control_share: float, ood_max: float, threshold: float | np.ndarray, veto: bool,
         enabled: bool) -> list[tuple[str, float, bool]]:
    """(arm, size multiplier, vetoed) per candidate; `threshold` one for all or one per candidate (its
    strategy's and tier's payoff, `ml.payoff`). Pure: the rules of the booster in one place."""
    out = []
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), np.shape(confidence))
    for p, d, key, t in zip(confidence, dissimilarity, keys, thresholds, strict=True):
        if not enabled:
            out.append(("off", 1.0, False))
        elif stale:
            out.append(("stale", 1.0, False))
        elif d > ood_max:
            out.append(("ood", 1.0, False))
        elif control_draw(key) < control_share:
            out.append(("control", 1.0, False))
        else:
            out.append(("boosted", float(multiplier(np.array([p]), t)[0]), bool(veto and p < t)))
    return out


class MlScorer:
    """Scores a cycle's candidates with the active models; records predictions; counts OOD and stale."""

    def __init__(self, connect: Callable[[], psycopg.Connection], strategies: StrategiesConfig, config: MlConfig,
                 exchange: str, wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.connect = connect
        self.wall_clock = wall_clock  # a model ages in real time, also while the scan replays 2018
        self.strategies = dict(strategies.items())
        self.config = config
        self.exchange = exchange
        self.models: dict[str, registry.LoadedModel] = {}
        self.counters: Counter[str] = Counter()
        self.problems: dict[str, str] = {}
        self.unchecked: Counter[str] = Counter()  # predictions recorded per version since its last drift reading
        self.drift: dict[str, dict[str, Any]] = {}  # strategy -> the active model's latest reading
        self.demoted: dict[str, dict[str, str]] = {}  # strategy -> the model demoted for drift, and why
        # the tree walk is compiled (or loaded from numba's disk cache) beside the scan loop, not in its first
        # scored cycle; that cycle waits only for what is left of it
        self.warming = threading.Thread(target=warm_up, name="ml-warm-up", daemon=True)
        self.warming.start()

    def refresh(self, conn: psycopg.Connection) -> None:
        """Load each strategy's active model when its version changed; forget a strategy with none."""
        active = registry.active_versions(conn)
        for strategy in list(self.models):
            if strategy not in active:
                del self.models[strategy]
        for strategy, version in active.items():
            if strategy in self.models and self.models[strategy].version == version:
                continue
            try:
                self.models[strategy] = registry.load(conn, version)
                self.problems.pop(strategy, None)
                self.drift.pop(strategy, None)
                self.demoted.pop(strategy, None)  # a new active model replaces the demoted one
            except (registry.ArtefactMismatch, registry.UnknownModel) as exc:
                self.models.pop(strategy, None)
                self.problems[strategy] = str(exc)
                self.counters["model_refused"] += 1
                logger.error("active model refused", extra={"strategy": strategy, "version": version,
                                                            "error": str(exc)})

    def score(self, frames: Mapping[str, pd.DataFrame], regime: RegimeReading, flags: Mapping[str, Any],
              now: datetime) -> dict[tuple[str, str], MlVerdict]:
        """Verdicts for the latest-candle entries of each strategy's evaluated frame, keyed (strategy, symbol)."""
        with self.connect() as conn:
            self.refresh(conn)
            verdicts = self._score(frames, regime, flags)
            self.counters["cycles"] += 1
            # every cycle, so health sees the booster progressing even in cycles without candidates
            conn.execute("select heartbeat('ml', %s)", (Jsonb(self.progress()),))
        return verdicts

    def _score(self, frames: Mapping[str, pd.DataFrame], regime: RegimeReading,
               flags: Mapping[str, Any]) -> dict[tuple[str, str], MlVerdict]:
        verdicts: dict[tuple[str, str], MlVerdict] = {}
        for name, evaluated in frames.items():
            loaded = self.models.get(name)
            section = self.strategies.get(name)
            if loaded is None or section is None or evaluated.empty:
                continue
            latest = evaluated.groupby("symbol", sort=False).tail(1)
            candidates = latest[latest["entry"].to_numpy(dtype=bool)]
            if candidates.empty:
                continue
            tf_s = timeframe_seconds(section.timeframe)
            regime_cols = ml_features.regime_columns(regime.features(), len(evaluated))
            feats = ml_features.build(name, evaluated, section.params, regime_cols, tf_s,
                                      rows=evaluated.index.get_indexer(candidates.index))
            confidence, dissimilarity = loaded.model.score(feats)  # one batch per model
            closes = [(pd.Timestamp(t) + timedelta(seconds=tf_s)).to_pydatetime() for t in candidates["ts"]]
            keys = [signal_key(name, self.exchange, str(s), c) for s, c in zip(candidates["symbol"], closes,
                                                                                 strict=True)]
            age = self.wall_clock() - loaded.created_at
            stale = age > timedelta(days=self.config.max_age_days)
            decided = arms(confidence, dissimilarity, keys, stale=stale,
                           control_share=float(flags.get("ml.control_share", 0.2)),
                           ood_max=self.config.ood_max_dissimilarity,
                           threshold=payoff.for_symbols(section, candidates["symbol"].tolist(), self.config.costs,
                                                        floor=float(flags.get("ml.min_confidence", 0.0))),
                           veto=bool(flags.get("ml.veto", False)), enabled=bool(flags.get("ml.enabled", False)))
            for i, symbol in enumerate(candidates["symbol"]):
                arm, mult, veto = decided[i]
                self.counters["scored"] += 1
                self.counters[arm] += 1
                values = {k: (None if not np.isfinite(v) else round(float(v), 8))
                          for k, v in feats.iloc[i].items()}
                verdicts[(name, str(symbol))] = MlVerdict(
                    confidence=float(np.clip(confidence[i], 0.0, 1.0)), model_version=loaded.version, arm=arm,
                    size_multiplier=mult, veto=veto, dissimilarity=float(dissimilarity[i]), features=values)
        return verdicts

    def record(self, rows: Sequence[tuple[Decision, MlVerdict, str | None]]) -> None:
        """One `ml_predictions` row per scored candidate, and the `ml` heartbeat with the counts."""
        with self.connect() as conn:
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into ml_predictions (model_version, signal_id, strategy, exchange, symbol, candle_ts,"
                    " confidence, features, arm, size_multiplier, dissimilarity, vetoed)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [(v.model_version, sid, d.strategy, d.exchange, d.symbol, d.candle_close, v.confidence,
                      Jsonb(dict(v.features)), v.arm, v.size_multiplier, v.dissimilarity, v.veto)
                     for d, v, sid in rows])
            for _, v, _ in rows:
                self.unchecked[v.model_version] += 1
            self.check_drift(conn)
            conn.execute("select heartbeat('ml', %s)", (Jsonb(self.progress()),))

    def check_drift(self, conn: psycopg.Connection) -> None:
        """Measure each active model's drift when due; demote one past the level (`ml.drift`)."""
        params = self.config.drift
        for strategy, loaded in list(self.models.items()):
            if strategy in self.drift and self.unchecked[loaded.version] < params.check_every:
                continue
            rows = conn.execute("select confidence, features from ml_predictions where model_version = %s"
                                " order by id desc limit %s", (loaded.version, params.window)).fetchall()
            if not rows:
                continue
            self.unchecked[loaded.version] = 0
            scores, features = live_window(rows, loaded.model.drift.features)
            reading = ml_drift.measure(loaded.model.drift, scores, features)
            summary = {"version": loaded.version, **reading.summary(), "level": params.level}
            self.drift[strategy] = summary
            registry.record_drift(conn, loaded.version, summary)
            reason = ml_drift.demotion(reading, level=params.level, min_predictions=params.min_predictions)
            if reason is None or not params.demote:
                continue
            if registry.demote(conn, loaded.version, actor="drift", reason=reason, reading=summary):
                self.counters["demoted"] += 1
                logger.error("model demoted", extra={"strategy": strategy, "version": loaded.version,
                                                    "reason": reason})
            self.demoted[strategy] = {"version": loaded.version, "reason": reason}
            del self.models[strategy]

    def progress(self) -> dict[str, Any]:
        too_old = timedelta(days=self.config.max_age_days)
        now = self.wall_clock()
        return {"models": {s: m.version for s, m in self.models.items()}, "cycles": self.counters["cycles"],
                "stale_models": sorted(m.version for m in self.models.values() if now - m.created_at > too_old),
                "scored": self.counters["scored"],
                "boosted": self.counters["boosted"], "control": self.counters["control"],
                "ood": self.counters["ood"], "stale": self.counters["stale"],
                "refused_models": dict(self.problems), "drift": dict(self.drift),
                "demoted_models": dict(self.demoted)}


def live_window(rows: Sequence[tuple[float, Mapping[str, Any] | None]],
                names: Sequence[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(scores, feature -> values) of `ml_predictions` rows (confidence, features); a value stored as null
    (missing, or not finite) reads as NaN."""
    scores = np.array([float(r[0]) for r in rows], dtype=np.float64)
    features = {name: np.array([np.nan if (v := (r[1] or {}).get(name)) is None else float(v) for r in rows],
                               dtype=np.float64) for name in names}
    return scores, features
