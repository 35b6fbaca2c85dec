"""The HTML report: `python -m controller report --out FILE.html`.

`read_report` reads the dashboard views and tables once; `build_html` is pure (data in, one HTML string out)
and draws with Plotly, whose JavaScript is inlined once, so the file opens with no network. A section with
no data says so instead of drawing an empty chart. Every chart is a `div.chart` whose Plotly root gets the
class `js-plotly-plot` once drawn: the browser test counts them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from controller.ops.phase_check import PHASES, PhaseResult, TradeRow, check, ml_arms
from controller.ops.retention import TableStorage, human_bytes, storage_report

MAX_PRICE_CHARTS = 4  # pairs with the most trades get a price chart each
CALIBRATION_BINS = 5


@dataclass(frozen=True)
class ReportData:
    trades: list[dict[str, Any]] = field(default_factory=list)
    funnel: dict[str, int] = field(default_factory=dict)
    rejections: list[tuple[str, str, int]] = field(default_factory=list)
    candles: dict[str, list[tuple[datetime, float, float, float, float]]] = field(default_factory=dict)
    predictions: list[tuple[float, bool]] = field(default_factory=list)  # (confidence, trade won)
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    storage: list[TableStorage] = field(default_factory=list)
    phases: list[PhaseResult] = field(default_factory=list)


# --- reading ---------------------------------------------------------------------------------------

def _dicts(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(query, params)
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def read_report(conn: psycopg.Connection) -> ReportData:
    """Everything the report shows, from the views and tables of one database."""
    # Trades are placed in market time: the entry at the close of the candle the signal was decided on (its scan
    # row), the exit one holding period later. Live, that is within seconds of the order times; in a replay the
    # executor's clock is not the candles' clock, and only market time puts the marks on the price chart.
    trades = _dicts(conn, """
        select s.strategy, t.symbol, t.side, t.exit_reason, t.entry_price::float8 as entry_price,
               t.exit_price::float8 as exit_price, t.amount::float8 as amount, t.pnl_quote::float8 as pnl_quote,
               t.pnl_pct::float8 as pnl_pct, t.fees_quote::float8 as fees_quote,
               coalesce(sc.candle_ts, t.opened_at) as opened_at,
               coalesce(sc.candle_ts, t.opened_at) + (t.closed_at - t.opened_at) as closed_at,
               s.ml_confidence, s.exchange,
               (select p.arm from ml_predictions p where p.signal_id = s.id order by p.id desc limit 1) as ml_arm
          from trades t join signals s on s.id = t.signal_id
          left join lateral (select min(candle_ts) as candle_ts from scans where signal_id = s.id) sc on true
         order by 12""")
    row = conn.execute("select coalesce(sum(emitted), 0), coalesce(sum(claimed), 0), coalesce(sum(ordered), 0),"
                       " coalesce(sum(filled), 0), coalesce(sum(closed), 0) from dashboard_signal_funnel").fetchone()
    funnel = dict(zip(("emitted", "claimed", "ordered", "filled", "closed"), map(int, row), strict=True))
    rejections = [(s, r, int(n)) for s, r, n in conn.execute(
        "select strategy, reason, sum(signals) from dashboard_signal_rejections group by 1, 2 order by 3 desc")]
    counts: dict[tuple[str, str], int] = {}
    for t in trades:
        counts[(t["exchange"], t["symbol"])] = counts.get((t["exchange"], t["symbol"]), 0) + 1
    candles = {}
    for exchange, symbol in sorted(counts, key=lambda k: -counts[k])[:MAX_PRICE_CHARTS]:
        mine = [t for t in trades if t["symbol"] == symbol]
        start, end = min(t["opened_at"] for t in mine), max(t["closed_at"] for t in mine)
        timeframe = conn.execute(
            "select timeframe from candles where exchange = %s and symbol = %s and ts between %s and %s"
            " group by 1 order by count(*) desc limit 1", (exchange, symbol, start, end)).fetchone()
        if timeframe is not None:
            candles[symbol] = conn.execute(
                "select ts, open, high, low, close from candles where exchange = %s and symbol = %s"
                " and timeframe = %s and ts between %s - interval '2 hours' and %s + interval '2 hours' order by ts",
                (exchange, symbol, timeframe[0], start, end)).fetchall()
    predictions = [(float(c), bool(w)) for c, w in conn.execute(
        "select p.confidence, t.pnl_quote > 0 from ml_predictions p join trades t on t.signal_id = p.signal_id")]
    leaderboard = _dicts(conn, "select strategy, name, window_h, windows_h, window_end, evidence_start, evidence_end,"
                               " trades, win_rate_pct, avg_pnl_pct, total_pnl_pct, max_drawdown_pct, sharpe,"
                               " mean_diff_pct, ci_low_pct, ci_high_pct, q_shown, basis"
                               " from dashboard_shadow_leaderboard"
                               " order by strategy, window_h, total_pnl_pct desc nulls last, name")
    recommendations = _dicts(conn, "select id, strategy, status, created_at, decided_at, rollback_of,"
                                   " to_params_hash from recommendations order by created_at, id")
    conn.rollback()
    storage = storage_report(conn)
    phases = check(conn, PHASES)
    return ReportData(trades, funnel, rejections, candles, predictions, leaderboard, recommendations, storage, phases)


# --- drawing ---------------------------------------------------------------------------------------

def _figure_html(fig: Any, div_id: str) -> str:
    fig.update_layout(margin={"l": 50, "r": 20, "t": 40, "b": 40}, height=360, template="plotly_white")
    # ids are prefixed: a bare "equity" would also name the section, and Plotly would draw into that
    return ('<div class="chart">' + fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{div_id}",
                                                config={"displaylogo": False, "responsive": True}) + "</div>")


def _empty(what: str) -> str:
    return f'<p class="empty">No data: {html.escape(what)}.</p>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{body}</section>'


def equity_section(data: ReportData) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not data.trades:
        return _empty("no closed trade yet")
    times = [t["closed_at"] for t in data.trades]
    equity, peak, drawdown, total = [], 0.0, [], 0.0
    for t in data.trades:
        total += t["pnl_quote"]
        peak = max(peak, total)
        equity.append(total)
        drawdown.append(total - peak)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06)
    fig.add_trace(go.Scatter(x=times, y=equity, name="cumulative P&L", mode="lines"), row=1, col=1)
    fig.add_trace(go.Scatter(x=times, y=drawdown, name="drawdown", fill="tozeroy", mode="lines",
                             line={"color": "#c0392b"}), row=2, col=1)
    fig.update_yaxes(title_text="P&L (quote)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown", row=2, col=1)
    return _figure_html(fig, "equity") + (f"<p>{len(data.trades)} trades, P&amp;L {total:+.8g}, "
                                          f"max drawdown {min(drawdown):+.8g} (quote; fees included)</p>")


def pnl_section(data: ReportData) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not data.trades:
        return _empty("no closed trade yet")
    by_strategy: dict[str, float] = {}
    by_pair: dict[str, float] = {}
    for t in data.trades:
        by_strategy[t["strategy"]] = by_strategy.get(t["strategy"], 0.0) + t["pnl_quote"]
        by_pair[t["symbol"]] = by_pair.get(t["symbol"], 0.0) + t["pnl_quote"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("per strategy", "per pair"))
    for col, values in ((1, by_strategy), (2, by_pair)):
        fig.add_trace(go.Bar(x=list(values), y=list(values.values()), showlegend=False,
                             marker_color=["#27ae60" if v >= 0 else "#c0392b" for v in values.values()]),
                      row=1, col=col)
    return _figure_html(fig, "pnl")


def funnel_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    if not data.funnel.get("emitted"):
        return _empty("no signal emitted yet")
    parts = [_figure_html(go.Figure(go.Funnel(y=list(data.funnel), x=list(data.funnel.values()),
                                              textinfo="value+percent initial")), "funnel")]
    if data.rejections:
        labels = [f"{s}: {r}" for s, r, _ in data.rejections[:12]]
        parts.append(_figure_html(go.Figure(go.Bar(x=[n for *_, n in data.rejections[:12]], y=labels,
                                                   orientation="h")), "rejections"))
    else:
        parts.append(_empty("no signal was rejected"))
    return "".join(parts)


def trades_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    if not data.trades:
        return _empty("no closed trade yet")
    parts = []
    for i, (symbol, rows) in enumerate(data.candles.items()):
        mine = [t for t in data.trades if t["symbol"] == symbol]
        fig = go.Figure(go.Candlestick(x=[r[0] for r in rows], open=[r[1] for r in rows], high=[r[2] for r in rows],
                                       low=[r[3] for r in rows], close=[r[4] for r in rows], name=symbol))
        fig.add_trace(go.Scatter(x=[t["opened_at"] for t in mine], y=[t["entry_price"] for t in mine], mode="markers",
                                 name="entry", marker={"symbol": "triangle-up", "size": 11, "color": "#2471a3"}))
        fig.add_trace(go.Scatter(x=[t["closed_at"] for t in mine], y=[t["exit_price"] for t in mine], mode="markers",
                                 name="exit", text=[t["exit_reason"] for t in mine],
                                 marker={"symbol": "x", "size": 10, "color": "#8e44ad"}))
        fig.update_layout(title=f"{symbol}: entries and exits", xaxis_rangeslider_visible=False)
        parts.append(_figure_html(fig, f"price-{i}"))
    if not data.candles:
        parts.append(_empty("no stored candles cover the traded pairs"))
    rows = [(t["closed_at"].strftime("%Y-%m-%d %H:%M"), t["strategy"], t["symbol"], t["exit_reason"],
             f"{t['entry_price']:.8g}", f"{t['exit_price']:.8g}", f"{t['pnl_quote']:+.8g}", f"{t['pnl_pct']:+.2f}")
            for t in data.trades[-50:]]
    parts.append(f"<p>The last {len(rows)} of {len(data.trades)} trades:</p>")
    parts.append(_table(("closed", "strategy", "pair", "exit", "entry", "exit price", "P&L", "P&L %"), rows))
    return "".join(parts)


def calibration(predictions: Sequence[tuple[float, bool]],
                bins: int = CALIBRATION_BINS) -> list[tuple[float, float, int]]:
    """(mean confidence, realised win rate, count) per equal-width confidence bin that has predictions."""
    grouped: dict[int, list[tuple[float, bool]]] = {}
    for confidence, won in predictions:
        grouped.setdefault(min(int(confidence * bins), bins - 1), []).append((confidence, won))
    return [(sum(c for c, _ in g) / len(g), sum(w for _, w in g) / len(g), len(g))
            for _, g in sorted(grouped.items())]


def ml_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    parts = []
    points = calibration(data.predictions)
    if points:
        fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot"}),
                         go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], mode="lines+markers",
                                    name="model", text=[f"{p[2]} trades" for p in points])])
        fig.update_layout(title="calibration: confidence vs realised win rate", xaxis_title="confidence",
                          yaxis_title="win rate")
        parts.append(_figure_html(fig, "calibration"))
    else:
        parts.append(_empty("no ML prediction is linked to a closed trade"))
    boosted, control = ml_arms([_trade_row(t) for t in data.trades])
    if boosted and control:
        rates = [sum(t.pnl_quote > 0 for t in arm) / len(arm) * 100 for arm in (boosted, control)]
        fig = go.Figure(go.Bar(x=[f"boosted ({len(boosted)})", f"control ({len(control)})"], y=rates))
        fig.update_layout(title="win rate: ML-boosted vs control", yaxis_title="win rate %")
        parts.append(_figure_html(fig, "ml-arms"))
    else:
        parts.append(_empty("no trades in both an ML-boosted and a control arm"))
    return "".join(parts)


def _trade_row(t: dict[str, Any]) -> TradeRow:
    return TradeRow(t["strategy"], t["pnl_quote"], t["pnl_pct"], t["exit_reason"], t["side"], t["amount"],
                    t["entry_price"], t["exit_price"], t["fees_quote"], True, True, t["ml_confidence"], t["ml_arm"])


def latest_window(leaderboard: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leaderboard rows of the latest pass's shortest window: one bar per variation, not every window
    stacked on one another."""
    end = max(r["window_end"] for r in leaderboard)
    rows = [r for r in leaderboard if r["window_end"] == end]
    shortest = min(r["window_h"] or 0 for r in rows)
    return sorted((r for r in rows if (r["window_h"] or 0) == shortest),
                  key=lambda r: (-(r["total_pnl_pct"] or 0), r["strategy"], r["name"]))


def _cell(value: Any) -> str:
    """A figure as the leaderboard view rounded it, empty where there is none (no Sharpe without variance)."""
    return "" if value is None else str(value)


def _windows(hours: Sequence[int | None] | None) -> str:
    """The windows a row stands for: "168/720" when both read the same evidence."""
    return "/".join(str(h) for h in hours or () if h is not None)


def _span(start: Any, end: Any) -> str:
    return "" if start is None or end is None else f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"


def shadow_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    parts = []
    if data.leaderboard:
        latest = latest_window(data.leaderboard)
        first = min((r["evidence_start"] for r in latest if r["evidence_start"] is not None), default=None)
        last = max((r["evidence_end"] for r in latest if r["evidence_end"] is not None), default=None)
        span = f" (evidence {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M})" if first and last else ""
        fig = go.Figure(go.Bar(x=[f"{r['strategy']}/{r['name']}" for r in latest],
                               y=[float(r["total_pnl_pct"] or 0) for r in latest]))
        fig.update_layout(title=f"shadow leaderboard: total P&L % of the latest {latest[0]['window_h']} h window"
                                f"{span}", yaxis_title="P&L % (per unit of capital)")
        parts.append(_figure_html(fig, "leaderboard"))
        parts.append(_table(("strategy", "variation", "window h", "evidence", "trades", "win rate %", "avg P&L %",
                             "total P&L %", "max drawdown %", "sharpe", "vs CHAMPION %", "95 % CI", "q", "basis"),
                            [(r["strategy"], r["name"], _windows(r["windows_h"]),
                              _span(r["evidence_start"], r["evidence_end"]), r["trades"], _cell(r["win_rate_pct"]),
                              _cell(r["avg_pnl_pct"]), _cell(r["total_pnl_pct"]), _cell(r["max_drawdown_pct"]),
                              _cell(r["sharpe"]), _cell(r["mean_diff_pct"]),
                              "" if r["ci_low_pct"] is None else f"[{r['ci_low_pct']:+}, {r['ci_high_pct']:+}]",
                              r["q_shown"] or "", r["basis"] or "") for r in data.leaderboard]))
    else:
        parts.append(_empty("no shadow variation has been evaluated"))
    if data.recommendations:
        colours = {"proposed": "#7f8c8d", "applied": "#27ae60", "rejected": "#e67e22", "rolled_back": "#c0392b"}
        fig = go.Figure()
        for status, colour in colours.items():
            mine = [r for r in data.recommendations if r["status"] == status]
            if mine:
                fig.add_trace(go.Scatter(x=[r["decided_at"] or r["created_at"] for r in mine],
                                         y=[r["strategy"] for r in mine], mode="markers", name=status,
                                         text=[f"#{r['id']}" + (f" rolls back #{r['rollback_of']}" if r["rollback_of"]
                                                                else "") for r in mine],
                                         marker={"size": 14, "color": colour}))
        fig.update_layout(title="recommendations and rollbacks")
        parts.append(_figure_html(fig, "recommendations"))
    else:
        parts.append(_empty("no recommendation written"))
    return "".join(parts)


def storage_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    tables = [t for t in data.storage if t.total_bytes > 0][:12]
    if not tables:
        return _empty("no table sizes could be read")
    names = [t.table_name for t in tables]
    fig = go.Figure([go.Bar(x=names, y=[t.total_bytes / 1024**2 for t in tables], name="now"),
                     go.Bar(x=names, y=[t.projected_bytes(30) / 1024**2 for t in tables], name="in 30 days"),
                     go.Bar(x=names, y=[t.projected_bytes(90) / 1024**2 for t in tables], name="in 90 days")])
    fig.update_layout(barmode="group", yaxis_title="MB", title="storage per table and its linear projection")
    rows = [(t.table_name, f"{t.rows:,}", human_bytes(t.total_bytes), human_bytes(t.projected_bytes(90)))
            for t in tables]
    return _figure_html(fig, "storage") + _table(("table", "rows", "size", "in 90 days"), rows)


def phases_section(data: ReportData) -> str:
    parts = []
    for result in data.phases:
        verdict = "holds" if result.ok else "does not hold"
        rows = "".join(f'<tr class="{"ok" if c.ok else "fail"}"><td>{"✓" if c.ok else "✗"}</td>'
                       f"<td>{html.escape(c.name)}</td><td>{html.escape(c.figure)}</td></tr>" for c in result.checks)
        parts.append(f"<h3>Phase {result.phase}: {html.escape(result.title)}: {verdict}</h3>"
                     f'<table class="checklist"><tbody>{rows}</tbody></table>')
    return "".join(parts) or _empty("no phase was checked")


SECTIONS = (
    ("phases", "Phase checklist", phases_section),
    ("equity", "Equity curve and drawdown", equity_section),
    ("pnl", "P&L per strategy and pair", pnl_section),
    ("funnel", "Signal funnel and rejection reasons", funnel_section),
    ("trades", "Trades on the price chart", trades_section),
    ("ml", "ML: calibration and boosted vs control", ml_section),
    ("shadow", "Shadows: leaderboard and recommendations", shadow_section),
    ("storage", "Storage per table", storage_section),
)

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
section { margin-bottom: 2.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; font-size: 13px; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
tr.ok td:first-child { color: #27ae60; } tr.fail td:first-child { color: #c0392b; }
.empty { color: #888; font-style: italic; }
"""


def build_html(data: ReportData, *, title: str = "Trading control plane report",
               generated_at: datetime | None = None) -> str:
    """One self-contained HTML page: Plotly's JavaScript inlined once, a section per subject."""
    from plotly.offline import get_plotlyjs

    stamp = f"<p>Generated {generated_at:%Y-%m-%d %H:%M UTC}.</p>" if generated_at else ""
    nav = " · ".join(f'<a href="#{anchor}">{html.escape(name)}</a>' for anchor, name, _ in SECTIONS)
    body = "".join(_section(anchor, name, draw(data)) for anchor, name, draw in SECTIONS)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script></head>"
            f"<body><h1>{html.escape(title)}</h1>{stamp}<nav>{nav}</nav>{body}</body></html>")
