"""The pure arithmetic: exits on one tick, the DCA grid's levels, a fill's fee parts, price stability."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from hummingbot.core.data_type.common import TradeType
from hummingbot.core.data_type.trade_fee import DeductedFromReturnsTradeFee, TradeFeeBase

from bridge import exits
from bridge.schemas import Signal
from executor.models import HUNDRED, ZERO, Position


def barrier_hit(position: Position, bid: Decimal, now: float) -> str | None:
    """Which exit the price and clock call for: the shared exit rule on one tick (`bridge.exits`).

    A long position exits by selling, so the rule sees the best bid (what a sell gets), not the mid."""
    held = now - position.opened_at if position.opened_at is not None else None
    hit, _ = exits.check(position.signal, position.entry_price, position.peak, bid, bid, bid, held)
    return hit.reason if hit is not None else None


def grid_orders(signal: Signal, entry_price: Decimal,
                scale: Decimal = Decimal(1)) -> list[tuple[int, Decimal, Decimal]]:
    """The DCA grid of an entry filled at `entry_price`: (level, limit price, quote) for each resting limit buy,
    level i at entry x (1 - i x spacing / 100), above a zero price. `scale` follows a config
    quote_amount that overrides the signal's amount, so the grid keeps its share of the entry."""
    if not signal.grid_levels or signal.grid_spacing_pct is None or signal.grid_level_quote is None:
        return []
    return [(i, entry_price * (HUNDRED - i * signal.grid_spacing_pct) / HUNDRED, signal.grid_level_quote * scale)
            for i in range(1, signal.grid_levels + 1)
            if i * signal.grid_spacing_pct < HUNDRED]


def fee_parts(fee: TradeFeeBase, side: TradeType, base: str, quote: str, price: Decimal,
              amount: Decimal) -> tuple[str, Decimal, Decimal]:
    """(asset, amount in that asset, of which taken from the base coin the position holds) of one fill's fee.

    A percent fee deducted from a buy's returns is taken in the base coin (Binance); otherwise it is in the
    quote asset. A flat fee is in its own token (e.g. BNB). Fees in several tokens at once are reported in
    the first; the quote value (`fee_amount_in_token`) still counts them all."""
    deducted_buy = isinstance(fee, DeductedFromReturnsTradeFee) and side == TradeType.BUY
    base_taken = ZERO
    asset, total = quote, ZERO
    if fee.percent > 0:
        if deducted_buy and fee.percent_token in (None, base):
            asset, total = base, fee.percent * amount
            base_taken = total
        else:
            asset, total = quote, fee.percent * amount * price
    for flat in fee.flat_fees:
        if total == 0 or flat.token == asset:
            asset, total = flat.token, total + flat.amount
        if flat.token == base and deducted_buy:
            base_taken += flat.amount
    return asset, total, base_taken


def instability_pct(samples: list[Decimal]) -> Decimal:
    """(max - min) / min over a window of prices, in percent: the stability gate's measure."""
    low = min(samples)
    return (max(samples) - low) / low * HUNDRED if low > 0 else HUNDRED


class PriceWindow:
    """The best bid and ask of each traded pair, sampled every `sample_s` from the first ready tick, kept for the
    last `window_s` (and the one sample at or before its start, so the window is known to be covered).

    The stability gate reads it when a signal is claimed: once the bot has run `window_s`, a
    signal is decided on its first tick instead of waiting `window_s` of fresh samples.
    """

    def __init__(self, window_s: float, sample_s: float) -> None:
        self.window_s = window_s
        self.sample_s = sample_s
        self._samples: dict[str, deque[tuple[float, Decimal, Decimal]]] = {}

    def sample(self, pair: str, now: float, bid: Decimal, ask: Decimal) -> None:
        samples = self._samples.setdefault(pair, deque())
        if samples and now - samples[-1][0] < self.sample_s:
            return
        samples.append((now, bid, ask))
        while len(samples) > 1 and samples[1][0] <= now - self.window_s:
            samples.popleft()

    def full(self, pair: str, now: float) -> bool:
        """Whether the samples cover the whole window up to now."""
        samples = self._samples.get(pair)
        return bool(samples) and samples[0][0] <= now - self.window_s

    def instability(self, pair: str) -> Decimal:
        """The larger of the bid's and the ask's (max - min) / min over the window, in percent."""
        samples = self._samples[pair]
        return max(instability_pct([bid for _, bid, _ in samples]), instability_pct([ask for _, _, ask in samples]))

