"""BTC candles for the regime guard's tests: a few closes at given hours before a fixed now, and the regime
they read as under given thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from controller.scan.regime import Regime, RegimeParams, classify

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
PARAMS = RegimeParams()


def candles(rows: list[tuple[float, float, float | None, float | None]]) -> pd.DataFrame:
    """rows of (hours before NOW, close, high, low); high/low default to close +- 0.5."""
    return pd.DataFrame({
        "ts": [pd.Timestamp(NOW - timedelta(hours=h)) for h, *_ in rows],
        "close": [c for _, c, _, _ in rows],
        "high": [c + 0.5 if hi is None else hi for _, c, hi, _ in rows],
        "low": [c - 0.5 if lo is None else lo for _, c, _, lo in rows],
    })


# 25 h ago 90; 24 h ago 98 with a wild range (outside the 24 h volatility window); 4 h 101; 1 h 99; now 100.
MARKET = candles([(25, 90, None, None), (24, 98, 130, 60), (4, 101, None, None), (1, 99, None, None),
                  (0, 100, None, None)])


def at(reading_params: dict[str, float], frame: pd.DataFrame = MARKET) -> Regime:
    return classify(frame, NOW, RegimeParams(**reading_params)).regime
