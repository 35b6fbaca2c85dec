"""Health of every component, judged by progress, not by liveness.

A heartbeat row says when a component was last seen and when its progress last changed (`heartbeats` in
supabase/migrations/20260101000004_trading.sql). A component that still heartbeats but no longer gets anything done
(no new candle, a Hummingbot clock that stopped) is degraded, not healthy; one that went silent is down.
ML and shadow components whose flag is off are disabled, not down.

The judging is pure (`assess`: heartbeat rows, flags, market-data statistics and `now` in, a
`HealthReport` out); reading the database, logging the hourly and final reports and rendering tables
sit at the edges.
"""

from __future__ import annotations

import io
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import Field
from rich.console import Console
from rich.table import Table

from bridge.redaction import redact
from controller.config_base import Frozen

if TYPE_CHECKING:
    import psycopg

    from controller.scan.pipeline import CycleReport

logger = logging.getLogger(__name__)


class State(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    DOWN = "down"
    DISABLED = "disabled"  # switched off by a flag: neither healthy nor a problem


SEVERITY = {State.DISABLED: -1, State.HEALTHY: 0, State.DEGRADED: 1, State.DOWN: 2}


class Kind(StrEnum):
    CONTROLLER = "controller"
    MARKET_DATA = "market_data"
    STORE = "store"
    HUMMINGBOT = "hummingbot"
    ML = "ml"
    SHADOW = "shadow"
    SUPERVISOR = "supervisor"
    OTHER = "other"


# --- configuration ------------------------------------------------------------------------------------

class Limits(Frozen):
    interval_s: float = Field(gt=0, description="how often the component heartbeats (and should progress)")
    progress_s: float | None = Field(None, gt=0, description="longest time without progress; null: interval_s")

    def progress_limit_s(self) -> float:
        return self.progress_s if self.progress_s is not None else self.interval_s


class HealthConfig(Frozen):
    """The `health` section: expected intervals per component kind and report settings."""

    controller: Limits = Limits(interval_s=300)  # one scan per base-timeframe close (5m)
    hummingbot: Limits = Limits(interval_s=30)   # heartbeat_interval_s of conf_signal_executor.yml
    ml: Limits = Limits(interval_s=600)          # SEED_SYSTEM.md §6: ml_analyzer 10 min
    shadow: Limits = Limits(interval_s=600)      # SEED_SYSTEM.md §6: shadow 10 min
    market_data: Limits = Limits(interval_s=300)
    other: Limits = Limits(interval_s=600)
    grace_s: float = Field(30.0, ge=0, description="slack added to every limit (scan duration, clock skew)")
    down_after: float = Field(2.0, ge=1, description="no heartbeat for this many intervals: down")
    candle_interval_s: float | None = Field(None, gt=0, description="controller candle spacing; null: interval_s")
    stale_candles: float = Field(2.0, ge=1, description="controller's last candle older than this many: degraded")
    expected_hummingbot: tuple[str, ...] = Field((), description="consumers that must heartbeat, e.g. hummingbot-1")
    min_calls: int = Field(10, ge=1, description="calls an endpoint needs before its success rate is judged")
    min_success_rate: float = Field(0.8, ge=0, le=1, description="an endpoint below this: its source is degraded")
    recent_errors: int = Field(10, ge=0, le=1000, description="errors listed in a report")
    report_every_s: float = Field(3600.0, ge=60, description="how often the full report is logged")

    def limits(self, kind: Kind) -> Limits:
        return {Kind.CONTROLLER: self.controller, Kind.HUMMINGBOT: self.hummingbot, Kind.ML: self.ml,
                Kind.SHADOW: self.shadow, Kind.MARKET_DATA: self.market_data}.get(kind, self.other)


# --- inputs and outputs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Heartbeat:
    """One row of `heartbeats`."""

    component: str
    progress: Mapping[str, Any]
    first_seen: datetime
    last_seen: datetime
    last_progress_at: datetime


@dataclass(frozen=True)
class ComponentHealth:
    name: str
    kind: Kind
    state: State
    reasons: tuple[str, ...] = ()
    last_seen: datetime | None = None
    last_progress_at: datetime | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # figures shown beside the reasons that do not change the state


@dataclass(frozen=True)
class EndpointHealth:
    """Statistics of one endpoint of one market-data source (from `ResilientCaller.health()`)."""

    source: str
    endpoint: str
    breaker: str
    calls: int
    successes: int
    failures: int
    rate_limit_hits: int
    refused: int
    calls_per_minute: float
    failures_by_kind: Mapping[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_error_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        done = self.successes + self.failures
        return self.successes / done if done else None


@dataclass(frozen=True)
class RecentError:
    at: datetime | None
    where: str
    message: str


@dataclass(frozen=True)
class HealthReport:
    at: datetime
    components: tuple[ComponentHealth, ...]
    endpoints: tuple[EndpointHealth, ...] = ()
    errors: tuple[RecentError, ...] = ()
    started_at: datetime | None = None

    @property
    def state(self) -> State:
        """The worst state of the components that are not disabled."""
        counted = [c.state for c in self.components if c.state is not State.DISABLED]
        return max(counted, key=SEVERITY.__getitem__, default=State.HEALTHY)

    @property
    def uptime_s(self) -> float | None:
        return (self.at - self.started_at).total_seconds() if self.started_at else None

    def exit_code(self) -> int:
        """0 when every counted component is healthy, 1 otherwise."""
        return 0 if self.state is State.HEALTHY else 1

    def states(self) -> dict[str, State]:
        return {c.name: c.state for c in self.components}

    def get(self, name: str) -> ComponentHealth | None:
        return next((c for c in self.components if c.name == name), None)


@dataclass(frozen=True)
class DatabaseSnapshot:
    now: datetime  # the database's clock: heartbeat times were written with it
    heartbeats: tuple[Heartbeat, ...]
    flags: Mapping[str, Any]


# --- judging ------------------------------------------------------------------------------------------

def component_kind(name: str, controller_name: str = "controller") -> Kind:
    """The kind of a heartbeat component from its name (`hummingbot:<consumer>`, `ml`, `shadow:x`, ...)."""
    if name == controller_name or name.startswith(f"{controller_name}:"):  # a sharded one: controller:<holder>
        return Kind.CONTROLLER
    prefix = name.split(":", 1)[0]
    try:
        kind = Kind(prefix)
    except ValueError:
        return Kind.OTHER
    return Kind.OTHER if kind in (Kind.CONTROLLER, Kind.STORE) else kind


def ago(seconds: float) -> str:
    """A duration in words a person reads at a glance: 45 s, 12 min, 3.5 h, 2.0 d."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def assess_heartbeat(heartbeat: Heartbeat, now: datetime, config: HealthConfig, kind: Kind,
                     flags: Mapping[str, Any] | None = None) -> ComponentHealth:
    """The state of one heartbeating component: down when silent, degraded when late or not progressing."""
    flags = flags or {}
    limits = config.limits(kind)
    seen_age = (now - heartbeat.last_seen).total_seconds()
    progress_age = (now - heartbeat.last_progress_at).total_seconds()
    down_limit = config.down_after * limits.interval_s + config.grace_s
    late_limit = limits.interval_s + config.grace_s
    progress_limit = limits.progress_limit_s() + config.grace_s
    common = {"last_seen": heartbeat.last_seen, "last_progress_at": heartbeat.last_progress_at,
              "detail": dict(heartbeat.progress)}

    disabled = _disabled_by_flag(kind, flags)
    if disabled:
        running = f"; still heartbeating ({ago(seen_age)} ago)" if seen_age <= late_limit else ""
        return ComponentHealth(heartbeat.component, kind, State.DISABLED, (disabled + running,), **common)
    if seen_age > down_limit:
        return ComponentHealth(heartbeat.component, kind, State.DOWN,
                               (f"no heartbeat for {ago(seen_age)} (limit {ago(down_limit)})",), **common)
    reasons = []
    if seen_age > late_limit:
        reasons.append(f"heartbeat late: last {ago(seen_age)} ago, expected every {ago(limits.interval_s)}")
    if progress_age > progress_limit:
        reasons.append(f"alive but no progress for {ago(progress_age)} (limit {ago(progress_limit)})")
    if kind is Kind.CONTROLLER:
        reasons += _controller_progress(heartbeat.progress, now, config, flags)
    elif kind is Kind.HUMMINGBOT:
        breaker = heartbeat.progress.get("queue_breaker")
        if breaker not in (None, "closed"):
            reasons.append(f"queue circuit breaker {breaker}")
    notes: tuple[str, ...] = ()
    if kind is Kind.ML:
        ml_reasons, notes = _ml_progress(heartbeat.progress)
        reasons += ml_reasons
    state = State.DEGRADED if reasons else State.HEALTHY
    return ComponentHealth(heartbeat.component, kind, state, tuple(reasons), notes=notes, **common)


def _ml_progress(progress: Mapping[str, Any]) -> tuple[list[str], tuple[str, ...]]:
    """What the ML booster's heartbeat says: an active model refused (hash or features), stale (older than
    ml.max_age_days, so its scores have no effect) or demoted for drift degrades it; the arm counts,
    out-of-distribution and stale included, and each model's latest drift reading are shown as figures."""
    reasons = [f"active model of {strategy} refused: {why}"
               for strategy, why in sorted(dict(progress.get("refused_models") or {}).items())]
    reasons += [f"model {version} is stale: its scores have no effect"
                for version in progress.get("stale_models") or ()]
    reasons += [f"model {d.get('version')} of {strategy} demoted: {d.get('reason')}"
                for strategy, d in sorted(dict(progress.get("demoted_models") or {}).items())]
    drift = [_drift_note(strategy, dict(reading))
             for strategy, reading in sorted(dict(progress.get("drift") or {}).items())]
    if "scored" not in progress:
        return reasons, tuple(drift)
    counts = ", ".join(f"{arm} {int(progress.get(arm) or 0)}" for arm in ("boosted", "control", "ood", "stale"))
    return reasons, (f"scored {int(progress.get('scored') or 0)}: {counts}", *drift)


def _drift_note(strategy: str, reading: Mapping[str, Any]) -> str:
    """`drift dca: score PSI 0.031 over 500 live (level 0.25); rsi 0.12, adx 0.08`: the model's latest
    reading (`ml.drift`), the features that moved most after it."""
    moved = ", ".join(f"{name} {float(value):.2f}" for name, value in reading.get("features") or ())
    return (f"drift {strategy}: score PSI {float(reading.get('score_psi') or 0):.3f} over {int(reading.get('n') or 0)}"
            f" live (level {float(reading.get('level') or 0):g})" + (f"; {moved}" if moved else ""))


def _disabled_by_flag(kind: Kind, flags: Mapping[str, Any]) -> str | None:
    if kind in (Kind.ML, Kind.SHADOW) and flags.get(f"{kind.value}.enabled") is not True:
        return f"{kind.value}.enabled is false"
    return None


def _controller_progress(progress: Mapping[str, Any], now: datetime, config: HealthConfig,
                         flags: Mapping[str, Any]) -> list[str]:
    """What the controller's progress says: a scan must bring a new candle every candle interval."""
    if flags.get("trading.enabled", True) is False or flags.get("signals.enabled", True) is False:
        return []  # scans are skipped on purpose: no candle is expected
    candle_s = config.candle_interval_s or config.controller.interval_s
    limit = config.stale_candles * candle_s + config.grace_s
    reasons = []
    if progress.get("regime") == "UNKNOWN":  # entries blocked until the regime market has fresh candles
        reasons.append(str(progress.get("regime_reason") or "regime unknown"))
    last_candle = _parse_time(progress.get("last_candle"))
    if last_candle is None:
        return [*reasons, "no candle in the last scan"] if progress.get("cycles") else reasons
    # A replay's candles are as old as its simulated clock: judge them against the scan time, not today.
    scanned = _parse_time(progress.get("last_scan_at")) if progress.get("replay") else None
    age = ((scanned or now) - last_candle).total_seconds()
    if age > limit:
        reasons.append(f"no new candle for {ago(age)} (limit {config.stale_candles:g} candles = {ago(limit)})")
    return reasons


def assess_missing(name: str, kind: Kind, flags: Mapping[str, Any] | None = None) -> ComponentHealth:
    """A component that must heartbeat and never did (or whose row is gone)."""
    disabled = _disabled_by_flag(kind, flags or {})
    if disabled:
        return ComponentHealth(name, kind, State.DISABLED, (disabled,))
    return ComponentHealth(name, kind, State.DOWN, ("no heartbeat ever recorded",))


def flatten_sources(health: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """`ResilientCaller.health()` dicts by source name, from either that dict or a `FailoverSource.health()`."""
    if "endpoints" in health:
        return {str(health.get("dependency", "source")): health}
    found: dict[str, Mapping[str, Any]] = {}
    for role in ("primary", "backup"):
        inner = health.get(role)
        if isinstance(inner, Mapping):
            found.update(flatten_sources(inner))
    return found


def endpoint_health(source: str, health: Mapping[str, Any]) -> list[EndpointHealth]:
    """One `EndpointHealth` per endpoint of a `ResilientCaller.health()` dict."""
    result = []
    for endpoint, stats in sorted((health.get("endpoints") or {}).items()):
        last = stats.get("last_error") or {}
        result.append(EndpointHealth(
            source=source, endpoint=endpoint, breaker=str((stats.get("breaker") or {}).get("state", "closed")),
            calls=int(stats.get("calls", 0)), successes=int(stats.get("successes", 0)),
            failures=int(stats.get("failures_total", 0)), rate_limit_hits=int(stats.get("rate_limit_hits", 0)),
            refused=int(stats.get("refused", 0)), calls_per_minute=float(stats.get("calls_per_minute", 0.0)),
            failures_by_kind=dict(stats.get("failures") or {}),
            last_error=redact(str(last["message"])) if last.get("message") else None,
            last_error_at=_parse_time(last.get("at")),
        ))
    return result


def assess_source(name: str, endpoints: Sequence[EndpointHealth], config: HealthConfig,
                  previous: Sequence[EndpointHealth] = ()) -> ComponentHealth:
    """A market-data source: down when every breaker is open, degraded when one is or calls mostly fail.

    The success rate is judged over the calls since `previous` (the last report) when there were
    enough of them, else over the source's lifetime, so an outage an hour ago stops counting.
    """
    component = f"market_data:{name}"
    detail = {"endpoints": len(endpoints), "calls": sum(e.calls for e in endpoints)}
    if not endpoints:
        return ComponentHealth(component, Kind.MARKET_DATA, State.HEALTHY, ("no calls yet",), detail=detail)
    reasons = []
    not_closed = [e for e in endpoints if e.breaker != "closed"]
    if not_closed:
        reasons.append("circuit breaker " + ", ".join(f"{e.endpoint} {e.breaker}" for e in not_closed))
    before = {e.endpoint: e for e in previous}
    for e in endpoints:
        successes, failures = e.successes, e.failures
        old = before.get(e.endpoint)
        if old is not None and (e.successes - old.successes) + (e.failures - old.failures) >= config.min_calls:
            successes, failures = e.successes - old.successes, e.failures - old.failures
        done = successes + failures
        if done >= config.min_calls and successes / done < config.min_success_rate:
            reasons.append(f"{e.endpoint}: {successes / done:.0%} of {done} calls succeeded")
    if len(not_closed) == len(endpoints) and any(e.breaker == "open" for e in not_closed):
        state = State.DOWN
    else:
        state = State.DEGRADED if reasons else State.HEALTHY
    return ComponentHealth(component, Kind.MARKET_DATA, state, tuple(reasons), detail=detail)


def assess(heartbeats: Iterable[Heartbeat], now: datetime, config: HealthConfig, *,
           flags: Mapping[str, Any] | None = None, sources: Mapping[str, Mapping[str, Any]] | None = None,
           store_error: str | None = None, controller_name: str = "controller",
           previous: HealthReport | None = None, started_at: datetime | None = None,
           errors: Iterable[RecentError] = (), extra: Iterable[ComponentHealth] = ()) -> HealthReport:
    """Judge every component at `now`.

    `heartbeats` are the rows of the table; `flags` the live flag values; `sources` the market-data
    health dicts by name (`CcxtSource.health()` or `FailoverSource.health()`); `store_error` why the
    store could not be read, if it could not; `extra` components judged elsewhere (the supervisor's).
    """
    flags = dict(flags or {})
    rows = {h.component: h for h in heartbeats}
    components: list[ComponentHealth] = []
    if store_error is not None:
        components.append(ComponentHealth("store", Kind.STORE, State.DOWN, (redact(store_error),)))
    else:
        components.append(ComponentHealth("store", Kind.STORE, State.HEALTHY, (), detail={"heartbeats": len(rows)}))
        expected = {controller_name: Kind.CONTROLLER, "ml": Kind.ML, "shadow": Kind.SHADOW}
        expected.update({f"hummingbot:{name}": Kind.HUMMINGBOT for name in config.expected_hummingbot})
        for name, kind in expected.items():
            if name in rows:
                continue
            # ML, shadow or sharded controllers heartbeating under a longer name (ml:trainer, controller:<holder>)
            # count as present.
            if kind in (Kind.ML, Kind.SHADOW, Kind.CONTROLLER) and any(
                    component_kind(r, controller_name) is kind for r in rows):
                continue
            components.append(assess_missing(name, kind, flags))
        for name, row in sorted(rows.items()):
            components.append(assess_heartbeat(row, now, config, component_kind(name, controller_name), flags))

    endpoints: list[EndpointHealth] = []
    old_endpoints = previous.endpoints if previous is not None else ()
    for outer in sorted((sources or {}).items()):
        for source, health in sorted(flatten_sources(outer[1]).items()):
            mine = endpoint_health(source, health)
            endpoints += mine
            components.append(assess_source(source, mine, config, [e for e in old_endpoints if e.source == source]))
    components += list(extra)

    recent = list(errors) + [RecentError(e.last_error_at, f"{e.source}/{e.endpoint}", e.last_error)
                             for e in endpoints if e.last_error]
    recent.sort(key=lambda r: r.at or datetime.min.replace(tzinfo=UTC), reverse=True)
    order = list(Kind)
    components.sort(key=lambda c: (order.index(c.kind), c.name))
    return HealthReport(now, tuple(components), tuple(endpoints), tuple(recent[:config.recent_errors]), started_at)


# --- the database edge --------------------------------------------------------------------------------

def read_database(conn: psycopg.Connection, flag_defaults: Mapping[str, Any] | None = None) -> DatabaseSnapshot:
    """Heartbeats, live flags (over `flag_defaults`) and the database's clock."""
    now = conn.execute("select now()").fetchone()[0]
    rows = conn.execute("select component, progress, first_seen, last_seen, last_progress_at "
                        "from heartbeats order by component").fetchall()
    flags = dict(flag_defaults or {})
    flags.update(dict(conn.execute("select name, value from flags").fetchall()))
    return DatabaseSnapshot(now, tuple(Heartbeat(*row) for row in rows), flags)


# --- rendering ----------------------------------------------------------------------------------------

STYLE = {State.HEALTHY: "green", State.DEGRADED: "yellow", State.DOWN: "bold red", State.DISABLED: "dim"}


def _when(at: datetime | None, now: datetime) -> str:
    return f"{ago((now - at).total_seconds())} ago" if at else "-"


def render_table(report: HealthReport) -> Table:
    """The components: state, when last seen and last progressing, and why."""
    uptime = f", up {ago(report.uptime_s)}" if report.uptime_s is not None else ""
    table = Table(title=f"health at {report.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC: {report.state.value}{uptime}")
    for column in ("component", "kind", "state", "last seen", "last progress", "why"):
        table.add_column(column, overflow="fold")
    for c in report.components:
        table.add_row(c.name, c.kind.value, f"[{STYLE[c.state]}]{c.state.value}[/]", _when(c.last_seen, report.at),
                      _when(c.last_progress_at, report.at), "; ".join((*c.reasons, *c.notes)) or "-")
    return table


def render_endpoints(report: HealthReport) -> Table:
    """Per-endpoint API statistics: breaker, calls, success rate, call rate, rate-limit hits, last error."""
    table = Table(title="market data endpoints")
    for column in ("source", "endpoint", "breaker", "calls", "success", "calls/min", "rate limited", "refused",
                   "last error"):
        table.add_column(column, overflow="fold")
    for e in report.endpoints:
        rate = f"{e.success_rate:.1%}" if e.success_rate is not None else "-"
        table.add_row(e.source, e.endpoint, e.breaker, str(e.calls), rate, f"{e.calls_per_minute:.1f}",
                      str(e.rate_limit_hits), str(e.refused), e.last_error or "-")
    return table


def render_errors(report: HealthReport) -> Table:
    table = Table(title="recent errors")
    for column in ("when", "where", "error"):
        table.add_column(column, overflow="fold")
    for r in report.errors:
        table.add_row(f"{r.at:%Y-%m-%d %H:%M:%S}" if r.at else "-", r.where, r.message)
    return table


def render_text(report: HealthReport, width: int = 160) -> str:
    """Every table of the report as plain text (for the log)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, no_color=True, highlight=False, emoji=False)
    console.print(render_table(report))
    if report.endpoints:
        console.print(render_endpoints(report))
    if report.errors:
        console.print(render_errors(report))
    return buffer.getvalue().rstrip()


# --- the hourly and final reports ---------------------------------------------------------------------

def _utc_now() -> datetime:
    return datetime.now(UTC)


class HealthReporter:
    """Checks health on demand, logs the full report every `report_every_s` and once more at shutdown.

    `read_database` returns a `DatabaseSnapshot` (it may raise: the store is then reported down);
    `sources` returns the market-data health dicts by name; `extra` returns components judged elsewhere
    (e.g. `Supervisor.components()`); each listener (alerts, metrics) gets every report, and a listener
    that raises is logged and skipped.
    """

    def __init__(self, config: HealthConfig, read_database: Callable[[], DatabaseSnapshot], *,
                 sources: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None,
                 extra: Callable[[], Iterable[ComponentHealth]] | None = None,
                 listeners: Sequence[Callable[[HealthReport], None]] = (),
                 controller_name: str = "controller", clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config
        self.read_database = read_database
        self.sources = sources
        self.extra = extra
        self.listeners = list(listeners)
        self.controller_name = controller_name
        self.clock = clock
        self.started_at = clock()
        self.last: HealthReport | None = None
        self._last_logged: datetime | None = None
        self._errors: deque[RecentError] = deque(maxlen=max(1, config.recent_errors))
        self._cycles = 0
        self._scan_s = 0.0
        self._emitted = 0

    def observe(self, cycle: CycleReport) -> None:
        """Count a scan cycle and keep its failures as recent errors."""
        self._cycles += 1
        self._scan_s += cycle.duration_s
        self._emitted += cycle.emitted
        for where, message in sorted(cycle.failures.items()):
            self._errors.append(RecentError(cycle.at, where, redact(message)))

    def check(self, now: datetime | None = None) -> HealthReport:
        """Judge every component now and hand the report to the listeners."""
        now = now or self.clock()
        heartbeats: tuple[Heartbeat, ...] = ()
        flags: Mapping[str, Any] = {}
        store_error = None
        at = now
        try:
            snapshot = self.read_database()
            heartbeats, flags, at = snapshot.heartbeats, snapshot.flags, snapshot.now
        except Exception as exc:  # an unreachable store is a finding of the report, not a crash of the loop
            store_error = f"cannot read heartbeats: {type(exc).__name__}: {exc}"
        sources = self._safely(self.sources, {}) if self.sources else {}
        extra = self._safely(self.extra, []) if self.extra else []
        report = assess(heartbeats, at, self.config, flags=flags, sources=sources, store_error=store_error,
                        controller_name=self.controller_name, previous=self.last, started_at=self.started_at,
                        errors=list(self._errors), extra=extra)
        self.last = report
        for listener in self.listeners:
            try:
                listener(report)
            except Exception:
                logger.exception("health listener failed", extra={"listener": getattr(listener, "__name__", "?")})
        return report

    def maybe_report(self, now: datetime | None = None) -> HealthReport | None:
        """Check now; log the full report if the last one is `report_every_s` old. Returns the logged report."""
        now = now or self.clock()
        report = self.check(now)
        if self._last_logged is not None and (now - self._last_logged).total_seconds() < self.config.report_every_s:
            return None
        self._last_logged = now
        self._log("health report", report)
        return report

    def final_report(self, now: datetime | None = None) -> HealthReport:
        """Check and log the report once more, with this run's totals (call it at shutdown)."""
        report = self.check(now)
        self._log("final health report", report)
        return report

    def _log(self, title: str, report: HealthReport) -> None:
        average = self._scan_s / self._cycles if self._cycles else 0.0
        logger.info(f"{title}\n{render_text(report)}",
                    extra={"state": report.state.value, "uptime_s": round(report.uptime_s or 0.0),
                           "cycles": self._cycles, "avg_scan_s": round(average, 3), "signals_emitted": self._emitted,
                           "down": ",".join(c.name for c in report.components if c.state is State.DOWN) or "-",
                           "degraded": ",".join(c.name for c in report.components
                                                if c.state is State.DEGRADED) or "-"})

    def _safely[T](self, fn: Callable[[], T], default: T) -> T:
        try:
            return fn()
        except Exception:
            logger.exception("health input failed", extra={"input": getattr(fn, "__name__", "?")})
            return default
