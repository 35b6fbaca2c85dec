"""Reading the HTML report as a trader reads it (its headline cards), and the headline figures recomputed
in SQL from the `trades` table alone, independently of controller.ops.report_figures."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import psycopg

from controller.ops.report_figures import amount_text, duration_text

CARD = re.compile(r'<div class="label">(.*?)</div><div class="value">(.*?)</div>')


def cards(page: str) -> dict[str, str]:
    """Label -> value of every headline card of a report page."""
    return {html.unescape(k): html.unescape(v) for k, v in CARD.findall(page)}


@dataclass(frozen=True)
class SqlHeadline:
    trades: int
    wins: int
    net_pnl: float
    return_pct: float
    win_rate_pct: float
    profit_factor: float
    expectancy_pct: float
    expectancy_quote: float
    drawdown_pct: float
    drawdown_quote: float
    mean_duration_s: float
    median_duration_s: float
    sharpe: float
    sortino: float


def sql_headline(conn: psycopg.Connection, capital: float) -> SqlHeadline:
    """The headline of every trade in `trades` on `capital`: equity = capital + cumulative P&L in closing order
    (in market time: a scanned signal's trade closes its holding time after the candle it was decided on), its
    peak starting at the capital; Sharpe and Sortino per trade on pnl_pct."""
    row = conn.execute("""
        with t as (select pnl_quote::float8 as p, pnl_pct::float8 as r, signal_id,
                          coalesce((select min(candle_ts) from scans where signal_id = tr.signal_id), opened_at)
                            + (closed_at - opened_at) as closed_at,
                          extract(epoch from closed_at - opened_at)::float8 as d from trades tr),
             c as (select *, sum(p) over (order by closed_at, signal_id) as cum from t),
             k as (select *, greatest(0, max(cum) over (order by closed_at, signal_id)) as peak from c)
        select count(*), count(*) filter (where p > 0), sum(p), sum(p) / %(c)s * 100, avg((p > 0)::int) * 100,
               sum(p) filter (where p > 0) / -sum(p) filter (where p < 0), avg(r), avg(p),
               max((peak - cum) / (%(c)s + peak)) * 100, max(peak - cum), avg(d),
               percentile_cont(0.5) within group (order by d),
               avg(r) / stddev_samp(r), avg(r) / sqrt(avg(least(r, 0) ^ 2))
          from k""", {"c": capital}).fetchone()
    return SqlHeadline(*(float(v) if i > 1 else int(v) for i, v in enumerate(row)))


def expected_cards(h: SqlHeadline, quote: str) -> dict[str, str]:
    """The cards the report must show for these figures, written with the report's own unit formatting."""
    return {
        "net return": f"{h.return_pct:+.2f} %", "net P&L": amount_text(h.net_pnl, quote), "trades": str(h.trades),
        "win rate": f"{h.win_rate_pct:.1f} % ({h.wins}/{h.trades})", "profit factor": f"{h.profit_factor:.2f}",
        "expectancy / trade": f"{h.expectancy_pct:+.3f} % · {amount_text(h.expectancy_quote, quote)}",
        "max drawdown": f"{h.drawdown_pct:.2f} % · {amount_text(-h.drawdown_quote, quote)}",
        "duration avg · median": f"{duration_text(h.mean_duration_s)} · {duration_text(h.median_duration_s)}",
        "Sharpe (per trade)": f"{h.sharpe:.3f}", "Sortino (per trade)": f"{h.sortino:.3f}"}
