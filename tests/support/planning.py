"""Decisions and the planning call the sizing and signal tests share: a fixed candle close, the three regime
readings, sizing for a dollar and a BTC quote, and an open entry for the exit planner."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.scan.regime import Regime, RegimeReading, StopWidening
from controller.scan.signals import Decision, OpenBook, QuoteSizing, SizingParams, plan

CLOSE = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NORMAL = RegimeReading(Regime.NORMAL, 1.0, "BTC steady")
CAUTION = RegimeReading(Regime.CAUTION, 0.5, "BTC falling")
PANIC = RegimeReading(Regime.PANIC, 0.0, "BTC crashing")
SIZING = SizingParams(quotes={"USDT": QuoteSizing(amount=50, balance=1000),
                              "BTC": QuoteSizing(amount=0.002, balance=0.1)},
                      max_balance_share=0.5, max_open_total=5, max_open_per_strategy=3, max_open_per_symbol=2,
                      expiry_candles=2)
EXITS = {"take_profit_pct": 3.0, "stop_loss_pct": 5.0, "time_limit_s": 14_400, "trailing_activation_pct": 1.1,
         "trailing_delta_pct": float("nan")}


def decision(symbol: str = "ETH-USDT", strategy: str = "dca", entry: bool = True, confidence: float = 0.6,
             **kw: object) -> Decision:
    fields: dict[str, object] = {
        "strategy": strategy, "exchange": "binance", "symbol": symbol, "timeframe_s": 900, "candle_close": CLOSE,
        "price": 2500.0, "entry": entry, "confidence": confidence, "reason": "drop 4.1% >= 3.75%", "exits": EXITS,
        "features": {"rsi": 31.0}, "thresholds": {"drop_pct": 3.75}, "params_hash": "p1"}
    return Decision(**{**fields, **kw})


def run(decisions: list[Decision], regime: RegimeReading = NORMAL, book: OpenBook | None = None,
        blocked: dict[str, str] | None = None, sim_now: datetime = CLOSE, wall_now: datetime = CLOSE,
        sizing: SizingParams = SIZING, stops: StopWidening | None = None):
    return plan(decisions, regime, book or OpenBook(), sizing, blocked or {}, sim_now, wall_now, stops=stops)


GRID = {"grid_levels": 3.0, "grid_spacing_pct": 1.4, "grid_level_share": 1.0}


OPEN_ENTRY = {"id": "6f1c2f7e-8a86-4d43-9d3c-3f3b7a1f0c11", "kind": "entry", "status": "executing",
              "strategy": "channel", "exchange": "binance", "symbol": "ETH-USDT", "quote_amount": 50,
              "take_profit_pct": 4.0}
