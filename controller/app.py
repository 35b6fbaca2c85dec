"""Composition root: wires the real parts (store, market data, strategies, flags) into a Scanner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controller import flags
from controller.config import ControllerConfig, Secrets, load_model
from controller.market_data import (
    CcxtSource,
    FailoverSource,
    MarketDataSource,
    ReplaySource,
    SimClock,
    timeframe_seconds,
)
from controller.pipeline import Scanner
from controller.storage import Store, open_store
from controller.strategy_params import StrategiesConfig, load_strategies


@dataclass
class Wiring:
    scanner: Scanner
    store: Store
    clock: SimClock | None  # set when replaying
    strategies: StrategiesConfig

    def base_timeframe_s(self) -> int:
        """The shortest timeframe of the enabled strategies: the loop scans at each of its closes."""
        return min(timeframe_seconds(s.timeframe) for _, s in self.strategies.items() if s.enabled)


def live_source(config: ControllerConfig) -> MarketDataSource:
    """The configured exchange through ccxt, failing over to the backup exchange while it is down."""
    primary = CcxtSource(config.universe.exchange)
    if not config.universe.backup_exchange:
        return primary
    return FailoverSource(primary, CcxtSource(config.universe.backup_exchange))


def build(config: ControllerConfig, secrets: Secrets, *, replay: Path | None = None, exchange: str | None = None,
          start: datetime | None = None, symbols: tuple[str, ...] | None = None) -> Wiring:
    """A Scanner on the live exchange, or on recorded candles (`replay`) with a simulated clock at `start`."""
    strategy_config = load_strategies(config.resolve(config.loop.strategies_file),
                                      config.resolve(config.loop.tiers_file))
    flag_specs = load_model(flags.FlagsFile, config.resolve(config.flags.file))
    defaults = {name: spec.default for name, spec in flag_specs.flags.items()}
    store = open_store(config, secrets)
    clock: SimClock | None = None
    if replay is not None:
        clock = SimClock(start or datetime.now(UTC))
        source: MarketDataSource = ReplaySource(replay, exchange, clock=clock)
        exchange_name = exchange or config.universe.exchange
        universe = symbols or tuple(source.symbols())
        now: Callable[[], datetime] = clock.now
    else:
        source = live_source(config)
        exchange_name = config.universe.exchange
        universe = symbols or config.universe.symbols
        now = lambda: datetime.now(UTC)  # noqa: E731
    scanner = Scanner(config=config, strategy_config=strategy_config, store=store, source=source,
                      exchange=exchange_name, symbols=universe, clock=now, flag_defaults=defaults)
    return Wiring(scanner, store, clock, strategy_config)
