"""The pre-trade gates: the first one a claimed signal fails against the live book, wallet and caps."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from hummingbot.core.data_type.common import TradeType
from hummingbot.core.data_type.order_candidate import OrderCandidate

from bridge.schemas import Signal
from executor.config import SignalExecutorConfig
from executor.market import Market
from executor.models import HUNDRED, ZERO, PendingSignal, Position
from executor.pricing import PriceWindow, grid_orders


def first_failure(signal: Signal, now: float, config: SignalExecutorConfig, market: Market,
                  positions: dict[UUID, Position], pending: dict[UUID, PendingSignal]) -> tuple[str, str] | None:
    """The first gate a claimed signal fails, as (gate, reason); None when it may go on to sampling."""
    if signal.expires_at.timestamp() <= now:
        return "expired", f"expired at {signal.expires_at.isoformat()}"
    if signal.side != "buy":
        return "unsupported_side", (f"{signal.side} signals are not traded: {config.connector} is spot and "
                                    "this bot only opens long positions")
    if signal.symbol not in config.trading_pairs or not market.has_book(signal.symbol):
        return "pair", f"{signal.symbol} is not traded by {config.connector}"
    same_pair = sum(1 for p in positions.values() if p.signal.symbol == signal.symbol)
    same_pair += sum(1 for p in pending.values() if p.signal.symbol == signal.symbol)
    if len(positions) + len(pending) >= config.max_open_positions:
        return "max_positions", f"max open positions reached ({config.max_open_positions})"
    if same_pair >= config.max_open_per_pair:
        return "max_positions", f"max open positions for {signal.symbol} reached ({config.max_open_per_pair})"
    bid, ask, mid = market.book(signal.symbol)
    if bid <= 0 or ask <= 0:
        return "book", f"no book for {signal.symbol}"
    deviation = abs(mid - signal.price) / signal.price * HUNDRED
    if deviation > config.max_price_deviation_pct:
        return "price_moved", (f"price moved {deviation:.2f}% from the signal's {signal.price} "
                               f"(max {config.max_price_deviation_pct}%)")
    spread = (ask - bid) / mid * HUNDRED
    if spread > config.max_spread_pct:
        return "spread", f"spread {spread:.2f}% wider than {config.max_spread_pct}%"
    amount = market.entry_amount(signal, ask)
    if problem := market.below_minimum(signal.symbol, amount, ask):
        quote = config.quote_amount or signal.quote_amount
        return "below_min_notional", f"an entry of {quote} {signal.symbol.split('-')[1]} is {problem}"
    return _balance(signal, amount, ask, config, market)


def _balance(signal: Signal, amount: Decimal, ask: Decimal, config: SignalExecutorConfig,
             market: Market) -> tuple[str, str] | None:
    # the grid's levels rest on the same balance: the entry and every level must fit
    grid_quote = sum((q for _, _, q in grid_orders(signal, ask, market.quote_scale(signal))), ZERO)
    candidate = OrderCandidate(trading_pair=signal.symbol, is_maker=config.entry_order_type == "limit",
                               order_type=market.entry_type(), order_side=TradeType.BUY,
                               amount=amount + grid_quote / ask, price=ask)
    adjusted = market.connector().budget_checker.adjust_candidate(candidate, all_or_none=True)
    if adjusted.amount <= 0:
        grid = f" and its grid of {grid_quote:.8g} {signal.symbol.split('-')[1]}" if grid_quote else ""
        return "balance", f"balance too small for {amount} {signal.symbol.split('-')[0]} at {ask}{grid}"
    return None


def unstable(signal: Signal, prices: PriceWindow, config: SignalExecutorConfig) -> tuple[str, str] | None:
    """The stability gate on the pair's last stability_window_s of samples (the window must be full)."""
    worst = prices.instability(signal.symbol)
    if worst > config.max_instability_pct:
        return "unstable", (f"price moved {worst:.2f}% within {config.stability_window_s:g} s "
                            f"(max {config.max_instability_pct}%)")
    return None


def sample_prices(prices: PriceWindow, pairs: list[str], market: Market, now: float) -> None:
    """Every traded pair's book into the rolling stability window, on every tick from the first ready one."""
    for pair in pairs:
        if not market.has_book(pair):
            continue
        bid, ask, _ = market.book(pair)
        if bid > 0 and ask > 0:
            prices.sample(pair, now, bid, ask)


