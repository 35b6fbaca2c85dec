"""The offline demo (what `make demo` runs): phase 1 on the shared recordings, every phase on a USDT folder cut
into two windows, and the options that do not fit the data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from controller.config import PROJECT_ROOT
from controller.data.market_data import ohlcv_dir
from offline import demo
from tests.conftest import DEMO_S, DEMO_TEST_TIMEOUT, DemoRun
from tests.support.report_page import cards, expected_cards, sql_headline

SHARED = ohlcv_dir()
needs_data = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared recordings not found at {SHARED}")
pytestmark = DEMO_TEST_TIMEOUT


def run_demo(url: str, *args: str, timeout: int = DEMO_S) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env.update(DATABASE_URL=url, COLUMNS="160")
    return subprocess.run([sys.executable, "-m", "offline.demo", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@needs_data
def test_the_offline_demo_turns_signals_into_closed_trades(demo_run: DemoRun) -> None:
    result, migrated_db = demo_run.result, demo_run.url
    assert result.returncode == 0, result.stderr[-3000:]
    assert "signal funnel" in result.stdout and "P&L per strategy" in result.stdout
    assert "phase 1: rules trading on paper" in result.stdout
    # phase 2 runs on the flag a user sets, `profile: validation`: the scan narrows itself to DCA at 0.4 x size
    assert "phase 2: profile=validation (dca only" in result.stdout.replace("\n", "")
    assert f"report: {demo_run.report}" in result.stdout.replace("\n", "")

    with psycopg.connect(migrated_db) as conn:
        every = dict(conn.execute("select status, count(*) from signals group by 1").fetchall())
        statuses = dict(conn.execute("select status, count(*) from signals where kind = 'entry' group by 1").fetchall())
        exits = conn.execute("select x.status, x.reject_reason, t.exit_reason from signals x"
                             " left join trades t on t.signal_id = x.entry_signal_id where x.kind = 'exit'").fetchall()
        strategy_exits = conn.execute("select count(*) from trades t where t.exit_reason = 'strategy_exit' and not"
                                      " exists (select 1 from signals x where x.entry_signal_id = t.signal_id"
                                      " and x.kind = 'exit' and x.status = 'closed')").fetchone()[0]
        trades = conn.execute("select count(*), count(*) filter (where s.status = 'closed') from trades t"
                              " join signals s on s.id = t.signal_id").fetchone()[0:2]
        orders = conn.execute(
            "select t.signal_id, count(*) filter (where o.purpose = 'entry'),"
            " count(*) filter (where o.purpose = 'exit' and o.filled_amount > 0),"
            " count(*) filter (where o.purpose = 'exit' and o.filled_amount = 0 and o.status <> 'cancelled'),"
            " coalesce(s.grid_levels, 0) from trades t"
            " join signals s on s.id = t.signal_id join orders o on o.signal_id = t.signal_id"
            " group by 1, s.grid_levels").fetchall()
        funnel = conn.execute("select sum(emitted), sum(claimed), sum(closed) from dashboard_signal_funnel").fetchone()
        fees = conn.execute("select count(*) filter (where fee_quote > 0), count(*) from fills").fetchone()
    assert every.get("new", 0) == 0 and every.get("claimed", 0) == 0  # every signal reached the bot
    # every closed entry has its trade (trades.signal_id is the primary key: one at most), and no other has one
    assert trades[0] >= 3 and trades[0] == trades[1] == statuses.get("closed", 0)
    # each executed once: one entry order (plus the DCA grid's levels, at most) and one exit that sold (a maker
    # take profit moved after a grid level filled leaves its first, unfilled sell cancelled, nothing else)
    assert all(1 <= entries <= 1 + levels and exits == 1 and idle == 0 for _, entries, exits, idle, levels in orders)
    # strategy exits (on by default): each reached the bot holding its entry, or says why it could not act
    assert all(status == "closed" or (status == "rejected" and reason.startswith("entry ")) or status == "expired"
               for status, reason, _ in exits), exits
    assert strategy_exits == 0  # a strategy_exit trade always comes from its closed exit signal
    # the view agrees: every entry emitted was claimed, and it counts closed the entries with a trade row
    assert funnel[0] == funnel[1] == sum(statuses.values()) and funnel[2] == trades[0]
    assert fees[0] == fees[1] > 0  # every fill paid a fee

    # `verify` on the demo run agrees with the database
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env.update(DATABASE_URL=migrated_db, COLUMNS="160")
    verify = subprocess.run([sys.executable, "-m", "controller", "verify", "--window", "1h"], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in verify.stdout.splitlines() if line.count("│") >= 3}
    assert int(lines["emitted"]) == funnel[0]  # verify counts the entries' stages as the view does
    assert int(lines["claimed"]) == funnel[1]
    assert int(lines["closed"]) == funnel[2]
    # the run ends flat: what was still open when the replay ended was closed at market (reason manual)
    assert every.get("executing", 0) == 0 and int(lines["still open"]) == 0
    with psycopg.connect(migrated_db) as conn:  # the demo's trades close in paper-clock time, ahead of the wall's
        in_window = conn.execute("select count(*) from trades"
                                 " where closed_at >= now() - interval '1 hour' and closed_at <= now()").fetchone()[0]
    assert f"trades closed in the window: {in_window}," in verify.stdout
    # right after the run nothing may be stuck: the bot claimed every signal and holds orders for the open ones
    assert "nothing stuck" in verify.stdout, verify.stdout
    assert verify.returncode == 0, verify.stderr[-2000:]


@needs_data
def test_the_demo_reports_headline_figures_equal_to_a_computation_from_its_trades_table(demo_run: DemoRun) -> None:
    """The report's headline on the paper balance the demo printed, against SQL over the rows it stored."""
    assert demo_run.result.returncode == 0, demo_run.result.stderr[-3000:]
    flat = " ".join(demo_run.result.stdout.split())
    balance, quote = re.search(r"paper balance ([\d.]+) (\w+)", flat).groups()  # type: ignore[union-attr]
    with psycopg.connect(demo_run.url) as conn:
        expected = sql_headline(conn, float(balance))
    page = demo_run.report.read_text()
    assert f"Closed trades in {quote}, starting capital {float(balance):.2f} {quote}" in page
    assert cards(page) == expected_cards(expected, quote) and expected.trades >= 3


@needs_data
def test_no_take_profit_is_paid_past_its_level_by_more_than_the_spread_and_one_path_step(demo_run: DemoRun) -> None:
    """The paper book walks each candle's path in steps of at most PATH_STEP_PCT and the take profit rests as
    a limit sell at its level: a take profit's gross return (exit over entry, the averaged entry for a grid)
    may exceed the signal's level by the book's spread plus one step at most, never by a close already past it."""
    assert demo_run.result.returncode == 0, demo_run.result.stderr[-3000:]
    bound = 2 * demo.BOOK_SPREAD_PCT + demo.PATH_STEP_PCT
    with psycopg.connect(demo_run.url) as conn:
        overshoot = conn.execute(
            "select t.signal_id, (t.exit_price / t.entry_price - 1) * 100 - s.take_profit_pct from trades t"
            " join signals s on s.id = t.signal_id where t.exit_reason = 'take_profit'").fetchall()
    assert overshoot, "no take-profit trade in the demo run: nothing to check"
    past = [(signal_id, float(points)) for signal_id, points in overshoot if float(points) > bound]
    assert not past, f"{len(past)} of {len(overshoot)} take profits paid more than {bound:g} points past the level"


@needs_data
def test_every_phase_on_a_usdt_pair_recorded_in_two_windows(migrated_db: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    recorded = pd.read_csv(SHARED / "binanceusdm_BTC-USDT_5m.csv")
    recorded.iloc[:1500].to_csv(data / "binance_BTC-USDT_5m_20230102.csv", index=False)
    recorded.iloc[2500:4000].to_csv(data / "binance_BTC-USDT_5m_20230111.csv", index=False)
    report = tmp_path / "report.html"
    # the 29 h of a --quick run with 12 h of phase 1 end with the second window (2023-01-16 13:45); CHANNEL buys
    # BTC's dip that morning, in phase 4
    result = run_demo(migrated_db, "--data", str(data), "--quick", "--start", "2023-01-15T08:45:00Z", "--hours", "12",
                      "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "binance BTC-USDT (5m candles, quoted in USDT)" in out
    assert "phase 0: storage bounded: holds" in out
    flat = " ".join(out.split())  # rich wraps long lines at a space
    assert "50 USDT a trade, paper balance 10000 USDT" in flat and "20 USDT a trade" in flat
    assert "phase 3: ML trained walk-forward on the candles before" in out
    # phase 4: the evaluator beside the replay, a pass every few replayed hours, then the leaderboard
    assert "phase 4: shadow.apply=True; an evaluation pass on the scans so far" in flat
    assert flat.count(" pass at 2023-01-16") >= 2 and "shadow leaderboard" in out
    final = out.split("success criteria over the whole run")[1]
    for phase in (1, 2, 3, 4):  # all four checklists at the end
        assert f"phase {phase}: " in final
    assert "phase 3: ML as a booster: does not hold" in final  # a few days of one pair: no model passes the gate
    assert f"report: {report}" in out.replace("\n", "")
    page = report.read_text()
    assert "Offline demo" in page and "Phase checklist" in page
    with psycopg.connect(migrated_db) as conn:
        sizes = {float(q) for (q,) in conn.execute("select distinct quote_amount from signals")}
        flags = dict(conn.execute("select name, value from flags where name in ('phase', 'profile')").fetchall())
        # the old candles phase 0 loaded (200 days back); the replayed 2023 ones are stored after retention ran
        archived = conn.execute("select count(*) from candles where ts < now() - interval '180 days'"
                                " and ts > now() - interval '1 year'").fetchone()[0]
    # in USDT: at most 50 a trade (20 in validation), scaled down by the regime and the DCA grid's first level,
    # never a BTC-sized amount such as 0.002
    assert sizes and all(1.0 <= size <= 50.0 for size in sizes), sizes
    assert flags["phase"] == 4 and flags["profile"] == "default"
    assert archived == 0  # retention left no old candle behind


@needs_data
def test_phases_3_and_4_train_before_the_window_score_it_and_shadow_it(migrated_db: str, tmp_path: Path) -> None:
    # the shared recordings' last hours (January 2018) have entries for the shadows to decide on
    result = run_demo(migrated_db, "--data", str(SHARED), "--phases", "3-4", "--quick", "--report",
                      str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout.replace("\n", " ")
    window = out.split("phase 3: ML trained walk-forward on the candles before ")[1][:16]
    assert "labelled entries from" in out and "(labels ending before the window only)" in out
    with psycopg.connect(migrated_db) as conn:
        models = conn.execute("select count(*), max(training_end) from ml_models").fetchone()
        arms = dict(conn.execute("select arm, count(*) from ml_predictions group by 1").fetchall())
        outcomes = {n for (n,) in conn.execute(
            "select distinct v.name from shadow_outcomes o join shadow_variations v on v.id = o.variation_id")}
        board = {n for (n,) in conn.execute("select distinct name from dashboard_shadow_leaderboard")}
        # what the latest pass stored per variation: a no-op on the evidence is left off the leaderboard
        tested = {n for (n,) in conn.execute(
            "select distinct v.name from shadow_performance p join shadow_variations v on v.id = p.variation_id"
            " where v.active and p.window_end = (select max(window_end) from shadow_performance)"
            " and p.basis is distinct from 'no-op'")}
        flags = dict(conn.execute("select name, value from flags where name in ('phase', 'ml.enabled',"
                                  " 'shadow.enabled')").fetchall())
    if models[0]:  # trained: on labels that end before the scored window (walk-forward, no leakage)
        assert models[1] < pd.Timestamp(window, tz="UTC")
    active = "promoted" in out
    if active:  # a promoted model scores the window into both arms of the randomized control
        assert arms.get("boosted", 0) > 0 and arms.get("control", 0) > 0, arms
    else:  # every strategy refused, each with the gate's or the trainer's reason
        assert "no model passed the promotion gate" in out
        assert all(f"  {s}: " in result.stdout for s in ("dca", "swing", "channel"))
        assert "refused" in out or "kept inactive" in out
    assert {"CHAMPION", "CONSERVATIVE", "AGGRESSIVE"} <= outcomes
    assert "CHAMPION" in board and board == tested and board <= outcomes, (board, tested)
    assert "shadow recommend dca: " in out and ("rollback" in out)
    assert flags["phase"] == 4 and flags["ml.enabled"] is True and flags["shadow.enabled"] is True


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "/nonexistent/candles"], "error: no such folder: /nonexistent/candles"),
    (["--phases", "2-7"], "error: --phases: phases are 0 to 4, got '2-7'"),
    (["--phases", "one"], "error: --phases: expected a range like 0-4 or a list like 1,2, got 'one'"),
    (["--start", "yesterday"], "error: --start: not an ISO 8601 time: 'yesterday'"),
    (["--hours", "-3"], "error: --hours must be positive, got -3"),
    (["--report", "/nonexistent/r.html"], "error: --report: folder /nonexistent does not exist"),
])
def test_options_that_cannot_work_stop_with_one_line_before_touching_a_database(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = ["--data", str(SHARED)] if "--data" not in args else []
    if data and not SHARED.is_dir():
        pytest.skip(f"shared recordings not found at {SHARED}")
    assert demo.main([*data, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


@needs_data
def test_a_second_demo_on_the_same_server_stops_with_one_line(migrated_db: str, tmp_path: Path) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as running:  # what a first demo holds for its whole run
        running.execute("select pg_advisory_lock(hashtext('offline.demo'))")
        result = run_demo(migrated_db, "--phases", "1", "--quick", "--report", str(tmp_path / "r.html"))
        signals = running.execute("select count(*) from signals").fetchone()[0]
    assert result.returncode == 2
    assert result.stderr.startswith("error: another offline demo is running on this database server")
    assert result.stderr.count("\n") == 1 and signals == 0  # it wrote nothing
