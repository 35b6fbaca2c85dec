"""The statistics step of a pass: every variation against CHAMPION, per strategy and window, written to
`shadow_performance` and returned as the recommendation's evidence.

Per candidate (a scan of one symbol) and variation: the net P&L per unit of capital (0 where it did not
enter; unknown while pending), whether it entered, at what relative size. `shadow.stats.compare` picks the
comparison (a no-op is not tested; a size-only variation per unit at risk; else equal size), bootstrapped by
symbol-day. The family is the whole pass (strategy x window x tested variation): Benjamini-Hochberg runs
once over all of it, so adding windows or strategies does not add uncorrected chances.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from controller.data.market_data import timeframe_seconds
from shadow.evaluate import EvaluationReport
from shadow.recommend import Evidence
from shadow.settings import ShadowSettings
from shadow.stats import Paired, Summary, benjamini_hochberg, compare, summarize, symbol_days
from shadow.variations import CHAMPION, Variation


def candidates(conn: psycopg.Connection, strategy: str, start: datetime, end: datetime,
               variation_ids: dict[str, int]) -> dict[str, pd.DataFrame]:
    """Per-unit P&L, entered and size, each a (candidate x variation) frame indexed by (candle_ts, exchange,
    symbol); P&L is NaN while pending or missing."""
    rows = conn.execute(
        "select o.candle_ts, o.exchange, o.symbol, o.variation_id,"
        "       case when not o.would_enter then 0 when o.status = 'evaluated' then o.pnl_pct end,"
        "       o.would_enter, coalesce(o.size_multiplier, 1)"
        "  from shadow_outcomes o where o.strategy = %s and o.candle_ts >= %s and o.candle_ts < %s"
        "   and o.variation_id = any(%s)", (strategy, start, end, list(variation_ids.values()))).fetchall()
    columns = list(variation_ids)
    frame = pd.DataFrame(rows, columns=["candle_ts", "exchange", "symbol", "variation_id", "pnl", "entered", "size"])
    frame["name"] = frame["variation_id"].map({i: n for n, i in variation_ids.items()})
    frame = frame.astype({"pnl": np.float64, "size": np.float64})
    index = ["candle_ts", "exchange", "symbol"]
    out = {}
    for value in ("pnl", "entered", "size"):
        table = frame.pivot_table(index=index, columns="name", values=value, aggfunc="first", dropna=False)
        out[value] = table.reindex(columns=columns).sort_index()
    out["entered"] = out["entered"].reindex(index=out["pnl"].index).fillna(False).astype(bool)
    out["size"] = out["size"].reindex(index=out["pnl"].index).fillna(1.0)
    return out



def evidence_days(first_close: datetime, last_close: datetime, timeframe_s: float, window_h: float) -> float:
    """Days the evidence covers: from the first candidate's candle open to the last one's close (candle_ts
    is a close), at most the window. A window scanned on every candle therefore spans its full length, so a
    tier that asks for 3 days is reachable in a 72 h window."""
    span = (last_close - first_close).total_seconds() + timeframe_s
    return min(span, window_h * 3600) / 86400


def statistics(conn: psycopg.Connection, variations: list[Variation], ids: dict[tuple[str, str], int],
               now: datetime, settings: ShadowSettings, report: EvaluationReport,
               windows_h: Iterable[int] | None = None) -> dict[tuple[str, int], list[Evidence]]:
    """Summaries and comparisons per strategy and window, corrected over the pass, stored and returned.

    Each row records the evidence its window really read (first and last candidate, how many). A longer
    window that holds no candidate more than a shorter one read the same evidence: it is stored with the
    same figures and span, and tested once (one entry in the family, the same q)."""
    tested: list[Window] = []
    for strategy in sorted({v.strategy for v in variations}):
        vids = {v.name: ids[(v.strategy, v.name)] for v in variations if v.strategy == strategy}
        shorter: Window | None = None
        for window_h in sorted(set(windows_h or settings.windows_h)):
            start = now - timedelta(hours=window_h)
            data = candidates(conn, strategy, start, now, vids)
            pnl, entered, size = data["pnl"], data["entered"], data["size"]
            if pnl.empty:
                continue
            if shorter is not None and pnl.index.equals(shorter.index):
                tested.append(Window(strategy, window_h, start, shorter.index, shorter.per, twin=True))
                continue
            times = pnl.index.get_level_values("candle_ts")
            clusters_all = symbol_days(pnl.index.get_level_values("symbol").to_numpy(),
                                       times.tz_convert(None).to_numpy())
            c = pnl[CHAMPION].to_numpy(dtype=np.float64)
            ce = entered[CHAMPION].to_numpy()
            per: dict[str, tuple[Summary, Paired | None]] = {}
            for name in vids:
                v = pnl[name].to_numpy(dtype=np.float64)
                ve = entered[name].to_numpy()
                vs = size[name].to_numpy(dtype=np.float64)
                summary = summarize(v[ve & np.isfinite(v)])
                pair = None
                if name != CHAMPION:
                    both = np.isfinite(v) & np.isfinite(c)
                    pair = compare(v[both], c[both], ve[both], ce[both], vs[both],
                                   size[CHAMPION].to_numpy(dtype=np.float64)[both], clusters=clusters_all[both],
                                   samples=settings.bootstrap_samples, seed=settings.seed)
                per[name] = (summary, pair)
            shorter = Window(strategy, window_h, start, pnl.index, per)
            tested.append(shorter)
    family = [pair.p_value for w in tested if not w.twin for _, pair in w.per.values() if pair is not None]
    q_values = iter(benjamini_hochberg(np.array(family)))
    q_of: dict[tuple[str, str, int], float] = {}  # (strategy, variation, id of the tested window's figures)
    evidence: dict[tuple[str, int], list[Evidence]] = {}
    timeframe_s = {v.strategy: timeframe_seconds(v.section.timeframe) for v in variations if v.name == CHAMPION}
    for w in tested:
        times = w.index.get_level_values("candle_ts")
        first, last = times.min().to_pydatetime(), times.max().to_pydatetime()
        days = evidence_days(first, last, timeframe_s.get(w.strategy, 0), w.window_h)
        champion_summary = w.per[CHAMPION][0]
        rows = []
        for name, (summary, pair) in w.per.items():
            vid = ids[(w.strategy, name)]
            q = None
            if pair is not None:
                key = (w.strategy, name, id(w.per))
                if not w.twin:
                    q_of[key] = float(next(q_values))
                q = q_of[key]
            basis = pair.basis if pair is not None else (None if name == CHAMPION else "no-op")
            rows.append((vid, w.start, now, summary.trades, summary.wins, summary.mean_pnl_pct, summary.total_pnl_pct,
                         summary.max_drawdown_pct, w.strategy, w.window_h, summary.sharpe, summary.win_rate_pct,
                         pair.n if pair else None, pair.mean_diff if pair else None, pair.ci_low if pair else None,
                         pair.ci_high if pair else None, pair.p_value if pair else None, q,
                         pair.resolution if pair else None, pair.mde if pair else None, basis, first, last,
                         len(w.index)))
            if pair is not None and q is not None:
                evidence.setdefault((w.strategy, w.window_h), []).append(
                    Evidence(name, summary, champion_summary, pair, q, days))
        with conn.cursor() as write:
            write.executemany(
                "insert into shadow_performance (variation_id, window_start, window_end, trades, wins, avg_pnl_pct,"
                " total_pnl_pct, max_drawdown_pct, strategy, window_h, sharpe, win_rate_pct, paired_n,"
                " mean_diff_pct, ci_low_pct, ci_high_pct, p_value, q_value, p_resolution, mde_pct, basis,"
                " evidence_start, evidence_end, candidates, computed_at) values (%s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())"
                " on conflict (variation_id, window_start, window_end) do nothing", rows)
        report.performance_rows += len(rows)
    return evidence


@dataclass(frozen=True)
class Window:
    """One strategy's window of a pass: its candidates and, per variation, the summary and comparison."""

    strategy: str
    window_h: int
    start: datetime
    index: pd.Index
    per: dict[str, tuple[Summary, Paired | None]]
    twin: bool = False  # the same candidates as the next shorter window: its figures, not tested again
