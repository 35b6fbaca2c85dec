"""The scan loop's settings (`universe` and `loop` in conf/controller.yml), apart from the loop itself.

`controller.config` reads them on every command; the loop imports pandas, which `python -m controller
migrate` or `--help` should not pay for. `controller.scan.pipeline` re-exports them.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from controller.config_base import Frozen


class UniverseConfig(Frozen):
    exchange: str = Field("binance", description="ccxt id of the exchange whose public candles are scanned")
    backup_exchange: str | None = Field("kraken", description="ccxt id used while the primary's breaker is open")
    symbols: tuple[str, ...] = Field(("BTC-USDT", "ETH-USDT"), min_length=1, description="pairs as BASE-QUOTE")

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in symbols if not re.fullmatch(r"[A-Z0-9]+-[A-Z0-9]+", s)]
        if bad:
            raise ValueError(f"pairs must be BASE-QUOTE in capitals, e.g. BTC-USDT: {', '.join(bad)}")
        return symbols


class ValidationProfile(Frozen):
    """The `validation` profile (flag `profile`): many small positions, one strategy, top pairs, so the rules are
    checked on many trades before any of them is sized up."""

    min_confidence: float = Field(0.4, ge=0, le=1, description="entries below this confidence are skipped")
    size_factor: float = Field(0.4, gt=0, le=1, description="every quote amount x this (seed: $20 of $50)")
    max_open_total: int = Field(20, ge=1, description="per quote currency")
    strategies: tuple[str, ...] = Field(("dca",), min_length=1, description="the only strategies that run")
    bases: tuple[str, ...] = Field(("BTC", "ETH"), min_length=1, description="top pairs: these base assets only")


class LoopConfig(Frozen):
    strategy_timeout_s: float = Field(5.0, gt=0, le=300, description="a strategy slower than this is skipped")
    lookback_candles: int = Field(300, ge=60, le=5000, description="candles per symbol fed to the indicators")
    strategies_file: Path = Field(Path("conf/strategies.yml"), description="strategy parameters and tiers")
    tiers_file: Path = Field(Path("conf/tiers.yml"), description="symbol -> tier map")
    heartbeat_component: str = "controller"
    shard_lease_s: float = Field(60.0, ge=1, le=3600, description="a sharded controller's lease on its shards "
                                 "(`run --shard`); renewed every third of it. Shorter than the candle period, "
                                 "so a dead controller's shards are taken over at the next cycle")
    gap_window_candles: int = Field(48, ge=2, le=5000, description="candles a decision's freshness is judged on")
    max_gap_share: float = Field(0.1, ge=0, lt=1, description="share of those candles that may be missing")
    exit_signals: bool = Field(True, description="send exit signals (kind exit) for open positions; the queue "
                                                "routes each to the bot holding its entry")
    validation: ValidationProfile = Field(ValidationProfile(), description="settings of the `profile` flag's "
                                                                           "`validation` value")
