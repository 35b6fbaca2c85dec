"""Composition root: wires the real parts (store, market data, strategies, flags) into a Scanner."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from controller.config import ControllerConfig, Secrets, load_model
from controller.config_base import ConfigError
from controller.data import db, flags
from controller.data.market_data import (
    CcxtSource,
    FailoverSource,
    MarketDataSource,
    ReplaySource,
    SimClock,
    normalize_symbol,
    timeframe_seconds,
)
from controller.data.shard_leases import ShardLeases
from controller.data.shards import ShardSpec
from controller.data.storage import Store, open_store
from controller.ops.alerts import Alerter, MetricsServer
from controller.ops.health import DatabaseSnapshot, HealthReporter, read_database
from controller.ops.supervisor import Restarter, Supervisor
from controller.scan.pipeline import CycleReport, Scanner
from controller.scan.strategy_params import StrategiesConfig, load_strategies
from ml.retrain import Retrainer
from ml.scoring import MlScorer
from shadow.apply import ActiveParams
from shadow.service import Scheduler, run_pass
from shadow.variations import DEFAULT_VARIATIONS
from shadow.variations import build as build_variations
from shadow.variations import load as load_variations


@dataclass
class Wiring:
    scanner: Scanner
    store: Store
    clock: SimClock | None  # set when replaying
    strategies: StrategiesConfig
    leases: ShardLeases | None = None  # set when sharded (`run --shard`)

    def base_timeframe_s(self) -> int:
        """The shortest timeframe of the enabled strategies: the loop scans at each of its closes."""
        return min(timeframe_seconds(s.timeframe) for _, s in self.strategies.items() if s.enabled)


def live_source(config: ControllerConfig) -> MarketDataSource:
    """The configured exchange through ccxt, failing over to the backup exchange while it is down."""
    primary = CcxtSource(config.universe.exchange)
    if not config.universe.backup_exchange:
        return primary
    return FailoverSource(primary, CcxtSource(config.universe.backup_exchange))


def replay_exchange(source: ReplaySource) -> str:
    """The exchange the recorded files come from (their names say it); several need --exchange."""
    exchanges = source.exchanges()
    if not exchanges:
        raise ConfigError(f"{source.folder} holds no recorded candles: expected files named "
                          "<exchange>_<BASE-QUOTE>_<timeframe>.csv, e.g. binance_BTC-USDT_5m.csv")
    if len(exchanges) != 1:
        found = ", ".join(exchanges) or "none"
        raise ConfigError(f"{source.folder} holds candles of {len(exchanges)} exchanges ({found}): "
                          "pass --exchange to say which to replay")
    return exchanges[0]


def replay_universe(source: ReplaySource, exchange: str, symbols: tuple[str, ...] | None) -> tuple[str, ...]:
    """The pairs to replay: all the folder holds for the exchange, or the ones asked for if it holds them."""
    everything = ReplaySource(source.folder, None, clock=source.clock)
    if exchange not in everything.exchanges():
        found = ", ".join(everything.exchanges()) or "none"
        raise ConfigError(f"--exchange {exchange}: {source.folder} holds no candles of that exchange "
                          f"(it holds: {found})")
    if not symbols:
        return tuple(source.symbols())
    try:
        asked = tuple(normalize_symbol(s) for s in symbols)
    except ValueError as exc:
        raise ConfigError(f"--symbols: {exc}") from None
    unknown = [s for s in asked if s not in source.symbols()]
    if unknown:
        raise ConfigError(f"--symbols: {', '.join(unknown)} not recorded for {exchange} in {source.folder} "
                          f"(it holds: {', '.join(source.symbols())})")
    return asked


def build(config: ControllerConfig, secrets: Secrets, *, replay: Path | None = None, exchange: str | None = None,
          start: datetime | None = None, symbols: tuple[str, ...] | None = None, shard: ShardSpec | None = None,
          holder: str | None = None) -> Wiring:
    """A Scanner on the live exchange, or on recorded candles (`replay`) with a simulated clock at `start`;
    with `shard`, of the symbols of the shards it holds a lease on (as `holder`)."""
    strategy_config = load_strategies(config.resolve(config.loop.strategies_file),
                                      config.resolve(config.loop.tiers_file))
    flag_specs = load_model(flags.FlagsFile, config.resolve(config.flags.file))
    defaults = {name: spec.default for name, spec in flag_specs.flags.items()}
    clock: SimClock | None = None
    if replay is not None:  # the recordings are checked before anything connects or writes
        clock = SimClock(start or datetime.now(UTC))
        recorded = ReplaySource(replay, exchange, clock=clock)
        exchange_name = exchange or replay_exchange(recorded)
        universe = replay_universe(recorded, exchange_name, symbols)
        recorded.check(universe)
        source: MarketDataSource = recorded
        now: Callable[[], datetime] = clock.now
    else:
        source = live_source(config)
        exchange_name = config.universe.exchange
        universe = symbols or config.universe.symbols
        now = lambda: datetime.now(UTC)  # noqa: E731
    store = open_store(config.database, secrets)
    # The active strategy_params version needs SQL; a Supabase-URL-only store scans with the conf values.
    direct_sql = secrets.database_url is not None or (config.database.embedded and not secrets.supabase_url)
    active = ActiveParams(lambda: db.connect(config.database, secrets)) if direct_sql else None
    leases = None
    if shard is not None:
        if not direct_sql:
            raise ConfigError("--shard needs DATABASE_URL (the leases are SQL functions): a Supabase URL and key "
                              "alone cannot hold them")
        leases = ShardLeases(lambda: db.connect(config.database, secrets), shard,
                             holder or f"{socket.gethostname()}-{os.getpid()}", config.loop.shard_lease_s)
    scanner = Scanner(config=config, strategy_config=strategy_config, store=store, source=source,
                      exchange=exchange_name, symbols=universe, clock=now, flag_defaults=defaults,
                      simulated=clock is not None, params_source=active,
                      scorer=ml_scorer(config, secrets, strategy_config, exchange_name), shards=leases)
    return Wiring(scanner, store, clock, strategy_config, leases)


def ml_scorer(config: ControllerConfig, secrets: Secrets, strategy_config: StrategiesConfig,
              exchange: str) -> MlScorer | None:
    """The ML booster for the scan (it acts only while the flag ml.enabled is on). It reads the registry and
    writes predictions over a direct Postgres connection: with only a Supabase URL and key there is none."""
    if secrets.database_url is None and not config.database.embedded:
        return None
    url = db.database_url(config.database, secrets)
    return MlScorer(lambda: psycopg.connect(url, connect_timeout=config.database.connect_timeout_s),
                    strategy_config, config.ml, exchange)


@dataclass
class Operations:
    """What runs beside the loop: the health reporter (hourly report, final report), alerts, metrics, supervisor."""

    reporter: HealthReporter
    alerter: Alerter
    metrics: MetricsServer | None
    supervisor: Supervisor
    last: CycleReport | None = None
    retrainer: Retrainer | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def on_cycle(self, report: CycleReport) -> None:
        self.last = report
        self.reporter.observe(report)
        self.supervisor.tick()
        self.reporter.maybe_report()

    def close(self) -> None:
        self.stop.set()  # the retrainer's thread ends at its next check
        self.reporter.final_report()
        self.alerter.close()  # the final report's alerts go out before the process ends
        if self.metrics is not None:
            self.metrics.stop()


def operations(wiring: Wiring, config: ControllerConfig, secrets: Secrets) -> Operations:
    """Health, alerts, metrics and self-healing for a running Scanner."""
    scanner = wiring.scanner

    def read_db() -> DatabaseSnapshot:
        with db.connect(config.database, secrets) as conn:
            return read_database(conn, scanner.flag_defaults)

    alerter = Alerter.from_env(config.alerts)
    metrics = MetricsServer.from_config(config.metrics, counters=lambda: scanner.counters)
    supervisor = Supervisor(config.supervisor,
                            on_event=lambda event: alerter.alert(f"supervisor:{event.component}", event.text()))
    ops_holder: list[Operations] = []

    def market_data_problem() -> str | None:
        last = ops_holder[0].last if ops_holder else None
        if last is None:
            return None
        failing = [name for name in last.failures if name.startswith("data:") and not name.endswith(":regime")]
        if failing and len(failing) >= len(last.asked or scanner.symbols):  # a shard asks for its symbols only
            return f"no candles for any symbol in the last cycle ({len(failing)} fetches failed)"
        return None

    def restart_market_data() -> None:
        scanner.source = live_source(config)  # fresh ccxt clients, breakers and limiters

    if wiring.clock is None:  # recorded candles do not go stale; live sources do
        supervisor.add("market_data", Restarter(market_data_problem, restart_market_data))
    base_s = wiring.base_timeframe_s()
    health = config.health.model_copy(update={"controller": config.health.controller.model_copy(
        update={"interval_s": base_s}), "candle_interval_s": config.health.candle_interval_s or base_s})
    listeners = [alerter.on_report] + ([metrics.on_report] if metrics else [])
    reporter = HealthReporter(health, read_db,
                              sources=lambda: {"market": scanner.source.health()}
                              if hasattr(scanner.source, "health") else {},
                              extra=supervisor.components, listeners=listeners,
                              controller_name=config.loop.heartbeat_component)
    if metrics is not None:
        metrics.start()
    ops = Operations(reporter, alerter, metrics, supervisor)
    ops_holder.append(ops)
    scorer = scanner.scorer
    if config.ml.retrain.enabled and isinstance(scorer, MlScorer):
        ops.retrainer = Retrainer(config.ml, wiring.strategies, scorer.connect, alerter.alert,
                                  threshold=lambda: float(scanner._flags().get("ml.min_confidence", 0.0)))
        ops.retrainer.start(ops.stop)
    return ops


def shadow_evaluator(wiring: Wiring, config: ControllerConfig, secrets: Secrets) -> Scheduler | None:
    """The shadow evaluator on its own schedule beside the loop (runs while the flag `shadow.enabled` is on).

    Its own thread and connection, so a long replay never delays a scan. None where the store is not
    reachable by SQL (a Supabase-URL-only setup): `shadow evaluate` then runs it by hand elsewhere.
    """
    if secrets.database_url is None and not (config.database.embedded and not secrets.supabase_url):
        return None
    spec = load_variations(DEFAULT_VARIATIONS)
    build_variations(spec, wiring.strategies, DEFAULT_VARIATIONS)  # a bad variation stops the start, not a pass
    scanner = wiring.scanner

    def live_flags() -> dict[str, object]:
        return {**scanner.flag_defaults, **wiring.store.flag_values()}

    def job() -> None:
        now = wiring.clock.now() if wiring.clock is not None else datetime.now(UTC)
        with db.connect(config.database, secrets) as conn:
            run_pass(conn, wiring.strategies, spec, live_flags(), now)

    def enabled() -> bool:
        return bool(live_flags().get("shadow.enabled", False))

    return Scheduler(job, spec.settings.evaluate_every_s, enabled)
