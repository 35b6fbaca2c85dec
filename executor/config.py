"""The script's configuration: what `conf/hummingbot/conf_signal_executor.yml` sets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from hummingbot.strategy.strategy_v2_base import StrategyV2ConfigBase
from pydantic import Field, model_validator


def prompt(text: str) -> dict[str, Any]:
    """A field's `json_schema_extra` that makes Hummingbot ask for its value when a config is created."""
    return {"prompt": text, "prompt_on_new": True}


class SignalExecutorConfig(StrategyV2ConfigBase):
    script_file_name: str = "signal_executor.py"
    connector: str = Field("binance_paper_trade", json_schema_extra=prompt("Connector to trade on"))
    exchange: str = Field("binance", json_schema_extra=prompt("Exchange name the controller's signals carry"))
    trading_pairs: list[str] = Field(default_factory=lambda: ["BTC-USDT", "ETH-USDT"],
                                     json_schema_extra=prompt("Pairs this bot may trade (BASE-QUOTE)"))
    consumer: str = Field("hummingbot-1", json_schema_extra=prompt("Unique name of this bot on the queue"))
    quote_amount: Decimal | None = Field(None, description="quote per entry; empty: the signal's amount")
    max_open_positions: int = Field(5, ge=1)
    max_open_per_pair: int = Field(1, ge=1)
    # queue: transport and where its credentials come from (environment variables, never this file)
    queue_transport: Literal["postgrest", "postgres"] = "postgrest"
    queue_url_env: str = Field("QUEUE_URL", description="env var: PostgREST root or Supabase URL, or a Postgres DSN")
    queue_key_env: str = Field("SUPABASE_ANON_KEY", description="env var: the apikey (PostgREST/Supabase)")
    queue_token_env: str = Field("EXECUTOR_JWT", description="env var: a JWT whose role claim is executor")
    claim_interval_s: float = Field(1.0, gt=0, description="claim poll; with queue_listen, only the fallback")
    queue_listen: bool = Field(True, description=(
        "postgres transport: LISTEN for new signals and claim at once (off behind a transaction-pooling proxy, "
        "which cannot LISTEN); PostgREST always polls"))
    claim_wait_s: float = Field(2.0, ge=0, le=30, description=(
        "postgrest transport: each claim waits up to this long in the database for a signal (a long poll, "
        "claim_signals_wait) and returns as soon as one is claimable, so a bot claims within ~50 ms of the "
        "emit instead of at its next poll; each waiting bot holds one PostgREST pool connection. 0: poll "
        "every claim_interval_s"))
    claim_batch: int = Field(5, ge=1, le=100)
    lease_s: int = Field(120, ge=10)
    heartbeat_interval_s: float = Field(30.0, gt=0)
    outbox_path: str = Field("data/signal_executor_outbox.{consumer}.jsonl",
                             description="append-only event log; {consumer} is replaced by the consumer name")
    # pre-trade gates
    max_price_deviation_pct: Decimal = Field(Decimal("1.0"), gt=0)
    stability_window_s: float = Field(5.0, ge=0)
    stability_sample_s: float = Field(1.0, gt=0)
    max_instability_pct: Decimal = Field(Decimal("0.5"), gt=0)
    max_spread_pct: Decimal = Field(Decimal("0.5"), gt=0)
    # orders
    entry_order_type: Literal["market", "limit"] = "market"
    take_profit_order_type: Literal["market", "limit"] = Field("market", description=(
        "limit: once the entry fills, a resting limit sell at the take-profit price (maker fees on a real "
        "exchange); stop loss, time limit and trailing stop are still watched and cancel it first"))
    limit_timeout_s: float = Field(60.0, gt=0)
    # order health
    health_check_interval_s: float = Field(30.0, gt=0)
    stale_order_s: float = Field(600.0, gt=0)
    stale_entry_action: Literal["reprice", "abandon"] = "reprice"
    partial_fill_max_age_s: float = Field(300.0, gt=0)
    partial_fill_action: Literal["complete", "cancel"] = "complete"
    lost_order_grace_s: float = Field(30.0, gt=0)
    # a real exchange
    market_order_timeout_s: float = Field(30.0, gt=0, description=(
        "a market order with no final event this long after it was placed, and unknown to the connector, is lost"))
    max_order_retries: int = Field(3, ge=1, description="failed exits in a row before the position is marked stuck")
    min_notional_quote: Decimal = Field(Decimal("0"), ge=0, description=(
        "smallest order value, in the pair's quote asset, where the connector publishes no trading rule (paper "
        "connectors); 0: no check there"))
    peak_report_interval_s: float = Field(5.0, gt=0, description="how often a risen trailing peak is persisted")

    @model_validator(mode="after")
    def _partial_fill_reachable(self) -> SignalExecutorConfig:
        # A partially filled order is handled by partial_fill_max_age_s alone; an unfilled resting order goes
        # stale at stale_order_s. A partial age past the stale age would describe a rule that never runs.
        if self.partial_fill_max_age_s >= self.stale_order_s:
            raise ValueError(f"partial_fill_max_age_s ({self.partial_fill_max_age_s:g}) must be shorter than "
                             f"stale_order_s ({self.stale_order_s:g}), or a partial fill is never handled")
        return self

    def update_markets(self, markets: Any) -> Any:
        markets[self.connector] = markets.get(self.connector, set()) | set(self.trading_pairs)
        return markets

