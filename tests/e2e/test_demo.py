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
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "signal funnel" in result.stdout and "P&L per strategy" in result.stdout

    with psycopg.connect(migrated_db) as conn:
        statuses = dict(conn.execute("select status, count(*) from signals group by 1").fetchall())
        trades = conn.execute("select count(*), count(distinct signal_id) from trades").fetchone()
        orders = conn.execute(
            "select t.signal_id, count(*) filter (where o.purpose = 'entry'),"
            " count(*) filter (where o.purpose = 'exit') from trades t join orders o on o.signal_id = t.signal_id"
            " group by 1").fetchall()
        funnel = conn.execute("select sum(emitted), sum(claimed), sum(closed) from dashboard_signal_funnel").fetchone()
    assert statuses.get("new", 0) == 0 and statuses.get("claimed", 0) == 0  # every signal reached the bot
    assert trades[0] >= 3 and trades[0] == trades[1]  # at most one closed trade per signal
    assert all(entries == 1 and exits == 1 for _, entries, exits in orders)  # each executed once
    assert funnel[0] == funnel[1] == sum(statuses.values())  # the view agrees: all emitted, all claimed
    assert funnel[2] == statuses.get("closed", 0) >= trades[0]
