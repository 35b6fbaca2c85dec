"""The scan loop: market data -> indicators -> strategies -> regime guard -> signals, once per candle close.

I/O lives here (the source, the store, the clock); the stages it calls are pure. A strategy that is slow
or raises is logged, counted and skipped, and the cycle goes on: one bad strategy never stops the others.
Flags are re-read every cycle. Each cycle ends with a heartbeat that carries progress, not just liveness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bridge.resilience import CallError
from controller.data.market_data import MarketDataSource, floor_time, timeframe_seconds
from controller.data.shards import ShardSpec, symbols_of
from controller.data.storage.port import AlreadyEmitted, SignalRejected, Store
from controller.scan import indicators, strategies
from controller.scan.params_source import ParamsSource, active_or_conf, canary_of
from controller.scan.regime import (
    ClosedTrade,
    ProtectionParams,
    RegimeParams,
    RegimeReading,
    classify,
    symbol_block,
    unknown,
)
from controller.scan.settings import LoopConfig, ValidationProfile
from controller.scan.signals import Boost, Decision, OpenBook, Planned, SizingParams, plan, plan_exits, scan_row
from controller.scan.strategy_params import StrategiesConfig, StrategyConfig

logger = logging.getLogger(__name__)

REGIME_TIMEFRAMES = ("5m", "1h")  # 5m where recorded or served; 1h where only coarser candles exist
EXIT_COLUMNS = ("take_profit_pct", "stop_loss_pct", "time_limit_s", "trailing_activation_pct", "trailing_delta_pct")


class ScanSettings(Protocol):
    """The sections of the controller config a scan reads (`ControllerConfig` has them all)."""

    @property
    def loop(self) -> LoopConfig: ...

    @property
    def regime(self) -> RegimeParams: ...

    @property
    def protection(self) -> ProtectionParams: ...

    @property
    def sizing(self) -> SizingParams: ...


class StrategyTimeout(Exception):
    pass


def run_with_timeout[T](fn: Callable[[], T], timeout_s: float, name: str) -> T:
    """Run `fn` in a daemon thread; raise StrategyTimeout if it has not returned in time.

    A thread cannot be killed: a hung strategy is abandoned (daemon, so it never blocks exit) and the
    loop goes on without it.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # handed to the caller, which tells the kinds apart
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"strategy-{name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise StrategyTimeout(f"{name} did not finish within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


@dataclass
class CycleReport:
    at: datetime
    exchange: str = ""
    duration_s: float = 0.0
    skipped: str | None = None  # why the whole cycle did nothing
    regime: RegimeReading | None = None
    planned: list[Planned] = field(default_factory=list)
    emitted: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # strategy or symbol -> what went wrong
    last_candle: datetime | None = None
    asked: set[str] = field(default_factory=set)  # symbols whose candles were asked for this cycle
    with_candles: set[str] = field(default_factory=set)  # symbols that got candles this cycle
    outage: str | None = None  # set when no symbol got candles: which sources were tried, why they failed
    shards: tuple[int, ...] | None = None  # the shards this cycle scanned (sharded controllers only)
    scanned_symbols: int = 0
    already_emitted: int = 0  # decisions another controller had queued for the same candle

    def data_failures(self) -> dict[str, str]:
        return {k: v for k, v in self.failures.items() if k.startswith("data:")}


StrategyFn = Callable[[pd.DataFrame, Any], pd.DataFrame]


# --- the ML hook --------------------------------------------------------------------------------------
# Scan never imports `ml` (layer rule): `controller.wiring` injects a Scorer when one is configured.


@dataclass(frozen=True)
class MlVerdict:
    """What the ML booster says about one entry candidate. `arm` decides what the score may do: only
    `boosted` changes size or vetoes; `control`, `ood`, `stale` and `off` are recorded and have no effect."""

    confidence: float
    model_version: str
    arm: str  # boosted / control / ood / stale / off
    size_multiplier: float = 1.0
    veto: bool = False
    dissimilarity: float | None = None
    features: Mapping[str, float | None] = field(default_factory=dict)


class Scorer(Protocol):
    def score(self, frames: Mapping[str, pd.DataFrame], regime: RegimeReading, flags: Mapping[str, Any],
              now: datetime) -> dict[tuple[str, str], MlVerdict]:
        """Verdicts for the cycle's entry candidates in one batch, keyed (strategy, symbol)."""
        ...

    def record(self, rows: list[tuple[Decision, MlVerdict, str | None]]) -> None:
        """Persist the cycle's predictions (with the signal id where one was emitted)."""
        ...


class ShardGate(Protocol):
    """The shard leases of a sharded controller (`controller.data.shard_leases.ShardLeases`)."""

    spec: ShardSpec
    holder: str

    def held(self) -> tuple[int, ...]:
        """Renew and take leases; the shards held now."""
        ...


class Scanner:
    """One scan of the configured universe at the clock's time (with `shards`: of the shards it holds)."""

    def __init__(self, *, config: ScanSettings, strategy_config: StrategiesConfig, store: Store,
                 source: MarketDataSource, exchange: str, symbols: tuple[str, ...],
                 clock: Callable[[], datetime], wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 flag_defaults: Mapping[str, Any] | None = None,
                 strategy_fns: Mapping[str, StrategyFn] | None = None, simulated: bool = False,
                 emit_exits: bool | None = None, params_source: ParamsSource | None = None,
                 scorer: Scorer | None = None, shards: ShardGate | None = None,
                 canary_seed: int | None = None) -> None:
        self.config = config
        self.strategy_config = strategy_config
        self.store = store
        self.source = source
        self.exchange = exchange
        self.symbols = symbols
        self.clock = clock
        self.wall_clock = wall_clock
        self.flag_defaults = dict(flag_defaults or {})
        self.strategy_fns = dict(strategy_fns or strategies.STRATEGIES)
        # A replay: signal expiry and every time the queue compares are on `clock`, not the wall clock, so a
        # replay emits what live would have emitted.
        self.simulated = simulated
        self.emit_exits = config.loop.exit_signals if emit_exits is None else emit_exits
        self.params_source = params_source  # the strategy_params version shadow testing applied, else conf
        self.canary_rng = np.random.default_rng(canary_seed)  # a canary's arm per decision, drawn at random
        self.counters: Counter[str] = Counter()
        self._stored_until: dict[tuple[str, str], pd.Timestamp] = {}
        self.scorer = scorer
        self.shards = shards

    # --- inputs ------------------------------------------------------------------------------------

    def _flags(self) -> dict[str, Any]:
        try:
            return {**self.flag_defaults, **self.store.flag_values()}
        except Exception as exc:  # the store is down: act on the defaults rather than stop scanning
            logger.warning("flags unreadable, using defaults", extra={"error": str(exc)})
            return dict(self.flag_defaults)

    def _candles(self, symbols: tuple[str, ...], timeframe: str, now: datetime, report: CycleReport) -> pd.DataFrame:
        tf_s = timeframe_seconds(timeframe)
        since = now - timedelta(seconds=tf_s * self.config.loop.lookback_candles)
        frames = []
        for symbol in symbols:
            report.asked.add(symbol)
            try:
                frame = self.source.fetch_ohlcv(symbol, timeframe, since, now)
            except CallError as exc:
                report.failures[f"data:{symbol}:{timeframe}"] = str(exc)
                self.counters["data_failures"] += 1
                # One line per cycle says it when every pair fails (`outage`); per pair only in debug.
                logger.debug("no candles for symbol", extra={"symbol": symbol, "timeframe": timeframe,
                                                             "error": str(exc)})
                continue
            if not frame.empty:
                report.with_candles.add(symbol)
                frames.append(frame.assign(symbol=symbol))
        if not frames:
            return pd.DataFrame(columns=["symbol", "ts", "open", "high", "low", "close", "volume"])
        candles = pd.concat(frames, ignore_index=True).sort_values(["symbol", "ts"], kind="stable")
        self._store_new(candles, timeframe)
        return candles.reset_index(drop=True)[["symbol", "ts", "open", "high", "low", "close", "volume"]]

    def _store_new(self, candles: pd.DataFrame, timeframe: str) -> None:
        """Write the candles not written before (the first time: all the store lacks)."""
        fresh = []
        for symbol, frame in candles.groupby("symbol", sort=False):
            key = (str(symbol), timeframe)
            if key not in self._stored_until:
                last = self.store.last_candle_time(self.exchange, str(symbol), timeframe)
                self._stored_until[key] = pd.Timestamp(last) if last else pd.Timestamp.min.tz_localize(UTC)
            new = frame[frame["ts"] > self._stored_until[key]]
            if not new.empty:
                fresh.append(new)
                self._stored_until[key] = new["ts"].max()
        if fresh:
            rows = pd.concat(fresh).assign(exchange=self.exchange, timeframe=timeframe)
            self.store.write_candles(rows)

    def _regime(self, now: datetime, report: CycleReport) -> RegimeReading:
        """The regime from the first of this exchange's regime markets with fresh candles; UNKNOWN (or what
        `regime.on_missing` says) when none has them."""
        params = self.config.regime
        tried = []
        for market in params.markets_for(self.exchange):
            for timeframe in REGIME_TIMEFRAMES:
                try:
                    btc = self.source.fetch_ohlcv(market, timeframe, now - timedelta(hours=50), now)
                except CallError as exc:
                    tried.append(f"{market} {timeframe}: {exc}")
                    continue
                if btc.empty:
                    tried.append(f"{market} {timeframe}: no candles")
                    continue
                reading = classify(btc, now, params, market, timeframe_seconds(timeframe))
                if reading.market is not None:
                    return reading
                tried.append(f"{market} {timeframe}: {reading.reason.removeprefix('regime unknown: ')}")
        report.failures["data:regime"] = "; ".join(tried)
        markets = " or ".join(params.markets_for(self.exchange))
        return unknown(params, f"no fresh {markets} candles on {self.exchange}")

    def _blocked_symbols(self, now: datetime, symbols: tuple[str, ...]) -> dict[str, str]:
        protection = self.config.protection
        since = now - timedelta(hours=protection.longest_h() * 2)
        trades = [ClosedTrade(t["symbol"], t["exit_reason"], t["closed_at"]) for t in self.store.closed_trades(since)]
        tier_of = self.strategy_config.dca.params.tier_of
        blocked = {}
        for symbol in symbols:
            if reason := symbol_block(trades, symbol, now, protection, tier_of(symbol)):
                blocked[symbol] = reason
        return blocked

    # --- one strategy --------------------------------------------------------------------------------

    def _decisions(self, name: str, section: StrategyConfig[Any], candles: pd.DataFrame, now: datetime,
                   regime: RegimeReading, symbols: tuple[str, ...]) -> tuple[list[Decision], pd.DataFrame]:
        """The strategy's decision per symbol, and the evaluated frame they were read from (for the scorer)."""
        fn = self.strategy_fns[name]
        timeout = self.config.loop.strategy_timeout_s

        exit_fn = strategies.EXITS.get(name) if self.emit_exits else None

        def evaluate() -> pd.DataFrame:
            frame = indicators.compute(candles, section.indicators)
            decided = fn(frame, section.params)
            if grid_fn := strategies.GRIDS.get(name):
                decided = decided.join(grid_fn(decided["confidence"].to_numpy(dtype=float),
                                               decided["entry"].to_numpy(dtype=bool), frame, section.params))
            evaluated = frame.join(decided)
            return evaluated.join(exit_fn(frame, section.params)) if exit_fn is not None else evaluated

        evaluated = run_with_timeout(evaluate, timeout, name)
        tf_s = timeframe_seconds(section.timeframe)
        loop = self.config.loop
        unfit = unfit_data(candles, section.timeframe, now, loop.gap_window_candles, loop.max_gap_share)
        latest = evaluated.groupby("symbol", sort=False).tail(1)
        feature_columns = strategies.FEATURES[name]
        decisions = []
        for row in latest.itertuples(index=False):
            symbol = str(row.symbol)
            values = row._asdict()
            features = {c: _json_number(values.get(c)) for c in feature_columns}
            why_not = unfit.get(symbol)
            decisions.append(Decision(
                strategy=name, exchange=self.exchange, symbol=symbol, timeframe_s=tf_s,
                candle_close=pd.Timestamp(row.ts).to_pydatetime() + timedelta(seconds=tf_s),
                price=float(row.close), entry=bool(row.entry) and why_not is None, confidence=float(row.confidence),
                reason=why_not or str(row.reason), exits={c: values.get(c) for c in EXIT_COLUMNS},
                features={**features, **regime.features()},
                thresholds=section.params.thresholds(symbol), params_hash=section.params_hash_for(symbol),
                grid={c: values[c] for c in strategies.GRID_COLUMNS} if "grid_levels" in values else None,
                exit=bool(values.get("exit", False)) and why_not is None,
                exit_reason=values.get("exit_reason"),
            ))
        seen = {d.symbol for d in decisions}
        for symbol in symbols:
            if symbol not in seen:
                decisions.append(no_data(name, self.exchange, symbol, tf_s, now))
        return decisions, evaluated

    # --- the cycle -----------------------------------------------------------------------------------

    def scan(self) -> CycleReport:
        started = time.monotonic()
        now = self.clock()
        report = CycleReport(at=now, exchange=self.exchange)
        flags = self._flags()
        universe = self._universe(report)
        if universe is None:
            pass  # report.skipped says why
        elif not flags.get("trading.enabled", True) or not flags.get("signals.enabled", True):
            report.skipped = "flags: trading.enabled or signals.enabled is false"
        else:
            report.scanned_symbols = len(universe)
            self._scan(now, flags, report, universe)
            if report.asked and not report.with_candles:
                report.outage = outage_summary(self.source, report, now)
                logger.warning("no candles for any pair", extra={"summary": report.outage})
        report.duration_s = time.monotonic() - started
        self.counters["cycles"] += 1
        self.counters["signals_emitted"] += report.emitted
        self._heartbeat(report)
        return report

    def _universe(self, report: CycleReport) -> tuple[str, ...] | None:
        """The symbols to scan this cycle: all, or those of the shards whose lease this controller holds now.
        None (and `report.skipped`) when it holds none: it scans nothing rather than risk a shard it lost."""
        if self.shards is None:
            return self.symbols
        n = self.shards.spec.n
        try:
            held = self.shards.held()
        except Exception as exc:  # without a lease there is no scan: another controller may hold the shard
            self.counters["shard_lease_failures"] += 1
            report.skipped = f"shard leases unreadable, not scanning: {exc}"
            logger.warning("shard leases unreadable", extra={"error": str(exc)})
            return None
        report.shards = held
        if not held:
            report.skipped = f"standby: every shard of {n} is held by another controller"
            return None
        return symbols_of(self.symbols, held, n)

    def _scan(self, now: datetime, flags: Mapping[str, Any], report: CycleReport, universe: tuple[str, ...]) -> None:
        report.regime = self._regime(now, report)
        profile = self.config.loop.validation if flags.get("profile") == "validation" else None
        symbols, sizing = universe, self.config.sizing
        sections = [(n, active_or_conf(self.params_source, n, s)) for n, s in self.strategy_config.items()
                    if s.enabled and flags.get(f"strategies.{n}.enabled", True)]
        canaries = {n: c for n, s in self.strategy_config.items()
                    if (c := canary_of(self.params_source, n, s)) is not None}
        if profile is not None:
            symbols, sections, sizing = apply_profile(profile, symbols, sections, sizing)
        candles_by_tf: dict[str, pd.DataFrame] = {}
        decisions: list[Decision] = []
        frames: dict[str, pd.DataFrame] = {}  # each strategy's evaluated frame: what the scorer scores
        for name, section in sections:
            if section.timeframe not in candles_by_tf:
                candles_by_tf[section.timeframe] = self._candles(symbols, section.timeframe, now, report)
            candles = candles_by_tf[section.timeframe]
            if candles.empty:
                report.failures[name] = f"no {section.timeframe} candles"
                tf_s = timeframe_seconds(section.timeframe)
                decisions += [no_data(name, self.exchange, symbol, tf_s, now) for symbol in symbols]
                continue
            last = candles["ts"].max() + timedelta(seconds=timeframe_seconds(section.timeframe))
            report.last_candle = max(report.last_candle or last, last)
            try:
                decided, frames[name] = self._decisions(name, section, candles, now, report.regime, symbols)
                if name in canaries:
                    control, share = canaries[name]
                    held, _ = self._decisions(name, control, candles, now, report.regime, symbols)
                    decided = canary_split(decided, held, share, self.canary_rng)
                decisions += decided
            except StrategyTimeout as exc:
                self._strategy_failed(name, "timeout", exc, report)
            except Exception as exc:  # an error in strategy code skips that strategy this cycle, not the loop
                self._strategy_failed(name, "error", exc, report)
        if profile is not None:
            decisions = [below_min_confidence(d, profile.min_confidence) for d in decisions]
        verdicts = self._ml_score(frames, flags, now, report)
        decisions, boosts = apply_verdicts(decisions, verdicts)
        open_now = open_at(self.store.open_signals(), now) if self.simulated else self.store.open_signals()
        wall_now = now if self.simulated else self.wall_clock()
        entries = [r for r in open_now if r.get("kind", "entry") == "entry"]  # exits hold no new exposure
        planned = plan(decisions, report.regime, OpenBook.from_signals(entries),
                       sizing, self._blocked_symbols(now, symbols), now, wall_now, stops=self.config.regime.stops,
                       boosts=boosts)
        planned += plan_exits(decisions, open_now, now, wall_now, sizing)
        report.planned, scans = [], []
        timeframe_of = {n: s.timeframe for n, s in self.strategy_config.items()}
        predictions: list[tuple[Decision, MlVerdict, str | None]] = []
        for item in planned:
            signal_id = None
            verdict = verdicts.get((item.decision.strategy, item.decision.symbol))
            if item.signal is not None:
                try:
                    signal_id = str(self.store.emit_signal(item.signal, as_of=now if self.simulated else None))
                    report.emitted += 1
                    logger.info("signal emitted", extra={"signal_id": signal_id, "strategy": item.decision.strategy,
                                                         "symbol": item.decision.symbol,
                                                         "quote_amount": item.signal.quote_amount})
                except AlreadyEmitted as exc:  # another controller queued this candle's decision: it stands
                    report.already_emitted += 1
                    self.counters["already_emitted"] += 1
                    item = Planned(item.decision, "blocked", f"duplicate decision, not queued again: {exc}")
                except SignalRejected as exc:
                    item = Planned(item.decision, "blocked", f"refused by the queue: {exc}")
            report.planned.append(item)
            scans.append(scan_row(item, timeframe_of[item.decision.strategy], signal_id))
            if verdict is not None:
                predictions.append((item.decision, verdict, signal_id))
        if report.with_candles or not report.asked:  # a scan that got no candles at all failed: no scans rows
            self.store.write_scans(scans)
        if predictions and self.scorer is not None:
            try:
                self.scorer.record(predictions)
            except Exception as exc:  # predictions are evidence, not the trade: log and go on
                self.counters["ml_record_failures"] += 1
                logger.warning("ml predictions not recorded", extra={"error": str(exc)})

    def _ml_score(self, frames: Mapping[str, pd.DataFrame], flags: Mapping[str, Any], now: datetime,
                  report: CycleReport) -> dict[tuple[str, str], MlVerdict]:
        """The scorer's verdicts, or none: without a scorer, with ml.enabled off, or when scoring fails
        (the rules trade on; ML is a booster, never the gate)."""
        if self.scorer is None or not flags.get("ml.enabled", False) or report.regime is None:
            return {}
        try:
            verdicts = self.scorer.score(frames, report.regime, flags, now)
        except Exception as exc:
            report.failures["ml"] = f"scoring failed: {exc}"
            self.counters["ml_failures"] += 1
            logger.error("ml scoring failed, signals go out unscored", extra={"error": str(exc)}, exc_info=True)
            return {}
        for verdict in verdicts.values():
            self.counters[f"ml_{verdict.arm}"] += 1
        return verdicts

    def _strategy_failed(self, name: str, kind: str, exc: BaseException, report: CycleReport) -> None:
        report.failures[name] = f"{kind}: {exc}"
        self.counters[f"strategy_{kind}s"] += 1
        logger.error("strategy skipped this cycle", extra={"strategy": name, "kind": kind, "error": str(exc)},
                     exc_info=kind == "error")

    def _heartbeat(self, report: CycleReport) -> None:
        progress = {
            "last_scan_at": report.at.isoformat(),
            "replay": self.simulated,
            "last_candle": report.last_candle.isoformat() if report.last_candle else None,
            "last_scan_duration_s": round(report.duration_s, 3),
            "signals_emitted": self.counters["signals_emitted"],
            "cycles": self.counters["cycles"],
            "strategy_failures": self.counters["strategy_timeouts"] + self.counters["strategy_errors"],
            "regime": report.regime.regime.value if report.regime else None,
            "regime_market": report.regime.market if report.regime else None,
            "regime_reason": report.regime.reason if report.regime else None,
        }
        component = self.config.loop.heartbeat_component
        if self.shards is not None:  # one heartbeat per controller, not one row they overwrite in turn
            component = f"{component}:{self.shards.holder}"
            progress.update(shards=list(report.shards or ()), shard_n=self.shards.spec.n,
                            scanned_symbols=report.scanned_symbols,
                            already_emitted=self.counters["already_emitted"])
        try:
            self.store.heartbeat(component, progress)
        except Exception as exc:  # a missed heartbeat shows as no progress; the loop goes on
            logger.warning("heartbeat failed", extra={"error": str(exc)})


def canary_split(active: list[Decision], control: list[Decision], share: float,
                 rng: np.random.Generator) -> list[Decision]:
    """Per symbol, the active parameters' decision with probability `share`, else the control's; each
    records its arm in `features.params_arm` (the signal and the scan row carry it)."""
    held = {d.symbol: d for d in control}
    out = []
    for decision in active:
        if rng.random() < share or decision.symbol not in held:
            out.append(replace(decision, features={**decision.features, "params_arm": "canary"}))
        else:
            other = held[decision.symbol]
            out.append(replace(other, features={**other.features, "params_arm": "control"}))
    return out


def apply_profile(profile: ValidationProfile, symbols: tuple[str, ...], sections: list[tuple[str, Any]],
                  sizing: SizingParams) -> tuple[tuple[str, ...], list[tuple[str, Any]], SizingParams]:
    """The universe, strategies and sizing of the validation profile."""
    top = tuple(s for s in symbols if s.split("-", 1)[0] in profile.bases)
    chosen = [(n, s) for n, s in sections if n in profile.strategies]
    quotes = {q: rule.model_copy(update={"amount": rule.amount * profile.size_factor})
              for q, rule in sizing.quotes.items()}
    return top, chosen, sizing.model_copy(update={"quotes": quotes, "max_open_total": profile.max_open_total})


def below_min_confidence(decision: Decision, min_confidence: float) -> Decision:
    """An entry under the profile's minimum confidence becomes a skip that says so."""
    if not decision.entry or decision.confidence >= min_confidence:
        return decision
    return replace(decision, entry=False,
                   reason=f"confidence {decision.confidence:.2f} below {min_confidence:g} (validation profile)")


def outage_summary(source: MarketDataSource, report: CycleReport, now: datetime) -> str:
    """One line for a cycle in which no pair got candles: the sources tried, why each failed, and what
    their circuit breakers will do next."""
    health_fn = getattr(source, "health", None)
    health = health_fn() if callable(health_fn) else {}
    parts = []
    for dependency in _dependencies(health):
        name = dependency.get("dependency", "?")
        errors, next_steps = [], []
        for endpoint, state in sorted(dependency.get("endpoints", {}).items()):
            last = state.get("last_error") or {}
            if last.get("message"):
                errors.append(f"{endpoint}: {last['message'][:120]}")
            breaker = state.get("breaker", {})
            if breaker.get("state") not in (None, "closed"):
                next_steps.append(f"{endpoint} breaker {breaker['state']}, next try in "
                                  f"{breaker.get('next_probe_in_s', 0):.0f} s")
        parts.append(f"{name} ({'; '.join(errors) or 'no error recorded'}"
                     f"{'; ' + ', '.join(next_steps) if next_steps else ''})")
    if not parts:  # a source without health (recorded files): its fetch errors say why
        reasons = sorted(set(report.data_failures().values())) or ["no candles at this time"]
        parts.append(f"{source.name} ({'; '.join(reasons[:3])})")
    return f"no candles for any pair at {now:%Y-%m-%d %H:%M}: tried {', '.join(parts)}"


def _dependencies(health: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if "endpoints" in health:
        return [health]
    return [h for role in ("primary", "backup") if isinstance(h := health.get(role), Mapping) and "endpoints" in h]


def open_at(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The signals still open at simulated time `now`: a new signal past its expiry no longer counts."""
    # pd.Timestamp: the Supabase adapter hands times back as ISO strings, Postgres as datetimes.
    return [r for r in rows if r.get("status") != "new" or pd.Timestamp(r["expires_at"]) > pd.Timestamp(now)]


def unfit_data(candles: pd.DataFrame, timeframe: str, now: datetime, window: int,
               max_gap_share: float) -> dict[str, str]:
    """Symbols whose candles may not decide at `now`, with why: the last candle is not the one that just
    closed (`stale data (last candle 09:15)`, its close time), or more than `max_gap_share` of the last
    `window` candles are missing (`gappy data`)."""
    tf = timedelta(seconds=timeframe_seconds(timeframe))
    current = pd.Timestamp(floor_time(now, timeframe))  # the candle that just closed opened at current - tf
    since = current - window * tf
    unfit = {}
    for symbol, frame in candles.groupby("symbol", sort=False):
        last = pd.Timestamp(frame["ts"].iloc[-1])
        if last + tf < current:
            unfit[str(symbol)] = f"stale data (last candle {last + tf:%H:%M})"
            continue
        held = int((frame["ts"] >= since).sum())
        missing = window - held
        if missing > max_gap_share * window:
            unfit[str(symbol)] = f"gappy data ({missing} of the last {window} candles missing)"
    return unfit


def no_data(strategy: str, exchange: str, symbol: str, timeframe_s: int, now: datetime) -> Decision:
    """The decision for a symbol with no candles at the scan time: a skip that says so."""
    return Decision(strategy=strategy, exchange=exchange, symbol=symbol, timeframe_s=timeframe_s,
                    candle_close=now, price=float("nan"),
                    entry=False, confidence=0.0, reason="no data", exits={})


def apply_verdicts(decisions: list[Decision], verdicts: Mapping[tuple[str, str], MlVerdict]
                   ) -> tuple[list[Decision], dict[tuple[str, str], Boost]]:
    """The ML verdicts applied to the scan's decisions in one step: a vetoed entry becomes a skip that says
    why, and every other verdict becomes the `Boost` that `plan` applies (order and size for the boosted arm
    only; the score and model stamped on the signal for every arm)."""
    applied: list[Decision] = []
    for decision in decisions:
        verdict = verdicts.get((decision.strategy, decision.symbol))
        if verdict is not None and verdict.veto and decision.entry:
            decision = replace(decision, entry=False, reason=f"ml veto: confidence {verdict.confidence:.2f} "
                               f"below the threshold ({verdict.model_version})")
        applied.append(decision)
    boosts = {key: Boost(v.confidence, v.size_multiplier if v.arm == "boosted" else 1.0, v.model_version, v.arm)
              for key, v in verdicts.items()}
    return applied, boosts


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return value


def next_close(now: datetime, timeframe_s: int) -> datetime:
    """The next candle close after `now` for candles aligned on the epoch."""
    epoch = now.timestamp()
    return datetime.fromtimestamp((epoch // timeframe_s + 1) * timeframe_s, tz=UTC)


def run_live(scanner: Scanner, timeframe_s: int, stop: threading.Event, settle_s: float = 3.0,
             on_cycle: Callable[[CycleReport], None] | None = None) -> None:
    """Scan shortly after every candle close until `stop` is set (SIGTERM sets it: the current cycle ends first)."""
    while not stop.is_set():
        wake = next_close(datetime.now(UTC), timeframe_s) + timedelta(seconds=settle_s)
        if stop.wait(max(0.0, (wake - datetime.now(UTC)).total_seconds())):
            break
        report = scanner.scan()
        logger.info("scan done", extra={"emitted": report.emitted, "duration_s": round(report.duration_s, 3),
                                        "failures": len(report.failures)})
        if on_cycle is not None:
            on_cycle(report)


def run_replay(scanner: Scanner, advance: Callable[[float], None], now: Callable[[], datetime], until: datetime,
               timeframe_s: int, stop: threading.Event,
               on_cycle: Callable[[CycleReport], None] | None = None) -> list[CycleReport]:
    """Scan at every candle close of a replayed period, as fast as the machine goes."""
    reports = []
    while not stop.is_set() and now() < until:
        advance(timeframe_s)
        reports.append(scanner.scan())
        if on_cycle is not None:
            on_cycle(reports[-1])
    return reports
