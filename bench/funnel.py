"""Funnel benchmark: what the narrowing funnel (0027) costs against the per-status funnel it replaced (0007),
the two read alternately in one run.

20,000 entry signals, each claimed with an entry order, an entry fill and a trade row, over five strategies.
p50 over 30 reads of (a) `select * from dashboard_signal_funnel` as the owner, (b) the same as a dashboard
member (the membership gate), against (c) 0007's query of the view, read from its migration file and run
as the owner. Then `verify`'s query of one hour of signals (60 of them, their stages read from
dashboard_signal_stages) against the stages of every signal: a window computes its own signals' stages only.
No target: the figures show what narrowing adds. Last line: one JSON object.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import psycopg
from _support import interleaved, migrated_database, postgres_server

SIGNALS = 20_000
READS = 30
MEMBER = "5d9f4a8e-0000-4000-8000-0000000000f1"
ROOT = Path(__file__).resolve().parents[1]


def per_status_query() -> str:
    """0007's dashboard_signal_funnel, as its migration defines it."""
    text = (ROOT / "supabase/migrations/20260101000007_dashboard_views.sql").read_text()
    return text.split("create view dashboard_signal_funnel as", 1)[1].split(";", 1)[0]


def seed(conn: psycopg.Connection) -> None:
    conn.execute("""
        insert into signals (created_at, expires_at, strategy, exchange, symbol, side, price, quote_amount,
                             take_profit_pct, confidence, status, claimed_by, claimed_at, finished_at)
        select now() - i * interval '1 minute', now() + interval '1 hour', 's' || (i %% 5), 'binance',
               'C' || i || '-USDT', 'buy', 100, 50, 2, 0.7, 'closed', 'bot-a', now(), now()
          from generate_series(1, %s) i""", [SIGNALS])
    conn.execute("""
        insert into orders (client_order_id, signal_id, exchange, symbol, side, purpose, order_type, amount, status,
                            filled_amount, created_at, updated_at)
        select 'o' || id, id, exchange, symbol, 'buy', 'entry', 'market', 1, 'filled', 1, now(), now() from signals""")
    conn.execute("insert into fills (client_order_id, exchange_trade_id, signal_id, price, amount, fee_quote, ts)"
                 " select 'o' || id, 't', id, 100, 1, 0, now() from signals")
    conn.execute("""
        insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, fees_quote, pnl_quote,
                            pnl_pct, exit_reason, opened_at, closed_at)
        select id, exchange, symbol, side, 0.5, 100, 101, 0.1, 0.1, 1, 'take_profit', now(), now() from signals""")
    conn.execute("insert into dashboard_members (user_id, added_by) values (%s, 'bench')", [MEMBER])
    conn.execute("analyze")


def main() -> None:
    old = per_status_query()
    with postgres_server() as admin_url, migrated_database(admin_url) as url:
        with psycopg.connect(url, autocommit=True) as owner, psycopg.connect(url, autocommit=True) as member:
            seed(owner)
            member.execute("set role authenticated")
            member.execute("select set_config('request.jwt.claims', %s, false)",
                           [json.dumps({"role": "authenticated", "sub": MEMBER})])
            assert member.execute("select sum(closed) from dashboard_signal_funnel").fetchone()[0] == SIGNALS
            new, base = interleaved(lambda: owner.execute("select * from dashboard_signal_funnel").fetchall(),
                                    lambda: owner.execute(old).fetchall(), READS)
            gated, base2 = interleaved(lambda: member.execute("select * from dashboard_signal_funnel").fetchall(),
                                       lambda: owner.execute(old).fetchall(), READS)
            window = ("select s.id, st.stage from signals s join dashboard_signal_stages st on st.signal_id = s.id"
                      " where s.created_at >= now() - interval '1 hour' and s.created_at < now()")
            # against the whole-table funnel: what a window costs that the full funnel would
            hour, full = interleaved(lambda: owner.execute(window).fetchall(),
                                     lambda: owner.execute("select * from dashboard_signal_stages").fetchall(), READS)
    figures = {"new_owner_p50_ms": round(statistics.median(new), 2),
               "new_member_p50_ms": round(statistics.median(gated), 2),
               "per_status_p50_ms": round(statistics.median(base + base2), 2),
               "ratio_new_per_status": round(statistics.median(new) / statistics.median(base), 3),
               "verify_hour_p50_ms": round(statistics.median(hour), 2),
               "all_stages_p50_ms": round(statistics.median(full), 2)}
    print(f"dashboard_signal_funnel over {SIGNALS:,} entry signals, p50 of {READS}: narrowing as owner "
          f"{figures['new_owner_p50_ms']} ms, as a member {figures['new_member_p50_ms']} ms; 0007's per-status query "
          f"{figures['per_status_p50_ms']} ms (ratio {figures['ratio_new_per_status']}); verify's hour of stages "
          f"{figures['verify_hour_p50_ms']} ms (every signal's stages: {figures['all_stages_p50_ms']} ms)")
    print(json.dumps({"benchmark": "funnel", "signals": SIGNALS, **figures}))


if __name__ == "__main__":
    main()
