"""The shapes that cross the database between the controller and the Hummingbot script.

`NewSignal` is what the controller emits (checked here and again by `emit_signal` in SQL), `Signal` is
a row as claimed by the script, `OrderEvent` what the script reports. Amounts are Decimal on this side
(as in Hummingbot); they travel as JSON numbers because the SQL contract refuses strings for numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

SignalStatus = Literal["new", "claimed", "executing", "closed", "rejected", "expired"]
AckStatus = Literal["executing", "rejected", "closed"]
EventType = Literal["order_created", "order_filled", "order_cancelled", "order_failed", "order_completed",
                    "order_expired", "position_closed", "position_stuck", "position_peak"]
ExitReason = Literal["take_profit", "stop_loss", "time_limit", "trailing_stop", "order_health", "manual", "flat",
                     "strategy_exit"]
SYMBOL_PATTERN = r"^[A-Z0-9]+-[A-Z0-9]+$"


def params_hash(params: dict[str, Any]) -> str:
    """A short stable hash of a parameter set: signals and shadows refer to parameters by it."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def to_json_value(value: Any) -> Any:
    """Decimals as JSON numbers (via float), datetimes as ISO 8601, containers recursively."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    return value


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_payload(self) -> dict[str, Any]:
        """The JSON object the SQL function takes: absent optional keys are left out."""
        return {k: to_json_value(v) for k, v in self.model_dump(exclude_none=True).items()}


class NewSignal(_Payload):
    """A signal as the controller emits it."""

    strategy: str = Field(min_length=1)
    exchange: str = Field(min_length=1)
    symbol: str = Field(pattern=SYMBOL_PATTERN)
    side: Literal["buy", "sell"]
    price: float = Field(gt=0)
    quote_amount: float = Field(gt=0)
    take_profit_pct: float = Field(gt=0)
    stop_loss_pct: float | None = Field(None, gt=0)
    time_limit_s: int | None = Field(None, gt=0)
    trailing_activation_pct: float | None = Field(None, gt=0)
    trailing_delta_pct: float | None = Field(None, gt=0)
    expires_at: datetime
    confidence: float = Field(ge=0, le=1)
    ml_confidence: float | None = Field(None, ge=0, le=1)
    model_version: str | None = None
    params_hash: str | None = None
    features: dict[str, Any] = Field(default_factory=dict)
    # Optional and absent from the payload when unset, so rows and requests written before these fields existed
    # validate and compare unchanged:
    kind: Literal["entry", "exit"] | None = Field(None, description="None = entry")
    entry_signal_id: UUID | None = Field(None, description="an exit: the entry signal whose position it closes")
    grid_levels: int | None = Field(None, ge=1, le=20, description="DCA: resting limit buys below the entry")
    grid_spacing_pct: float | None = Field(None, gt=0, description="DCA: percent between grid levels")
    grid_level_quote: float | None = Field(None, gt=0, description="DCA: quote amount of each grid level")
    # The decision candle: the queue takes one signal per strategy, exchange, symbol, timeframe, candle and
    # kind, so two controllers (or one restarted) never queue the same decision twice.
    timeframe_s: int | None = Field(None, gt=0, description="the decision's candle period in seconds")
    candle_ts: datetime | None = Field(None, description="close of the candle the decision was taken on")

    @field_validator("features")
    @classmethod
    def _finite_features(cls, features: dict[str, Any]) -> dict[str, Any]:
        # JSON has no NaN or infinity: a feature that is not finite becomes null, not an invalid document.
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in features.items()}

    @field_validator("expires_at", "candle_ts")
    @classmethod
    def _aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{info.field_name} must carry a time zone")
        return value

    @model_validator(mode="after")
    def _candle(self) -> NewSignal:
        if (self.timeframe_s is None) != (self.candle_ts is None):
            raise ValueError("timeframe_s and candle_ts go together: give both or neither")
        return self


class Signal(BaseModel):
    """A signal row as `claim_signals` returns it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: UUID
    created_at: datetime
    expires_at: datetime
    strategy: str
    exchange: str
    symbol: str
    side: Literal["buy", "sell"]
    price: Decimal
    quote_amount: Decimal
    take_profit_pct: Decimal
    stop_loss_pct: Decimal | None = None
    time_limit_s: int | None = None
    trailing_activation_pct: Decimal | None = None
    trailing_delta_pct: Decimal | None = None
    confidence: float
    ml_confidence: float | None = None
    model_version: str | None = None
    params_hash: str | None = None
    features: dict[str, Any] = Field(default_factory=dict)
    status: SignalStatus
    claimed_by: str | None = None
    lease_until: datetime | None = None
    # An exit signal closes the open position of `entry_signal_id` at market, once
    # (exit reason `strategy_exit`); an entry with a grid places `grid_levels` resting limit buys at
    # price x (1 - i x grid_spacing_pct / 100), each for `grid_level_quote`.
    kind: Literal["entry", "exit"] = "entry"
    entry_signal_id: UUID | None = None
    grid_levels: int | None = None
    grid_spacing_pct: Decimal | None = None
    grid_level_quote: Decimal | None = None


class OrderEvent(_Payload):
    """One order event or closed position, as `report_order_event` takes it; idempotent on the SQL side."""

    type: EventType
    signal_id: UUID
    ts: datetime
    consumer: str | None = None
    client_order_id: str | None = None
    exchange: str | None = None
    symbol: str | None = None
    side: Literal["buy", "sell"] | None = None
    purpose: Literal["entry", "exit"] | None = None
    order_type: Literal["market", "limit", "limit_maker"] | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    exchange_order_id: str | None = None
    exchange_trade_id: str | None = None
    fee_quote: Decimal | None = None
    fee_asset: str | None = None
    fee_amount: Decimal | None = None
    reason: str | None = None
    entry_price: Decimal | None = None
    exit_price: Decimal | None = None
    fees_quote: Decimal | None = None
    pnl_quote: Decimal | None = None
    pnl_pct: Decimal | None = None
    exit_reason: ExitReason | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    dust_amount: Decimal | None = None  # position_closed: left below the exchange's minimum order
    peak: Decimal | None = None         # position_peak: the highest bid since entry (trailing stop)
