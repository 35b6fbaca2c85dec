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
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

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



def statistics(conn: psycopg.Connection, variations: list[Variation], ids: dict[tuple[str, str], int],
               now: datetime, settings: ShadowSettings, report: EvaluationReport,
               windows_h: Iterable[int] | None = None) -> dict[tuple[str, int], list[Evidence]]:
    """Summaries and comparisons per strategy and window, corrected over the pass, stored and returned."""
    tested: list[tuple[str, int, datetime, float, Summary, dict[str, tuple[Summary, Paired | None]]]] = []
    for strategy in sorted({v.strategy for v in variations}):
        vids = {v.name: ids[(v.strategy, v.name)] for v in variations if v.strategy == strategy}
        for window_h in windows_h or settings.windows_h:
            start = now - timedelta(hours=window_h)
            data = candidates(conn, strategy, start, now, vids)
            pnl, entered, size = data["pnl"], data["entered"], data["size"]
            if pnl.empty:
                continue
            times = pnl.index.get_level_values("candle_ts")
            days = (times.max() - times.min()).total_seconds() / 86400
            clusters_all = symbol_days(pnl.index.get_level_values("symbol").to_numpy(),
                                       times.tz_convert(None).to_numpy())
            c = pnl[CHAMPION].to_numpy(dtype=np.float64)
            ce = entered[CHAMPION].to_numpy()
            champion_summary = summarize(c[ce & np.isfinite(c)])
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
            tested.append((strategy, window_h, start, days, champion_summary, per))
    family = [pair.p_value for *_, per in tested for _, pair in per.values() if pair is not None]
    q_values = iter(benjamini_hochberg(np.array(family)))
    evidence: dict[tuple[str, int], list[Evidence]] = {}
    for strategy, window_h, start, days, champion_summary, per in tested:
        rows = []
        for name, (summary, pair) in per.items():
            vid = ids[(strategy, name)]
            q = float(next(q_values)) if pair is not None else None
            basis = pair.basis if pair is not None else (None if name == CHAMPION else "no-op")
            rows.append((vid, start, now, summary.trades, summary.wins, summary.mean_pnl_pct, summary.total_pnl_pct,
                         summary.max_drawdown_pct, strategy, window_h, summary.sharpe, summary.win_rate_pct,
                         pair.n if pair else None, pair.mean_diff if pair else None, pair.ci_low if pair else None,
                         pair.ci_high if pair else None, pair.p_value if pair else None, q,
                         pair.resolution if pair else None, pair.mde if pair else None, basis))
            if pair is not None and q is not None:
                evidence.setdefault((strategy, window_h), []).append(
                    Evidence(name, summary, champion_summary, pair, q, days))
        with conn.cursor() as write:
            write.executemany(
                "insert into shadow_performance (variation_id, window_start, window_end, trades, wins, avg_pnl_pct,"
                " total_pnl_pct, max_drawdown_pct, strategy, window_h, sharpe, win_rate_pct, paired_n,"
                " mean_diff_pct, ci_low_pct, ci_high_pct, p_value, q_value, p_resolution, mde_pct, basis,"
                " computed_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s, now()) on conflict (variation_id, window_start, window_end) do nothing", rows)
        report.performance_rows += len(rows)
    return evidence
