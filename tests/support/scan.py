"""A scanner over the recorded candles on a real Postgres, as the scan and ML integration tests build it, and a
query helper for what it wrote."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg

from controller.config import PROJECT_ROOT, ControllerConfig, LoopConfig, load_model
from controller.data import flags
from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir
from controller.data.storage.postgres import PostgresStore
from controller.scan.params_source import ParamsSource
from controller.scan.pipeline import Scanner
from controller.scan.regime import RegimeParams
from controller.scan.signals import QuoteSizing, SizingParams
from controller.scan.strategy_params import StrategiesConfig, load_strategies

# On the recorded bittrex data, DCA (15m) enters ADA-BTC on the candle 00:00-00:15 of 2018-01-11.
ENTRY_SCAN = datetime(2018, 1, 11, 0, 15, tzinfo=UTC)
# The bittrex files hold no BTC market, so the regime is unknown: these tests act as CAUTION on purpose,
# and size BTC-quoted pairs in BTC.
BTC_SIZING = SizingParams(quotes={"BTC": QuoteSizing(amount=0.002, balance=0.2)})
ACT_AS_CAUTION = RegimeParams(on_missing="caution")
SPECS = load_model(flags.FlagsFile, PROJECT_ROOT / "conf" / "flags.yml")


def scanner(store: PostgresStore, at: datetime, *, strategy_config: StrategiesConfig | None = None,
            strategy_fns: dict[str, Callable[..., pd.DataFrame]] | None = None, timeout_s: float = 60.0,
            symbols: tuple[str, ...] = ("ADA-BTC", "ETH-BTC"), config: ControllerConfig | None = None,
            folder: Path | None = None, exchange: str = "bittrex",
            params_source: ParamsSource | None = None, simulated: bool = False) -> tuple[Scanner, SimClock]:
    clock = SimClock(at)
    # timeout_s: a deadline for a strategy stalled by a loaded 2-core box, never a speed check (the hang test
    # sets its own)
    config = config or ControllerConfig(loop=LoopConfig(strategy_timeout_s=timeout_s), regime=ACT_AS_CAUTION,
                                        sizing=BTC_SIZING)
    return Scanner(config=config, strategy_config=strategy_config or load_strategies(), store=store,
                   source=ReplaySource(folder or ohlcv_dir(), exchange, clock=clock), exchange=exchange,
                   symbols=symbols,
                   clock=clock.now, flag_defaults={n: s.default for n, s in SPECS.flags.items()},
                   strategy_fns=strategy_fns, params_source=params_source, simulated=simulated), clock


def rows(url: str, query: str, *params: Any) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()
