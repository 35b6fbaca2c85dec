"""The HTML report: `python -m controller report --out FILE.html`.

`read_report` reads the dashboard views and tables once; `build_html` is pure (data in, one HTML string out)
and draws with Plotly, whose JavaScript is inlined once, so the file opens with no network. A section with
no data says so instead of drawing an empty chart. Every chart is a `div.chart` whose Plotly root gets the
class `js-plotly-plot` once drawn: the browser test counts them.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from controller.ops.phase_check import PHASES, PhaseResult, TradeRow, check, ml_arms
from controller.ops.report_figures import (
    DASH,
    ExitCounts,
    Funnel,
    Headline,
    amount_text,
    by_gate,
    by_group,
    duration_text,
    figure_text,
    headline,
    market_time,
    quote_of,
)
from controller.ops.retention import TableStorage, human_bytes, storage_report
from controller.ops.signal_funnel import read_exits, read_funnel

MAX_PRICE_CHARTS = 4  # pairs with the most trades get a price chart each
CALIBRATION_BINS = 5


@dataclass(frozen=True)
class ReportData:
    trades: list[dict[str, Any]] = field(default_factory=list)
    funnel: Funnel = field(default_factory=Funnel)  # entry signals only
    exits: ExitCounts = field(default_factory=ExitCounts)  # exit signals, counted apart
    rejections: list[tuple[str, str, int]] = field(default_factory=list)  # (strategy, reason, signals)
    candles: dict[str, list[tuple[datetime, float, float, float, float]]] = field(default_factory=dict)
    predictions: list[tuple[float, bool]] = field(default_factory=list)  # (confidence, trade won)
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    storage: list[TableStorage] = field(default_factory=list)
    phases: list[PhaseResult] = field(default_factory=list)
    open_positions: list[dict[str, Any]] = field(default_factory=list)
    capital: Mapping[str, float] = field(default_factory=dict)  # quote currency -> what the book started with
    capital_source: str = "sizing.quotes.<quote>.balance of the controller config"

    def quotes(self) -> list[str]:
        """The quote currencies traded, most trades first."""
        counts: dict[str, int] = {}
        for t in self.trades:
            counts[quote_of(t["symbol"])] = counts.get(quote_of(t["symbol"]), 0) + 1
        return sorted(counts, key=lambda q: (-counts[q], q))

    def headlines(self) -> list[Headline]:
        return [headline([t for t in self.trades if quote_of(t["symbol"]) == q], self.capital.get(q), q)
                for q in self.quotes()]


# --- reading ---------------------------------------------------------------------------------------

def _dicts(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur = conn.execute(query, params)
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def read_report(conn: psycopg.Connection, capital: Mapping[str, float] | None = None,
                capital_source: str = "sizing.quotes.<quote>.balance of the controller config") -> ReportData:
    """Everything the report shows, from the views and tables of one database. `capital` is what the book
    started with per quote currency (the paper balance), which the net return and drawdown % are of."""
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
         order by 12, t.signal_id""")  # ties in one stable order: the drawdown follows it
    # The funnel and the exit signals as the dashboard shows them: one definition, in the views (migration
    # 0027), of entry signals through stages that only narrow, and of exit signals counted apart.
    funnel = read_funnel(conn)
    exits = read_exits(conn)
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
    # executing entries the book still holds: no trade row yet; priced at the pair's last stored close
    open_positions = _dicts(conn, """
        select p.strategy, p.exchange, p.symbol, p.executor, coalesce(sc.candle_ts, p.opened_at) as opened_at,
               p.amount::float8 as amount, p.avg_entry_price::float8 as entry_price,
               p.take_profit_pct::float8 as take_profit_pct, p.stop_loss_pct::float8 as stop_loss_pct,
               last.close as last_price, last.ts as last_ts
          from dashboard_open_positions p
          join signals s on s.id = p.signal_id
          left join lateral (select min(candle_ts) as candle_ts from scans where signal_id = s.id) sc on true
          left join lateral (select c.close::float8 as close, c.ts from candles c
                              where c.exchange = p.exchange and c.symbol = p.symbol
                              order by c.ts desc limit 1) last on true
         where s.kind = 'entry' and not exists (select 1 from trades t where t.signal_id = p.signal_id)
         order by 5, 3""")
    conn.rollback()
    storage = storage_report(conn)
    phases = check(conn, PHASES)
    return ReportData(trades, funnel, exits, rejections, candles, predictions, leaderboard, recommendations, storage,
                      phases, open_positions, dict(capital or {}), capital_source)


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


def _card(label: str, value: str, note: str = "") -> str:
    title = f' title="{html.escape(note)}"' if note else ""
    return (f'<div class="card"{title}><div class="label">{html.escape(label)}</div>'
            f'<div class="value">{html.escape(value)}</div></div>')


def headline_block(h: Headline) -> str:
    """The figures of one quote currency's closed trades as cards, and what each one is of."""
    capital = amount_text(h.capital, h.quote, signed=False) if h.capital is not None else "unknown"
    pf = figure_text(h.profit_factor) if h.profit_factor is not None else (
        DASH + (" (no losing trade)" if h.trades else ""))
    cards = [
        _card("net return", figure_text(h.net_return_pct, "+.2f", " %"),
              "sum of closed trades' P&L after fees over the starting capital, not compounded"),
        _card("net P&L", amount_text(h.net_pnl_quote, h.quote)),
        _card("trades", str(h.trades)),
        _card("win rate", figure_text(h.win_rate_pct, ".1f", " %") + (f" ({h.wins}/{h.trades})" if h.trades else "")),
        _card("profit factor", pf, "gross profit over gross loss"),
        _card("expectancy / trade", f"{figure_text(h.expectancy_pct, '+.3f', ' %')} · "
                                    f"{amount_text(h.expectancy_quote, h.quote)}"),
        _card("max drawdown", f"{figure_text(h.max_drawdown_pct, '.2f', ' %')} · "
                              f"{amount_text(-h.max_drawdown_quote, h.quote)}",
              "deepest fall of the equity curve below its previous peak"),
        _card("duration avg · median", f"{duration_text(h.mean_duration_s)} · {duration_text(h.median_duration_s)}"),
        _card("Sharpe (per trade)", figure_text(h.sharpe, ".3f")),
        _card("Sortino (per trade)", figure_text(h.sortino, ".3f")),
    ]
    return (f'<div class="headline" data-quote="{html.escape(h.quote)}"><h3>Closed trades in {html.escape(h.quote)}, '
            f'starting capital {html.escape(capital)}</h3><div class="cards">{"".join(cards)}</div></div>')


def headline_section(data: ReportData) -> str:
    if not data.trades:
        return _empty("no closed trade yet")
    blocks = "".join(headline_block(h) for h in data.headlines())
    known = ", ".join(f"{amount_text(v, q, signed=False)}" for q, v in sorted(data.capital.items())
                      if q in data.quotes())
    return blocks + (
        '<p class="definitions">How these are computed. <b>Net return</b>: the sum of the closed trades\' P&amp;L '
        "(after fees) over the capital the book started with"
        + (f" ({html.escape(known)}, {html.escape(data.capital_source)})" if known else
           f" (none known: set {html.escape(data.capital_source)})")
        + "; not compounded, because every entry is a fixed amount of the quote currency, not a share of the "
        "equity. <b>Max drawdown</b>: the deepest fall of the equity (starting capital plus the cumulative P&amp;L, "
        "at each close) below its previous peak, as a share of that peak: at most 100 %. <b>Win</b>: P&amp;L above "
        "zero after fees. <b>Profit factor</b>: gross profit over gross loss. <b>Expectancy</b>: the mean P&amp;L "
        "of a trade, in % of its entry notional and in the quote currency. <b>Sharpe</b> and <b>Sortino</b>: the "
        "mean per-trade P&amp;L % over its sample standard deviation, or over its downside deviation (target 0), "
        "per trade and not annualised; — where the returns have no spread (Sortino: no loss). Times are market "
        "time (the candle a signal was decided on).</p>")


def _quote_axis(fig: Any, quote: str, **where: int) -> None:
    # fixed-point ticks: Plotly's default SI prefixes would write 0.00002 BTC as "20μ"
    fig.update_yaxes(title_text=f"P&L ({quote})", tickformat=".8~f", **where)


def equity_section(data: ReportData) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not data.trades:
        return _empty("no closed trade yet")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06)
    quotes = data.quotes()
    for h in data.headlines():
        mine = sorted((t for t in data.trades if quote_of(t["symbol"]) == h.quote), key=lambda t: t["closed_at"])
        times = [t["closed_at"] for t in mine]
        total, peak, cumulative, drawdown = 0.0, 0.0, [], []
        for t in mine:
            total += t["pnl_quote"]
            peak = max(peak, total)
            cumulative.append(total)
            # in % of the equity peak when the capital is known (the headline's figure), else in quote
            drawdown.append(-(peak - total) / (h.capital + peak) * 100 if h.capital else total - peak)
        fig.add_trace(go.Scatter(x=times, y=cumulative, name=f"cumulative P&L ({h.quote})", mode="lines"),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=times, y=[max(d, -100.0) for d in drawdown] if h.capital else drawdown,
                                 name=f"drawdown ({'%' if h.capital else h.quote})", fill="tozeroy", mode="lines",
                                 line={"color": "#c0392b"}), row=2, col=1)
    _quote_axis(fig, "/".join(quotes), row=1, col=1)
    fig.update_yaxes(title_text="drawdown %" if all(data.capital.get(q) for q in quotes) else "drawdown",
                     row=2, col=1)
    return _figure_html(fig, "equity") + "".join(
        f"<p>{h.trades} trades in {html.escape(h.quote)}: P&amp;L {html.escape(amount_text(h.net_pnl_quote, h.quote))}"
        f", max drawdown {html.escape(figure_text(h.max_drawdown_pct, '.2f', ' %'))} "
        f"({html.escape(amount_text(-h.max_drawdown_quote, h.quote))}; fees included)</p>" for h in data.headlines())


def _group_table(title: str, column: str, trades: Sequence[dict[str, Any]], key: str) -> str:
    rows = [(r.key, r.trades, f"{r.win_rate_pct:.1f}", f"{r.mean_pnl_pct:+.3f}",
             amount_text(r.total_pnl_quote, r.quote)) for r in by_group(trades, key)]
    return f"<h3>{html.escape(title)}</h3>" + _table((column, "trades", "win rate %", "mean P&L %", "total P&L"), rows)


def pnl_section(data: ReportData) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not data.trades:
        return _empty("no closed trade yet")
    by_strategy: dict[str, float] = {}
    by_pair: dict[str, float] = {}
    for t in data.trades:
        label = t["strategy"] if len(data.quotes()) == 1 else f"{t['strategy']} ({quote_of(t['symbol'])})"
        by_strategy[label] = by_strategy.get(label, 0.0) + t["pnl_quote"]
        by_pair[t["symbol"]] = by_pair.get(t["symbol"], 0.0) + t["pnl_quote"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("per strategy", "per pair"))
    for col, values in ((1, by_strategy), (2, by_pair)):
        fig.add_trace(go.Bar(x=list(values), y=list(values.values()), showlegend=False,
                             marker_color=["#27ae60" if v >= 0 else "#c0392b" for v in values.values()]),
                      row=1, col=col)
        _quote_axis(fig, "/".join(data.quotes()), row=1, col=col)
    return (_group_table("Per strategy", "strategy", data.trades, "strategy")
            + _group_table("Per exit reason", "exit reason", data.trades, "exit_reason") + _figure_html(fig, "pnl"))


def funnel_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    f = data.funnel
    if not f.emitted and not data.exits.emitted:
        return _empty("no signal emitted yet")
    stages = f.stages()
    parts = [_figure_html(go.Figure(go.Funnel(y=[s for s, _ in stages], x=[n for _, n in stages],
                                              textinfo="value+percent initial")), "funnel")]
    parts.append("<p>Entry signals only, as the dashboard's view <code>dashboard_signal_funnel</code> counts them: "
                 "each stage counts the signals that passed it and every stage before it (claimed by an executor, "
                 "an entry order placed, an entry fill logged, a trade row closed). "
                 f"By status: {f.rejected} rejected, {f.expired} expired, {f.open} open "
                 f"({f.waiting} waiting for an executor).</p>")
    if f.skipped:
        parts.append('<p class="warn">Recorded at a later stage without an earlier one (counted up to the stage '
                     "they skipped): " + html.escape(", ".join(f"{n} without {stage}" for stage, n in
                                                               sorted(f.skipped.items()))) + ".</p>")
    x = data.exits
    parts.append(f"<p>Exit signals (the strategies' exits, counted apart in <code>dashboard_exit_signals</code>: "
                 "they close an entry's position): "
                 f"{x.emitted} emitted, {x.executed} executed, {x.rejected} rejected, {x.expired} expired, "
                 f"{x.open} open.</p>")
    gates = by_gate(data.rejections)
    if gates:
        total = sum(g.signals for g in gates)
        parts.append(f"<h3>Rejections by gate ({total} signals, {sum(g.texts for g in gates)} distinct texts)</h3>")
        fig = go.Figure(go.Bar(x=[g.signals for g in gates][::-1], y=[g.gate for g in gates][::-1], orientation="h"))
        # whole signals: ticks one or more signals apart, never at 0.5
        fig.update_xaxes(title_text="rejected signals", tick0=0, dtick=max(1, -(-gates[0].signals // 8)))
        parts.append(_figure_html(fig, "rejections"))
        parts.append(_table(("gate", "signals", "share %", "strategies", "texts", "example"),
                            [(g.gate, g.signals, f"{g.signals / total * 100:.1f}", ", ".join(g.strategies), g.texts,
                              g.example) for g in gates]))
    else:
        parts.append(_empty("no signal was rejected"))
    return "".join(parts)


def _outcome_lines(trades: Sequence[dict[str, Any]], won: bool) -> tuple[list[Any], list[Any], list[str]]:
    """One entry->exit segment per trade, separated by gaps (None), for one Scatter trace."""
    xs: list[Any] = []
    ys: list[Any] = []
    texts: list[str] = []
    for t in trades:
        if (t["pnl_quote"] > 0) != won:
            continue
        label = f"{t['strategy']} {t['exit_reason']} {t['pnl_pct']:+.2f} %"
        xs += [t["opened_at"], t["closed_at"], None]
        ys += [t["entry_price"], t["exit_price"], None]
        texts += [label, label, ""]
    return xs, ys, texts


def trades_section(data: ReportData) -> str:
    import plotly.graph_objects as go

    if not data.trades:
        return _empty("no closed trade yet")
    parts = []
    for i, (symbol, rows) in enumerate(data.candles.items()):
        mine = [t for t in data.trades if t["symbol"] == symbol]
        fig = go.Figure(go.Candlestick(x=[r[0] for r in rows], open=[r[1] for r in rows], high=[r[2] for r in rows],
                                       low=[r[3] for r in rows], close=[r[4] for r in rows], name=symbol,
                                       increasing_line_color="#95a5a6", decreasing_line_color="#5d6d7e"))
        for won, colour, name in ((True, "#27ae60", "win"), (False, "#c0392b", "loss")):
            xs, ys, texts = _outcome_lines(mine, won)
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name}: entry → exit", text=texts,
                                         line={"color": colour, "width": 2},
                                         marker={"size": 7, "color": colour}))
        fig.update_layout(title=f"{symbol}: each trade from entry to exit (green win, red loss)",
                          xaxis_rangeslider_visible=False)
        fig.update_yaxes(title_text=f"price ({quote_of(symbol)})", tickformat=".8~f")
        parts.append(_figure_html(fig, f"price-{i}"))
    if not data.candles:
        parts.append(_empty("no stored candles cover the traded pairs"))
    rows = [(market_time(t["closed_at"]), t["strategy"], t["symbol"], t["exit_reason"], f"{t['entry_price']:.8g}",
             f"{t['exit_price']:.8g}", amount_text(t["pnl_quote"], quote_of(t["symbol"])), f"{t['pnl_pct']:+.2f}",
             duration_text((t["closed_at"] - t["opened_at"]).total_seconds()))
            for t in data.trades[-50:]]
    parts.append(f"<p>The last {len(rows)} of {len(data.trades)} trades:</p>")
    parts.append(_table(("closed", "strategy", "pair", "exit", "entry", "exit price", "P&L", "P&L %", "held"), rows))
    return "".join(parts)


def open_positions_section(data: ReportData) -> str:
    if not data.open_positions:
        return _empty("no open position: every executed entry has its trade row")
    rows = []
    for p in data.open_positions:
        quote = quote_of(p["symbol"])
        entry, last, amount = p["entry_price"], p["last_price"], p["amount"]
        unrealised = (last - entry) * amount if entry and last else None
        rows.append((market_time(p["opened_at"]) if p["opened_at"] else "", p["strategy"], p["symbol"],
                     p["executor"] or "", f"{amount:.8g}", f"{entry:.8g}" if entry else DASH,
                     f"{last:.8g} at {market_time(p['last_ts'])}" if last else DASH,
                     amount_text(unrealised, quote), figure_text((last / entry - 1) * 100 if entry and last else None,
                                                                 "+.2f"),
                     f"+{p['take_profit_pct']:g} / -{p['stop_loss_pct']:g}" if p["stop_loss_pct"] else
                     f"+{p['take_profit_pct']:g}"))
    what = "entry" if len(rows) == 1 else "entries"
    return (f"<p>{len(rows)} executing {what} without a trade row, priced at their pair's last stored close "
            "(before exit fees):</p>" + _table(("opened", "strategy", "pair", "executor", "amount", "entry",
                                               "last price", "unrealised", "unrealised %", "TP / SL %"), rows))


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
                    t["entry_price"], t["exit_price"], t["fees_quote"], True, True, t["ml_confidence"], t["ml_arm"],
                    t["symbol"])


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
    ("headline", "Headline figures", headline_section),
    ("phases", "Phase checklist", phases_section),
    ("equity", "Equity curve and drawdown", equity_section),
    ("pnl", "P&L per strategy, exit reason and pair", pnl_section),
    ("funnel", "Signal funnel and rejection reasons", funnel_section),
    ("trades", "Trades on the price chart", trades_section),
    ("open", "Open positions", open_positions_section),
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
.empty { color: #888; font-style: italic; } .warn { color: #b9770e; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: .5em 0 1em; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 8px 14px; min-width: 150px; }
.card .label { font-size: 12px; color: #666; } .card .value { font-size: 18px; font-weight: 600; }
.definitions { font-size: 13px; color: #444; max-width: 1000px; }
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
