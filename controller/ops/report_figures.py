"""The report's arithmetic, pure: headline figures of a book of closed trades, per-group tables, rejection
reasons grouped by the gate that wrote them, and the signal funnel's figures. No I/O: `controller.ops.report` reads
the rows and draws; everything a trader reads as a number is computed here and unit-tested.

Net return is additive, not compounded: the executor sizes every entry at a fixed amount of the quote
currency (`sizing.quotes`), so a trade's P&L does not grow with the book, and the book's equity after n
trades is its starting capital plus the sum of their P&L. The return is that sum over the starting capital,
and the drawdown is measured on the same equity curve (peak to trough over the peak), so the two agree: a
book that lost everything it started with has drawn down 100 %, never more.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

# A standard deviation this small (relative to the mean, in percentage points) is zero: equal returns that
# differ only by float rounding would otherwise give a Sharpe ratio of 1e14.
ZERO_SPREAD = 1e-9


def quote_of(symbol: str) -> str:
    """The quote currency of a BASE-QUOTE pair: "BTC" for ETH-BTC."""
    return symbol.rsplit("-", 1)[-1]


@dataclass(frozen=True)
class Headline:
    """The figures at the top of the report, for the closed trades of one quote currency.

    `None` means the figure does not exist for this book (no trade, no capital known, no losing trade for
    the profit factor, no spread of returns for Sharpe or Sortino): the report shows it as "—"."""

    quote: str
    capital: float | None  # what the book started with, in `quote`
    trades: int
    wins: int
    win_rate_pct: float | None
    net_pnl_quote: float
    net_return_pct: float | None  # net_pnl_quote / capital
    profit_factor: float | None  # gross profit / gross loss
    expectancy_pct: float | None  # mean P&L per trade, % of the trade's entry notional
    expectancy_quote: float | None  # mean P&L per trade, in `quote`
    max_drawdown_pct: float | None  # of the equity curve capital + cumulative P&L; in [0, 100]
    max_drawdown_quote: float  # the same trough below its peak, in `quote` (>= 0)
    mean_duration_s: float | None
    median_duration_s: float | None
    sharpe: float | None  # mean / sample standard deviation of per-trade P&L %, not annualised
    sortino: float | None  # mean / downside deviation (target 0) of per-trade P&L %, not annualised
    equity: tuple[float, ...] = field(default=(), repr=False)  # capital + cumulative P&L after each trade


def headline(trades: Sequence[Mapping[str, Any]], capital: float | None, quote: str) -> Headline:
    """Headline figures of closed trades (each with pnl_quote, pnl_pct, opened_at, closed_at), taken in the
    order they closed. P&L is after fees; a win is a trade whose P&L in quote is above zero."""
    ordered = sorted(trades, key=lambda t: t["closed_at"])
    pnl = np.array([float(t["pnl_quote"]) for t in ordered], dtype=float)
    pct = np.array([float(t["pnl_pct"]) for t in ordered], dtype=float)
    durations = np.array([_seconds(t["closed_at"] - t["opened_at"]) for t in ordered], dtype=float)
    n = len(ordered)
    wins = int((pnl > 0).sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    start = capital if capital is not None and capital > 0 else None

    cumulative = np.cumsum(pnl)
    # the trough below the running peak; the curve starts at 0 P&L, so a first losing trade is a drawdown
    peaks = np.maximum.accumulate(np.concatenate(([0.0], cumulative)))[1:]
    drawdown_quote = float((peaks - cumulative).max()) if n else 0.0
    drawdown_pct = None
    equity: tuple[float, ...] = ()
    if start is not None:
        curve = start + cumulative
        equity = tuple(float(v) for v in curve)
        if n:
            peak_equity = start + peaks
            # equity below zero is ruin: the book cannot lose more than all of it
            drawdown_pct = float(((peak_equity - np.maximum(curve, 0.0)) / peak_equity).max() * 100)
        else:
            drawdown_pct = 0.0
    return Headline(
        quote=quote, capital=start, trades=n, wins=wins,
        win_rate_pct=wins / n * 100 if n else None,
        net_pnl_quote=float(pnl.sum()),
        net_return_pct=float(pnl.sum()) / start * 100 if start is not None else None,
        profit_factor=float(pnl[pnl > 0].sum()) / gross_loss if gross_loss > 0 else None,
        expectancy_pct=float(pct.mean()) if n else None,
        expectancy_quote=float(pnl.mean()) if n else None,
        max_drawdown_pct=drawdown_pct,
        max_drawdown_quote=drawdown_quote,
        mean_duration_s=float(durations.mean()) if n else None,
        median_duration_s=float(np.median(durations)) if n else None,
        sharpe=sharpe(pct), sortino=sortino(pct), equity=equity)


def _seconds(delta: Any) -> float:
    return float(delta.total_seconds())


def sharpe(returns: Sequence[float] | np.ndarray) -> float | None:
    """Mean over sample standard deviation; None with fewer than two returns or no spread between them."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        return None
    spread = float(r.std(ddof=1))
    mean = float(r.mean())
    if spread <= ZERO_SPREAD * max(1.0, abs(mean)):
        return None
    return mean / spread


def sortino(returns: Sequence[float] | np.ndarray) -> float | None:
    """Mean over the downside deviation sqrt(mean(min(r, 0)^2)) over all returns; None with fewer than two
    returns or no loss among them (no downside to divide by)."""
    r = np.asarray(returns, dtype=float)
    if len(r) < 2:
        return None
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    mean = float(r.mean())
    if downside <= ZERO_SPREAD * max(1.0, abs(mean)):
        return None
    return mean / downside


# --- per strategy, per exit reason ---------------------------------------------------------------------

@dataclass(frozen=True)
class GroupRow:
    key: str
    quote: str
    trades: int
    win_rate_pct: float
    mean_pnl_pct: float
    total_pnl_quote: float


def by_group(trades: Iterable[Mapping[str, Any]], key: str) -> list[GroupRow]:
    """Trades, win rate, mean P&L % and total P&L per value of `key` (e.g. "strategy", "exit_reason") and
    quote currency (amounts of two currencies are never added), most trades first."""
    grouped: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for t in trades:
        grouped.setdefault((str(t[key]), quote_of(t["symbol"])), []).append(t)
    rows = [GroupRow(k, q, len(g), sum(float(t["pnl_quote"]) > 0 for t in g) / len(g) * 100,
                     sum(float(t["pnl_pct"]) for t in g) / len(g), sum(float(t["pnl_quote"]) for t in g))
            for (k, q), g in grouped.items()]
    return sorted(rows, key=lambda r: (-r.trades, r.key, r.quote))


# --- rejections by gate ------------------------------------------------------------------------------

# The reason texts the executor's gates (executor/gates.py, hummingbot_scripts/signal_executor.py; the first
# element is the gate name they report under) and the queue's claim_signals (supabase/migrations) write, with
# the label the report shows. The first pattern that matches wins, so the stability gate's "price moved X%
# within N s" is tried before the deviation gate's "price moved X% from the signal's".
GATES: tuple[tuple[str, str, re.Pattern[str]], ...] = tuple((name, label, re.compile(pattern))
                                                              for name, label, pattern in (
    ("unstable", "price stability", r"^price moved [-\d.]+ ?% within "),
    ("price_moved", "price moved from the signal", r"^price moved "),
    ("spread", "spread", r"^spread [-\d.]+ ?% wider than"),
    ("expired", "expired", r"^expired at "),
    ("max_positions", "max open positions", r"^max open positions"),
    ("pair", "pair not traded", r" is not traded by "),
    ("book", "no order book", r"^no book for "),
    ("below_min_notional", "below the exchange minimum", r"^an entry of .+ is "),
    ("balance", "balance", r"^balance too small"),
    ("unsupported_side", "side not traded", r" signals are not traded"),
    ("duplicate", "duplicate", r" was already executed by this bot$"),
    ("strategy_exit", "exit before the entry was placed", r"^exit signal .+ came before the entry was placed"),
    ("no_position", "exit without a position",
     r"no open position of entry|no position to exit|before its exit was claimed"),
))
OTHER_GATE = "other"


def gate_of(reason: str | None) -> str:
    """The label of the gate a rejection reason text comes from, "other" for a text no gate writes."""
    text = (reason or "").strip()
    return next((label for _, label, pattern in GATES if pattern.search(text)), OTHER_GATE)


@dataclass(frozen=True)
class GateRow:
    gate: str
    signals: int
    texts: int  # distinct reason texts grouped here
    example: str  # the most frequent of them
    strategies: tuple[str, ...]


def by_gate(rejections: Iterable[tuple[str, str | None, int]]) -> list[GateRow]:
    """(strategy, reason, signals) rows grouped by gate, most signals first."""
    texts: dict[str, dict[str, int]] = {}
    strategies: dict[str, set[str]] = {}
    for strategy, reason, count in rejections:
        gate = gate_of(reason)
        mine = texts.setdefault(gate, {})
        mine[reason or ""] = mine.get(reason or "", 0) + int(count)
        strategies.setdefault(gate, set()).add(strategy)
    rows = [GateRow(gate, sum(t.values()), len(t), max(sorted(t), key=lambda r: t[r]), tuple(sorted(strategies[gate])))
            for gate, t in texts.items()]
    return sorted(rows, key=lambda r: (-r.signals, r.gate))


# --- the funnel ---------------------------------------------------------------------------------------

STAGES = ("claimed", "ordered", "filled", "closed")


@dataclass(frozen=True)
class Funnel:
    """Entry signals through the stages, as the view `dashboard_signal_funnel` counts them: each stage counts
    the signals that passed it and every stage before, so it only narrows. `skipped` counts signals recorded
    at a later stage without an earlier one (e.g. a trade row with no entry fill logged): they stop at the
    stage they skipped, and are named. rejected, expired and open count entry signals by status; waiting, the
    new ones no executor has claimed yet."""

    emitted: int = 0
    claimed: int = 0
    ordered: int = 0
    filled: int = 0
    closed: int = 0
    rejected: int = 0
    expired: int = 0
    open: int = 0
    waiting: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # stage -> signals that reached a later one without it

    def stages(self) -> list[tuple[str, int]]:
        return [("emitted", self.emitted), *((s, getattr(self, s)) for s in STAGES)]

    @property
    def never_claimed(self) -> int:
        """Entries that left the queue before any executor claimed them (expired unclaimed)."""
        return self.emitted - self.claimed - self.waiting


@dataclass(frozen=True)
class ExitCounts:
    """Exit signals (the controller's strategy exits), counted apart as the view `dashboard_exit_signals`
    does: they close an entry's position and place no entry order of their own."""

    emitted: int = 0
    claimed: int = 0
    executed: int = 0  # closed: the close of their entry's position was under way
    rejected: int = 0
    expired: int = 0
    open: int = 0
    waiting: int = 0


# --- formatting --------------------------------------------------------------------------------------

DASH = "—"


def duration_text(seconds: float | None) -> str:
    """1 d 2 h, 3 h 05 min, 12 min, 40 s."""
    if seconds is None:
        return DASH
    s = round(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def amount_text(value: float | None, quote: str, signed: bool = True) -> str:
    """An amount in a named currency, never an SI prefix: "+0.00012345 BTC"."""
    if value is None:
        return DASH
    # fixed point to the satoshi, trailing zeros cut but two decimals kept: no "1.2e-05", no "12μ"
    text = f"{value:{'+' if signed else ''}.8f}".rstrip("0")
    decimals = len(text.split(".")[1])
    return f"{text}{'0' * max(0, 2 - decimals)} {quote}"


def figure_text(value: float | None, fmt: str = ".2f", unit: str = "") -> str:
    return DASH if value is None else f"{value:{fmt}}{unit}"


def market_time(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M}"
