"""One evaluation pass, and the schedule that runs it beside the scan loop.

A pass: the active champion and its variations -> decisions on new scans -> outcomes whose horizon passed
-> CHAMPION's calibration against real trades -> statistics per window -> a recommendation per strategy
(or why none) -> applied when `shadow.apply` is on -> the rollback monitor. The scheduler runs passes in
its own thread with its own connection, so a slow pass never delays a scan; a failed pass is logged and
the next one runs on time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from controller.scan.strategy_params import StrategiesConfig
from shadow.apply import (
    ApplyRefused,
    active_config,
    applied_times,
    apply,
    monitor,
    params_json,
    with_params,
    write_recommendation,
)
from shadow.compare import statistics
from shadow.evaluate import (
    EvaluationReport,
    Progress,
    calibrate,
    record_decisions,
    resolve_pending,
    sync_variations,
)
from shadow.recommend import Calibration, NoRecommendation, Recommendation, recommend
from shadow.variations import CHAMPION, PREVIOUS, Variation, VariationsFile, build

logger = logging.getLogger(__name__)


@dataclass
class PassReport:
    at: datetime
    evaluation: EvaluationReport
    recommendations: dict[str, Recommendation | NoRecommendation] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)  # strategy -> recommendation id
    applied: dict[int, int] = field(default_factory=dict)  # recommendation id -> version
    rolled_back: list[tuple[int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def data_time(conn: psycopg.Connection) -> datetime | None:
    """The end of the newest scanned candle: "now" for the data (replayed data lives in its own time)."""
    return conn.execute("select max(candle_ts) from scans").fetchone()[0]


def regime_changes(conn: psycopg.Connection, since: datetime, until: datetime) -> list[datetime]:
    """When the regime the scans recorded differed from the one before (scan time)."""
    rows = conn.execute("select candle_ts, features ->> 'regime' from scans where candle_ts >= %s and candle_ts <= %s"
                        " and features ? 'regime' order by candle_ts", (since, until)).fetchall()
    changes, last = [], None
    for at, regime in rows:
        if last is not None and regime != last:
            changes.append(at)
        last = regime
    return changes


def previous_variations(conn: psycopg.Connection, conf: StrategiesConfig, spec: VariationsFile,
                        now: datetime) -> list[Variation]:
    """PREVIOUS per strategy whose applied change is in its monitoring window and still active: the
    parameters before it, replayed beside the applied ones on the same candidates (the rollback monitor's
    live shadow, so the market's drift cancels)."""
    rows = conn.execute(
        "select r.strategy, sp.params from recommendations r"
        " join dashboard_active_strategy_params a on a.strategy = r.strategy and a.params_hash = r.to_params_hash"
        " join strategy_params sp on sp.strategy = r.strategy and sp.params_hash = r.from_params_hash"
        " where r.status = 'applied' and r.rollback_of is null and r.decided_at >= %s and r.decided_at <= %s",
        (now - timedelta(hours=spec.rollback.monitor_h), now)).fetchall()
    sections = dict(conf.items())
    return [Variation(PREVIOUS, strategy, with_params(sections[strategy], params), spec.settings.champion_ml_threshold)
            for strategy, params in rows if strategy in sections and sections[strategy].enabled]


def run_pass(conn: psycopg.Connection, conf: StrategiesConfig, spec: VariationsFile, flags: Mapping[str, Any],
             now: datetime, *, recommend_now: bool = True, progress: Progress | None = None) -> PassReport:
    """One evaluation pass at `now` (scan time). Commits as it goes, so a failure keeps what was done."""
    report = PassReport(now, EvaluationReport())
    champion = active_config(conn, conf)
    variations = build(spec, champion) + previous_variations(conn, conf, spec, now)
    ids = sync_variations(conn, variations, {n: s.description for n, s in spec.variations.items()})
    conn.commit()
    since = now - timedelta(hours=max(spec.settings.windows_h))
    last = conn.execute("select max(candle_ts) from shadow_outcomes").fetchone()[0]
    if last is not None:
        since = max(since, last - timedelta(days=1))  # re-deciding a day is idempotent and catches late scans
    record_decisions(conn, champion, variations, ids, since, now + timedelta(microseconds=1), report.evaluation)
    conn.commit()
    resolve_pending(conn, now, spec.settings, report.evaluation, progress)
    conn.commit()
    calibration = calibrate(conn, spec.settings, report.evaluation)
    conn.commit()
    evidence = statistics(conn, variations, ids, now, spec.settings, report.evaluation)
    conn.commit()
    if not recommend_now:
        return report
    applied = applied_times(conn, now - timedelta(hours=24))
    changes = regime_changes(conn, now - timedelta(hours=spec.recommend.regime_stable_h), now)
    for strategy, section in champion.items():
        if not section.enabled:
            continue
        mine = {v.name: v for v in variations if v.strategy == strategy and v.name not in (CHAMPION, PREVIOUS)}
        tested = [e for e in evidence.get((strategy, spec.recommend.window_h), []) if e.name in mine]
        result = recommend(strategy, section, mine, tested,
                           calibration.get(strategy, Calibration(0, None)), now=now, regime_changes=changes,
                           applied=applied, settings=spec.settings, config=spec.recommend)
        report.recommendations[strategy] = result
        if isinstance(result, NoRecommendation):
            continue
        same = conn.execute("select id from recommendations where strategy = %s and status = 'proposed'"
                            " and params = %s::jsonb", (strategy, json.dumps(params_json(result.section)))).fetchone()
        rec_id = same[0] if same else write_recommendation(conn, section, result)
        report.written[strategy] = rec_id
        conn.commit()
        if flags.get("shadow.apply", False):
            try:
                report.applied[rec_id] = apply(conn, rec_id, conf, flags, now,
                                               canary_share=spec.recommend.canary_share)
                applied.append(now)
            except ApplyRefused as exc:
                report.notes.append(str(exc))
            conn.commit()
    report.rolled_back = monitor(conn, conf, spec.rollback, now)
    conn.commit()
    return report


class Scheduler:
    """Runs `job` every `interval_s` in a daemon thread while `enabled()` says so; never blocks the caller."""

    def __init__(self, job: Callable[[], object], interval_s: float, enabled: Callable[[], bool],
                 name: str = "shadow-evaluator") -> None:
        self.job, self.interval_s, self.enabled = job, interval_s, enabled
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.runs = 0
        self.failures = 0
        self.last_error: str | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout_s)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                if not self.enabled():
                    continue
                self.job()
                self.runs += 1
            except Exception as exc:  # a failed pass is logged; the next runs on schedule
                self.failures += 1
                self.last_error = str(exc)
                logger.exception("shadow evaluation failed", extra={"error": str(exc)})
