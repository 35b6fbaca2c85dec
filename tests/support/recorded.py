"""The recorded candles the indicator and strategy tests run on, and strategy parameters loose enough that every
recorded symbol has entries to compare."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from controller.config import PROJECT_ROOT
from controller.scan.strategy_params import ChannelParams, DcaParams, SwingParams, TieredParams, load_tiers

OHLCV_DIR = Path(os.environ.get("OHLCV_DIR", PROJECT_ROOT.parent / "shared" / "data" / "ohlcv"))


def load_recorded(timeframe: str) -> pd.DataFrame:
    """Every recorded file of `timeframe` as one long frame, one symbol (BASE-QUOTE) per file."""
    paths = sorted(OHLCV_DIR.glob(f"*_{timeframe}.csv"))
    if not paths:
        pytest.skip(f"no recorded candles in {OHLCV_DIR} (set OHLCV_DIR)")
    frames = []
    for path in paths:
        raw = pd.read_csv(path)
        frames.append(pd.DataFrame({
            "symbol": path.name.split("_")[1],
            "ts": pd.to_datetime(raw["timestamp"], unit="ms", utc=True),
            **{c: raw[c].astype("float64") for c in ("open", "high", "low", "close", "volume")},
        }))
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "ts"], ignore_index=True)


# Looser than the shipped values so that every symbol has entries to compare; the large tier differs so
# that several parameter sets apply within one frame.
LOOSE: dict[str, tuple[type, dict[str, Any], dict[str, Any]]] = {
    "dca": (DcaParams, {"min_drop_pct": 1.0, "rsi_min": 20, "rsi_max": 60, "volume_ratio_min": 1.0},
            {"min_drop_pct": 1.5, "lookback_bars": 12}),
    "swing": (SwingParams, {"breakout_factor": 1.001, "volume_surge": 1.0, "rsi_min": 30, "rsi_max": 90,
                            "min_score": 30}, {"breakout_factor": 1.003, "lookback_bars": 10, "min_score": 45}),
    "channel": (ChannelParams, {"buy_zone": 0.1, "width_min": 0.005, "width_max": 0.2, "volume_ratio_min": 0.5,
                                "rsi_min": 20, "rsi_max": 70}, {"buy_zone": 0.15, "drop_lookback_bars": 12}),
}


def loose(name: str) -> TieredParams[Any]:
    model, default, large = LOOSE[name]
    return TieredParams[model](default=default, tiers={"large": large}).with_tier_map(load_tiers())
