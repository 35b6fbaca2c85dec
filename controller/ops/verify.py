"""`python -m controller verify --window 24h`: are trades really happening, and is anything stuck?

The seed's "verify trades" check, over the signal queue and the execution reports:

- the funnel of the entry signals created in the window, stages that only narrow as the dashboard's views count
  them (each signal's furthest stage is read from `dashboard_signal_stages`: emitted, claimed, ordered (an
  entry order placed), filled (an entry fill logged), closed (its trade row written)), then rejected (by
  reason), expired and still open; the exit signals of the window counted apart;
- P&L of the trades closed in the window (sum of trades.pnl_quote per quote currency, win rate), whichever
  signal they belong to;
- every open signal stuck in its state longer than expected, whatever its age, with its id:
    new        past its expires_at (claim_signals would have expired it: no executor is claiming)
    claimed    lease past due (its executor stopped acknowledging)
    executing  no order `no_order_after` after it started executing
    executing  an entry order still open (created / partially filled) `stale_entry_order` after creation
    executing  past its time_limit_s + `time_limit_grace` since it started executing

Exit code: 0 when nothing is stuck, 1 when something is (so cron or CI can alert), 2 for a bad --window.

`analyze` is pure (rows in, report out); `read_rows` is the SQL that feeds it.

Wired into the typer app by controller/cli/ops.py as `verify --window 24h`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from controller.ops.report_figures import STAGES, ExitCounts, amount_text, quote_of
from controller.ops.report_figures import Funnel as EntryFunnel

OPEN_STATUSES = ("new", "claimed", "executing")
OPEN_ORDER_STATUSES = ("created", "partially_filled")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_WINDOW = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_window(text: str) -> timedelta:
    """'30m', '24h', '7d' (also s and w) -> a timedelta; ValueError names what is allowed."""
    match = _WINDOW.match(text.lower()) if text else None
    if match is None:
        raise ValueError(f"window must be a whole number and a unit (s, m, h, d, w), e.g. 30m, 24h or 7d; "
                         f"got {text!r}")
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError(f"window must be longer than zero, got {text!r}")
    window = timedelta(**{_UNITS[match.group(2)]: amount})
    if window > timedelta(days=3650):
        raise ValueError(f"window must be at most 10 years, got {text!r}")
    return window


@dataclass(frozen=True)
class Thresholds:
    """How long a state may last before a signal counts as stuck (the defaults follow the executor's
    order-health intervals, so a signal the executor is still handling is not called stuck)."""

    no_order_after: timedelta = timedelta(minutes=5)        # ORDER_HEALTH_CHECK_INTERVAL = 300 s
    stale_entry_order: timedelta = timedelta(minutes=10)    # ORDER_STALE_THRESHOLD_SECONDS = 600
    time_limit_grace: timedelta = timedelta(minutes=10)     # room for the exit order after the time limit


@dataclass(frozen=True)
class Funnel(EntryFunnel):
    """The report's entry funnel (stages that only narrow, then by status) of the window's signals, with the exit
    signals apart and the rejection reasons of both."""

    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    exits: ExitCounts = field(default_factory=ExitCounts)


@dataclass(frozen=True)
class Pnl:
    trades: int = 0
    wins: int = 0
    by_quote: dict[str, Decimal] = field(default_factory=dict)  # amounts of two quote currencies are never added

    @property
    def win_rate(self) -> float | None:
        return self.wins / self.trades if self.trades else None


@dataclass(frozen=True)
class StuckSignal:
    signal_id: str
    status: str
    problem: str
    since: datetime          # when the state became overdue
    overdue: timedelta       # how long past due at the time of the check
    strategy: str = ""
    symbol: str = ""
    detail: str = ""


@dataclass(frozen=True)
class VerifyReport:
    start: datetime
    end: datetime
    funnel: Funnel
    pnl: Pnl
    stuck: list[StuckSignal]

    @property
    def healthy(self) -> bool:
        return not self.stuck

    @property
    def exit_code(self) -> int:
        return 0 if self.healthy else 1


def _stuck(signal: Mapping[str, Any], problem: str, due: datetime, now: datetime, detail: str = "") -> StuckSignal:
    return StuckSignal(str(signal["id"]), signal["status"], problem, due, now - due,
                       signal.get("strategy", ""), signal.get("symbol", ""), detail)


def find_stuck(signals: Sequence[Mapping[str, Any]], orders: Sequence[Mapping[str, Any]], now: datetime,
               thresholds: Thresholds) -> list[StuckSignal]:
    """Open signals overdue in their state, oldest problem first; a signal may have several problems."""
    orders_of: dict[str, list[Mapping[str, Any]]] = {}
    for order in orders:
        orders_of.setdefault(str(order["signal_id"]), []).append(order)
    stuck = []
    for s in signals:
        if s["status"] == "new" and s["expires_at"] <= now:
            stuck.append(_stuck(s, "new past its expiry", s["expires_at"], now,
                                "never claimed: is an executor polling the queue?"))
        elif s["status"] == "claimed" and s["lease_until"] is not None and s["lease_until"] < now:
            stuck.append(_stuck(s, "claimed, lease past due", s["lease_until"], now,
                                f"claimed by {s.get('claimed_by') or '?'}"))
        elif s["status"] == "executing":
            started = s["executing_at"] or s["claimed_at"] or s["created_at"]
            own = orders_of.get(str(s["id"]), [])
            if not own and started + thresholds.no_order_after < now:
                stuck.append(_stuck(s, "executing without an order", started + thresholds.no_order_after, now))
            # a DCA grid's levels rest below a filled entry until they fill or the exit cancels them: not stuck
            grid_resting = bool(s.get("grid_levels")) and any(
                o["purpose"] == "entry" and (o["filled_amount"] or 0) > 0 for o in own)
            for order in own:
                if (order["purpose"] == "entry" and order["status"] in OPEN_ORDER_STATUSES and not grid_resting
                        and order["created_at"] + thresholds.stale_entry_order < now):
                    stuck.append(_stuck(s, "entry order open too long", order["created_at"]
                                        + thresholds.stale_entry_order, now,
                                        f"order {order['client_order_id']} {order['status']}"))
            if s.get("time_limit_s"):
                due = started + timedelta(seconds=s["time_limit_s"]) + thresholds.time_limit_grace
                if due < now:
                    stuck.append(_stuck(s, "past its time limit", due, now,
                                        f"time_limit_s {s['time_limit_s']} + grace"))
    return sorted(stuck, key=lambda x: (x.since, x.signal_id, x.problem))


STAGE_ORDER = ("emitted", *STAGES)  # the view's `stage` values, in order


def funnel(signals: Sequence[Mapping[str, Any]]) -> Funnel:
    """The funnel of these signals (the caller passes the ones created in the window), each with its `kind` and
    its furthest `stage` as `dashboard_signal_stages` gives it."""
    entries = [s for s in signals if s["kind"] == "entry"]
    exits = [s for s in signals if s["kind"] == "exit"]
    reached = Counter(STAGE_ORDER.index(s["stage"]) for s in entries)
    passed = [sum(n for index, n in reached.items() if index >= i) for i in range(len(STAGE_ORDER))]
    statuses = Counter(s["status"] for s in entries)
    exit_statuses = Counter(s["status"] for s in exits)
    reasons = Counter(s["reject_reason"] or "(none)" for s in signals if s["status"] == "rejected")
    return Funnel(
        *passed,
        rejected=statuses["rejected"],
        expired=statuses["expired"],
        open=sum(statuses[s] for s in OPEN_STATUSES),
        rejected_by_reason=dict(reasons.most_common()),
        exits=ExitCounts(emitted=len(exits), claimed=sum(1 for s in exits if s["claimed_at"] is not None),
                         executed=exit_statuses["closed"], rejected=exit_statuses["rejected"],
                         expired=exit_statuses["expired"], open=sum(exit_statuses[s] for s in OPEN_STATUSES),
                         waiting=sum(1 for s in exits if s["status"] == "new" and s["claimed_at"] is None)),
    )


def pnl(trades: Sequence[Mapping[str, Any]]) -> Pnl:
    by_quote: dict[str, Decimal] = {}
    for t in trades:
        quote = quote_of(t["symbol"])
        by_quote[quote] = by_quote.get(quote, Decimal(0)) + Decimal(t["pnl_quote"])
    return Pnl(trades=len(trades), wins=sum(1 for t in trades if t["pnl_quote"] > 0), by_quote=by_quote)


def analyze(signals: Sequence[Mapping[str, Any]], orders: Sequence[Mapping[str, Any]],
            trades: Sequence[Mapping[str, Any]], start: datetime, end: datetime,
            thresholds: Thresholds = Thresholds()) -> VerifyReport:
    """The report for [start, end): funnel of the signals created then, P&L of the trades closed then, and
    the stuck ones among the open signals given (any age)."""
    in_window = [s for s in signals if start <= s["created_at"] < end]
    open_signals = [s for s in signals if s["status"] in OPEN_STATUSES and s["created_at"] < end]
    closed = [t for t in trades if start <= t["closed_at"] < end]
    return VerifyReport(start, end, funnel(in_window), pnl(closed),
                        find_stuck(open_signals, orders, end, thresholds))


_SIGNALS = """
    select s.id, s.strategy, s.symbol, s.kind, s.status, s.created_at, s.expires_at, s.claimed_by, s.claimed_at,
           s.lease_until, s.executing_at, s.finished_at, s.reject_reason, s.time_limit_s, s.grid_levels, st.stage
      from signals s join dashboard_signal_stages st on st.signal_id = s.id
     where s.created_at < %(end)s and (s.created_at >= %(start)s or s.status = any(%(open)s))
"""
_ORDERS = """
    select client_order_id, signal_id, purpose, status, filled_amount, created_at
      from orders where signal_id = any(%(ids)s)
"""
_TRADES = ("select signal_id, symbol, pnl_quote, closed_at from trades"
           " where closed_at >= %(start)s and closed_at < %(end)s")


def read_rows(conn: psycopg.Connection, start: datetime, end: datetime) -> tuple[list[dict[str, Any]], ...]:
    """Signals created in [start, end) or still open, their orders, and the trades closed in [start, end)."""
    cur = conn.cursor(row_factory=dict_row)
    params = {"start": start, "end": end, "open": list(OPEN_STATUSES)}
    signals = cur.execute(_SIGNALS, params).fetchall()
    orders = cur.execute(_ORDERS, {"ids": [s["id"] for s in signals]}).fetchall()
    trades = cur.execute(_TRADES, params).fetchall()
    conn.rollback()  # read only
    return signals, orders, trades


def verify(conn: psycopg.Connection, window: timedelta, now: datetime | None = None,
           thresholds: Thresholds = Thresholds()) -> VerifyReport:
    """Read the rows of the window ending at `now` (the database's clock by default) and analyze them."""
    end = now or conn.execute("select now()").fetchone()[0]
    signals, orders, trades = read_rows(conn, end - window, end)
    return analyze(signals, orders, trades, end - window, end, thresholds)


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} d"


def print_report(report: VerifyReport, console: Console) -> None:
    f, p = report.funnel, report.pnl
    console.print(f"signals created {report.start:%Y-%m-%d %H:%M} to {report.end:%Y-%m-%d %H:%M} UTC", highlight=False)
    table = Table(title="entry signal funnel (each stage within the one before)")
    table.add_column("stage")
    table.add_column("signals", justify="right")
    table.add_column("of emitted", justify="right")
    for stage, count in (("emitted", f.emitted), ("claimed", f.claimed), ("ordered", f.ordered),
                         ("filled", f.filled), ("closed", f.closed), ("rejected", f.rejected),
                         ("expired", f.expired), ("still open", f.open)):
        share = f"{count / f.emitted:.0%}" if f.emitted else "-"
        table.add_row(stage, str(count), share)
    console.print(table)
    x = f.exits
    console.print(f"exit signals (counted apart): {x.emitted} emitted, {x.executed} executed, {x.rejected} rejected, "
                  f"{x.expired} expired, {x.open} open", highlight=False)
    if f.rejected_by_reason:
        reasons = Table(title="rejected, by reason")
        reasons.add_column("reason")
        reasons.add_column("signals", justify="right")
        for reason, count in f.rejected_by_reason.items():
            reasons.add_row(reason, str(count))
        console.print(reasons)
    win_rate = "-" if p.win_rate is None else f"{p.win_rate:.0%}"
    amounts = ", ".join(amount_text(float(v), q) for q, v in sorted(p.by_quote.items())) or "0"
    console.print(f"trades closed in the window: {p.trades}, P&L {amounts}, win rate {win_rate}", highlight=False)
    if report.healthy:
        console.print("[green]nothing stuck[/green]")
        return
    stuck = Table(title=f"stuck signals ({len(report.stuck)})")
    for column in ("signal", "status", "problem", "overdue", "strategy", "symbol", "detail"):
        stuck.add_column(column)
    for s in report.stuck:
        stuck.add_row(s.signal_id, s.status, s.problem, _ago(s.overdue), s.strategy, s.symbol, s.detail)
    console.print(stuck)


