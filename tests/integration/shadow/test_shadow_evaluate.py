"""The evaluator on the offline demo's data: real scans, real candles, and real trades that the Hummingbot
executor made on the paper exchange. CHAMPION is calibrated against those trades; the leaderboard shows
the variations with different figures; `shadow recommend` says what it recommends or why not."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import psycopg
import pytest

from bridge import exits, path
from controller.config import PROJECT_ROOT
from controller.scan.strategy_params import load_strategies
from shadow.evaluate import GRID_AVERAGED, EvaluationReport, calibrate, read_candles
from shadow.service import data_time, run_pass
from shadow.stats import benjamini_hochberg
from shadow.variations import load
from tests.conftest import DEMO_S, DEMO_TEST_TIMEOUT, DemoRun

pytestmark = DEMO_TEST_TIMEOUT  # its fixture runs the demo


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env.update(DATABASE_URL=url, COLUMNS="200")
    return env


@pytest.fixture(scope="module")
def demo(demo_run: DemoRun) -> Iterator[str]:
    # the session's demo run (phases 0-2, where the default replay puts them: candles follow the entries)
    assert demo_run.result.returncode == 0, demo_run.result.stderr[-3000:]
    with psycopg.connect(demo_run.url) as conn:
        conn.execute("update flags set value = 'true' where name = 'shadow.enabled'")
        report = run_pass(conn, load_strategies(), load(), {"shadow.enabled": True}, data_time(conn),
                          recommend_now=False)
    assert report.evaluation.evaluated > 0
    yield demo_run.url


def test_every_candidate_has_one_outcome_per_variation(demo: str) -> None:
    with psycopg.connect(demo) as conn:
        per_candidate = conn.execute(
            "select o.strategy, o.symbol, o.candle_ts, count(*) from shadow_outcomes o"
            " join shadow_variations v on v.id = o.variation_id where v.active group by 1, 2, 3").fetchall()
        variations = dict(conn.execute("select strategy, count(*) from shadow_variations where active"
                                       " group by 1").fetchall())
        pending_late = conn.execute("select count(*) from shadow_outcomes where status = 'pending'"
                                    " and not would_enter").fetchone()[0]
    assert per_candidate and all(n == variations[strategy] for strategy, _, _, n in per_candidate)
    assert pending_late == 0  # a skip is decided at once: no trade, nothing to wait for


def test_the_leaderboard_shows_champion_conservative_and_aggressive_with_different_figures(demo: str) -> None:
    with psycopg.connect(demo) as conn:
        rows = conn.execute("select strategy, name, trades, total_pnl_pct, mean_diff_pct, q_value"
                            " from dashboard_shadow_leaderboard where window_h = 72").fetchall()
    by_name = {(s, n): (t, float(p) if p is not None else None, d, q) for s, n, t, p, d, q in rows}
    strategies = {s for s, _ in by_name}
    assert strategies
    for strategy in strategies:
        figures = [by_name[(strategy, n)][:2] for n in ("CHAMPION", "CONSERVATIVE", "AGGRESSIVE")]
        assert len(set(figures)) == 3, (strategy, figures)
        assert by_name[(strategy, "CHAMPION")][2] is None  # CHAMPION is the reference, not compared with itself
        assert by_name[(strategy, "AGGRESSIVE")][3] is not None


def test_replayed_outcomes_are_the_exit_rule_on_the_stored_candles(demo: str) -> None:
    with psycopg.connect(demo) as conn:
        rows = conn.execute("select exchange, symbol, candle_ts, entry_price, barriers, exit_reason, exit_price,"
                            " data_timeframe from shadow_outcomes where status = 'evaluated' and would_enter"
                            " order by id limit 25").fetchall()
        assert rows
        for exchange, symbol, candle_ts, entry, barriers, reason, price, timeframe in rows:
            horizon = candle_ts + timedelta(seconds=barriers["time_limit_s"])
            candles = read_candles(conn, exchange, symbol, timeframe, candle_ts, horizon)
            b = type("B", (), barriers)
            fill = float(entry) * (100 + load().settings.slippage_pct) / 100
            seconds = 60.0 if timeframe == "1m" else 300.0
            bars = [path.Candle(t.timestamp(), seconds, o, h, lo, c) for t, o, h, lo, c in
                    zip(candles["ts"], candles["open"], candles["high"], candles["low"], candles["close"], strict=True)]
            outcome = exits.walk_candles(b, fill, candle_ts.timestamp(), bars)
            assert outcome.hit is not None and outcome.hit.reason == reason
            assert float(price) == pytest.approx(outcome.hit.price, rel=1e-12)


def test_champion_is_calibrated_against_the_executors_paper_trades(demo: str) -> None:
    settings = load().settings
    with psycopg.connect(demo) as conn:
        trades = conn.execute("select count(*) from trades t join signals s on s.id = t.signal_id where exit_reason in"
                              " ('take_profit', 'stop_loss', 'time_limit', 'trailing_stop')"
                              f" and not {GRID_AVERAGED}").fetchone()[0]
        # the demo's paper book walks each candle's market path, the replay walks the same path
        on_closes = calibrate(conn, settings, EvaluationReport(), closes_only=True)
        on_path = calibrate(conn, settings, EvaluationReport())
        rows = conn.execute("select agrees, sim_entry_price, real_entry_price, real_exit_reason, sim_exit_reason"
                            " from shadow_calibration").fetchall()
    on_candles = on_path
    assert trades >= 3 and len(rows) == trades  # every real barrier exit is calibrated
    for strategy, calibration in on_path.items():
        if calibration.trades < settings.min_calibration_trades:
            continue
        # same prices in both worlds: the exit reasons agree; the closes alone miss the wicks the book showed
        assert calibration.reason_agreement is not None and calibration.reason_agreement >= 0.9, (strategy, rows)
        closes = on_closes[strategy].reason_agreement
        assert closes is None or calibration.reason_agreement >= closes, (strategy, closes)
        # a match needs the money too, so never more matches than same reasons
        assert calibration.agreement is not None and calibration.agreement <= calibration.reason_agreement
    # the executor enters during the next candle's walk, after its stability window: near the decision close
    assert all(abs(float(r[1]) / float(r[2]) - 1) < 0.02 for r in rows)
    # agreement below shadow.min_agreement blocks recommendations, and the reason says so
    low = next((s, c) for s, c in on_candles.items() if c.trades >= settings.min_calibration_trades)
    if low[1].agreement < settings.min_agreement:
        from shadow.recommend import calibration_gate

        assert "below shadow.min_agreement" in calibration_gate(low[1], settings)[0]


def test_shadow_recommend_prints_a_recommendation_or_why_none(demo: str) -> None:
    result = subprocess.run([sys.executable, "-m", "controller", "shadow", "recommend"], cwd=PROJECT_ROOT,
                            env=_env(demo), capture_output=True, text=True, timeout=DEMO_S, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "calibration" in result.stdout
    for strategy in ("dca", "channel"):
        assert f"{strategy}: recommendation" in result.stdout or f"{strategy}: no recommendation" in result.stdout
    report = subprocess.run([sys.executable, "-m", "controller", "shadow", "report", "--window", "72"],
                            cwd=PROJECT_ROOT, env=_env(demo), capture_output=True, text=True, timeout=DEMO_S,
                            check=False)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "CHAMPION" in report.stdout and "CONSERVATIVE" in report.stdout and "AGGRESSIVE" in report.stdout


def test_stored_comparisons_are_per_unit_with_their_resolution_and_one_correction_per_pass(demo: str) -> None:
    with psycopg.connect(demo) as conn:
        rows = conn.execute(
            "select v.name, p.strategy, p.window_h, p.basis, p.p_value, p.q_value, p.p_resolution, p.mde_pct,"
            " p.evidence_start, p.evidence_end, p.candidates"
            "  from shadow_performance p join shadow_variations v on v.id = p.variation_id"
            " where p.window_end = (select max(window_end) from shadow_performance) and v.name <> 'CHAMPION'"
            " order by p.strategy, v.name, p.window_h").fetchall()
    assert rows
    sized = [r for r in rows if r[0] == "VOLATILITY_SIZED"]
    assert sized and all(r[3] == "per unit at risk" for r in sized)  # same entries as CHAMPION, other sizes
    tested = [r for r in rows if r[3] != "no-op"]
    assert all(r[4] is None and r[5] is None for r in rows if r[3] == "no-op")
    assert tested and all(r[4] >= r[6] and r[7] is not None for r in tested)  # never below 1 / (B + 1)
    # Benjamini-Hochberg ran once over every comparison of the pass (all strategies and windows); a longer window
    # that read the same evidence as a shorter one is not a second test: it carries the shorter one's q
    family: dict[tuple, tuple] = {}
    for r in tested:
        family.setdefault((r[0], r[1], r[8], r[9], r[10]), r)
    q = benjamini_hochberg(np.array([r[4] for r in family.values()]))
    assert np.allclose(q, [r[5] for r in family.values()])
    assert all(r[5] == family[(r[0], r[1], r[8], r[9], r[10])][5] for r in tested)
