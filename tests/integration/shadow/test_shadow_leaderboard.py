"""What the leaderboard, `shadow report`, the HTML report and the demo show is what one pass stored: each
window with the span its evidence covers, windows that read the same evidence once, no rows for variations
that change nothing, figures rounded as a reader needs them and q as `stats.pvalues.PValue` shows it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest

from controller.ops.report import latest_window, read_report
from controller.scan.strategy_params import load_strategies
from shadow.compare import statistics
from shadow.evaluate import EvaluationReport, sync_variations
from shadow.settings import ShadowSettings
from shadow.variations import CHAMPION, Variation
from stats.multiple import benjamini_hochberg
from stats.pvalues import PValue
from tests.support.cli import run

NOW = datetime(2026, 3, 1, tzinfo=UTC)
EVIDENCE_H = 100  # hours of candidates before NOW: the 168 h and 720 h windows both hold all of them
SETTINGS = ShadowSettings(bootstrap_samples=999)


def _outcome(conn: psycopg.Connection, vid: int, symbol: str, at: datetime, enter: bool, pnl: float,
             size: float = 1.0) -> None:
    conn.execute("insert into shadow_outcomes (variation_id, exchange, symbol, candle_ts, would_enter, status,"
                 " pnl_pct, evaluated_at, strategy, size_multiplier) values (%s, 'binance', %s, %s, %s, 'evaluated',"
                 " %s, %s, 'dca', %s)", (vid, symbol, at, enter, pnl if enter else None, NOW, size))


@pytest.fixture(scope="module")
def world(module_db: str) -> Iterator[str]:
    """A pass over 100 h of candidates: BETTER earns 1.5 % more a trade than CHAMPION, SIZED is CHAMPION at
    1.5x size, COPY is CHAMPION itself, WORSE loses where CHAMPION wins (P&L sign flipped on half of them)."""
    section = load_strategies().dca
    variations = [Variation(CHAMPION, "dca", section), Variation("BETTER", "dca", section),
                  Variation("SIZED", "dca", section, size_multiplier=1.5), Variation("COPY", "dca", section),
                  Variation("WORSE", "dca", section)]
    rng = np.random.default_rng(5)
    with psycopg.connect(module_db) as conn:
        ids = sync_variations(conn, variations)
        vid = {name: i for (_, name), i in ids.items()}
        for k in range(1, EVIDENCE_H + 1):
            at = NOW - timedelta(hours=k)
            for symbol in ("ADA-BTC", "ETH-BTC"):
                enter, pnl = bool(rng.random() < 0.6), float(rng.normal(0.2, 2.0))
                _outcome(conn, vid[CHAMPION], symbol, at, enter, pnl)
                _outcome(conn, vid["BETTER"], symbol, at, enter, pnl + 1.5)
                _outcome(conn, vid["SIZED"], symbol, at, enter, pnl, 1.5)
                _outcome(conn, vid["COPY"], symbol, at, enter, pnl)
                _outcome(conn, vid["WORSE"], symbol, at, enter, -abs(pnl) if k % 2 else pnl)
        statistics(conn, variations, ids, NOW, SETTINGS, EvaluationReport())
    yield module_db


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_windows_longer_than_the_evidence_start_at_the_first_evidence_and_are_shown_once(world: str) -> None:
    rows = _rows(world, "select name, window_h, windows_h, window_start, evidence_start, evidence_end, candidates"
                        " from dashboard_shadow_leaderboard where name = 'BETTER' order by window_h")
    first = NOW - timedelta(hours=EVIDENCE_H)
    assert [(r[1], r[2]) for r in rows] == [(24, [24]), (72, [72]), (168, [168, 720])]
    for _, window_h, _, window_start, evidence_start, evidence_end, candidates in rows:
        assert window_start == evidence_start >= max(first, NOW - timedelta(hours=window_h))
        assert evidence_end == NOW - timedelta(hours=1)
        assert candidates == 2 * min(window_h, EVIDENCE_H)  # two symbols an hour
    assert rows[2][4] == first  # not a month before it
    # stored, the 720 h window carries the 168 h window's figures and span: the same evidence, tested once
    stored = _rows(world, "select p.window_h, p.evidence_start, p.evidence_end, p.trades, p.mean_diff_pct,"
                          " p.p_value, p.q_value from shadow_performance p join shadow_variations v"
                          " on v.id = p.variation_id where v.name = 'BETTER' and p.window_h in (168, 720)"
                          " order by p.window_h")
    assert stored[0][1:] == stored[1][1:]


def test_no_two_rows_of_a_variation_carry_the_same_figures_over_different_evidence(world: str) -> None:
    clashes = _rows(world, """
        select a.strategy, a.name, a.window_h, b.window_h
          from dashboard_shadow_leaderboard a
          join dashboard_shadow_leaderboard b on b.strategy = a.strategy and b.name = a.name
                                             and b.window_h > a.window_h
         where (a.evidence_start, a.evidence_end) is distinct from (b.evidence_start, b.evidence_end)
           and (a.candidates, a.trades, a.total_pnl_pct, a.mean_diff_pct, a.q_value)
               is not distinct from (b.candidates, b.trades, b.total_pnl_pct, b.mean_diff_pct, b.q_value)""")
    assert clashes == []
    spans = _rows(world, "select name, count(*), count(distinct (evidence_start, evidence_end))"
                         " from dashboard_shadow_leaderboard group by name")
    assert all(n == distinct for _, n, distinct in spans)  # one row per span: the same span is shown once


def test_no_op_variations_have_no_rows_and_a_size_only_one_is_not_called_different(world: str) -> None:
    rows = _rows(world, "select name, basis, mean_diff_pct, q_value from dashboard_shadow_leaderboard")
    assert {r[0] for r in rows} == {CHAMPION, "BETTER", "SIZED", "WORSE"}  # COPY changes nothing
    stored = _rows(world, "select distinct p.basis, p.q_value from shadow_performance p join shadow_variations v"
                          " on v.id = p.variation_id where v.name = 'COPY'")
    assert stored == [("no-op", None)]  # stored as such, not shown
    sized = [r for r in rows if r[0] == "SIZED"]
    assert sized and all(b == "per unit at risk" and d == 0 and q > 0.05 for _, b, d, q in sized)


def test_q_is_benjamini_hochberg_over_the_pass_with_each_evidence_tested_once(world: str) -> None:
    tested = _rows(world, "select p.p_value, p.q_value from shadow_performance p where p.q_value is not null"
                          " and p.window_h <> 720 order by p.variation_id, p.window_h")
    assert len(tested) == 3 * 3  # BETTER, SIZED, WORSE on 24, 72, 168 h: 720 h is 168 h's evidence again
    p = np.array([r[0] for r in tested])
    assert np.allclose(benjamini_hochberg(p), [r[1] for r in tested])


def test_the_view_rounds_and_shows_p_and_q_as_pvalue_display(world: str) -> None:
    rows = _rows(world, "select l.name, l.window_h, l.avg_pnl_pct, l.total_pnl_pct, l.mean_diff_pct, l.p_value,"
                        " l.q_value, l.p_shown, l.q_shown, p.p_value, p.q_value, p.p_resolution"
                        " from dashboard_shadow_leaderboard l join shadow_variations v on v.name = l.name"
                        " join shadow_performance p on p.variation_id = v.id and p.window_h = l.window_h")
    assert rows
    for name, _, avg, total, diff, p, q, p_shown, q_shown, raw_p, raw_q, resolution in rows:
        for figure in (avg, total, diff):
            assert figure is None or figure == round(figure, 2)
        if name == CHAMPION:
            assert p is None and q_shown is None
            continue
        assert p_shown == PValue(raw_p, resolution).display() and q_shown == PValue(min(1, raw_q), resolution).display()
        assert q == round(q, 3)
    better = {r[1]: (r[7], r[8]) for r in rows if r[0] == "BETTER"}
    # 1.5 % a trade better: p at the floor of 999 resamples; q, Benjamini-Hochberg of six such p among nine
    # comparisons, 0.001 x 9 / 6
    assert better[168] == ("< 0.001", "0.002")


@pytest.mark.parametrize("seed", [1, 2])
def test_the_sql_display_is_pvalue_display(module_db: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    cases = [(float(v), float(r)) for v, r in zip(rng.random(300) ** 3, rng.choice([0, 1 / 1000, 1 / 2001, 1 / 101,
                                                                                         1 / 3], 300), strict=True)]
    cases += [(r, r) for _, r in cases[:20] if r > 0] + [(1.0, 0.0), (0.0004, 0.0), (0.0, 1 / 1000)]
    with psycopg.connect(module_db) as conn:
        shown = [conn.execute("select shadow_p_shown(%s, %s)", c).fetchone()[0] for c in cases]
    assert shown == [PValue(v, r).display() for v, r in cases]


def test_shadow_report_prints_the_stored_rows_rounded_without_a_second_test(world: str) -> None:
    result = run(world, "shadow", "report")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "COPY" not in out and "168/720" in out
    with psycopg.connect(world) as conn:
        shown = {q for q, in conn.execute("select q_shown from dashboard_shadow_leaderboard where q_shown is not null")}
    assert shown == {"0.002", "1.000"} and all(f" {q} " in out for q in shown)  # as the view shows them
    assert not re.search(r"\d\.\d{4,}|e[+-]\d", out)  # no 15-digit floats, no 3e14
    one = run(world, "shadow", "report", "--window", "720")
    assert "168/720" in one.stdout and " 24 " not in one.stdout


def test_the_html_reports_chart_shows_only_the_latest_window(world: str) -> None:
    with psycopg.connect(world) as conn:
        data = read_report(conn)
    latest = latest_window(data.leaderboard)
    assert {r["window_h"] for r in latest} == {24}
    assert [r["name"] for r in latest].count("BETTER") == 1 and len(latest) == 4
