"""The offline phase-1 run (what `make demo` runs), on a short window: signals become trades."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from controller.config import PROJECT_ROOT


def test_the_offline_demo_turns_signals_into_closed_trades(migrated_db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTROLLER_")}
    env.update(DATABASE_URL=migrated_db, COLUMNS="160")
    result = subprocess.run([sys.executable, "-m", "offline.demo", "--hours", "12"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=540, check=False)  # slow on a busy box
    assert result.returncode == 0, result.stderr[-3000:]
    assert "signal funnel" in result.stdout and "P&L per strategy" in result.stdout

    with psycopg.connect(migrated_db) as conn:
        statuses = dict(conn.execute("select status, count(*) from signals group by 1").fetchall())
        trades = conn.execute("select count(*), count(*) filter (where s.status = 'closed') from trades t"
                              " join signals s on s.id = t.signal_id").fetchone()[0:2]
        orders = conn.execute(
            "select t.signal_id, count(*) filter (where o.purpose = 'entry'),"
            " count(*) filter (where o.purpose = 'exit') from trades t join orders o on o.signal_id = t.signal_id"
            " group by 1").fetchall()
        funnel = conn.execute("select sum(emitted), sum(claimed), sum(closed) from dashboard_signal_funnel").fetchone()
    assert statuses.get("new", 0) == 0 and statuses.get("claimed", 0) == 0  # every signal reached the bot
    # every closed signal has its trade (trades.signal_id is the primary key: one at most), and no other has one
    assert trades[0] >= 3 and trades[0] == trades[1] == statuses.get("closed", 0)
    assert all(entries == 1 and exits == 1 for _, entries, exits in orders)  # each executed once
    assert funnel[0] == funnel[1] == sum(statuses.values())  # the view agrees: all emitted, all claimed
    assert funnel[2] == statuses.get("closed", 0)

    # `verify` on the demo run agrees with the database
    verify = subprocess.run([sys.executable, "-m", "controller", "verify", "--window", "1h"], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in verify.stdout.splitlines() if line.count("│") >= 3}
    assert int(lines["emitted"]) == sum(statuses.values())
    assert int(lines["claimed"]) == funnel[1]
    assert int(lines["closed"]) == statuses.get("closed", 0)
    assert int(lines["still open"]) == statuses.get("executing", 0)
    with psycopg.connect(migrated_db) as conn:  # the demo's trades close in paper-clock time, ahead of the wall's
        in_window = conn.execute("select count(*) from trades"
                                 " where closed_at >= now() - interval '1 hour' and closed_at <= now()").fetchone()[0]
    assert f"trades closed in the window: {in_window}," in verify.stdout
    # right after the run nothing may be stuck: the bot claimed every signal and holds orders for the open ones
    assert "nothing stuck" in verify.stdout, verify.stdout
    assert verify.returncode == 0, verify.stderr[-2000:]
