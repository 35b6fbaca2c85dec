"""Access benchmark (issue 15): what the membership gate and the consumer check cost, each against a
baseline in the same run.

1. A dashboard read (dashboard_strategy_performance over 5,000 closed trades), p50 over 200 reads:
   (a) as a member (role authenticated, JWT claims set as PostgREST sets them: the gate checks the
   membership table) against (b) the view's own query without the gate, run as the owner.
2. A claim + ack cycle (one signal each), p50 over 300 cycles: (a) through the public functions with an
   executor token's claims (the consumer check, then the original function) against (b) the original
   functions in queue_core called directly as the owner.

Each pair is measured alternately, call by call, so the box's noise falls on both alike. No target: the
figures show what the checks add. Last line: one JSON object.
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta

import psycopg
from _support import interleaved, migrated_database, percentile, postgres_server
from psycopg.types.json import Jsonb

TRADES = 5_000
READS = 200
CYCLES = 300
MEMBER = "5d9f4a8e-0000-4000-8000-0000000000b1"


def seed_trades(conn: psycopg.Connection) -> None:
    conn.execute("""
        insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,
                             confidence, status, claimed_by, claimed_at, finished_at)
        select now() + interval '1 hour', 's' || (i %% 5), 'binance', 'C' || i || '-USDT', 'buy', 100, 50, 2, 0.7,
               'closed', 'bot-a', now(), now()
          from generate_series(1, %s) i""", [TRADES])
    conn.execute("""
        insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, fees_quote,
                            pnl_quote, pnl_pct, exit_reason, opened_at, closed_at)
        select id, exchange, symbol, side, 0.5, 100, 101, 0.1, (random() - 0.4), 1, 'take_profit', now(), now()
          from signals""")
    conn.execute("insert into dashboard_members (user_id, added_by) values (%s, 'bench')", [MEMBER])
    conn.execute("analyze")


def emit(conn: psycopg.Connection, n: int, prefix: str) -> None:
    expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for i in range(n):
        conn.execute("select emit_signal(%s)", [Jsonb({
            "strategy": "bench", "exchange": "binance", "symbol": f"{prefix}{i}-USDT", "side": "buy", "price": 100,
            "quote_amount": 50, "take_profit_pct": 2, "confidence": 0.7, "expires_at": expires})])


def dashboard_read(url: str) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as owner:
        seed_trades(owner)
        # the query of 0007, as the owner: what reading the view cost before the gate
        ungated = owner.execute("select pg_get_viewdef('dashboard_strategy_performance')").fetchone()[0]
        ungated = ungated.split(" FROM (", 1)[1].rsplit(") ungated", 1)[0]
        with psycopg.connect(url, autocommit=True) as member:
            member.execute("set role authenticated")
            member.execute("select set_config('request.jwt.claims', %s, false)",
                           [json.dumps({"role": "authenticated", "sub": MEMBER})])
            assert member.execute("select sum(trades) from dashboard_strategy_performance").fetchone()[0] == TRADES
            gated, base = interleaved(lambda: member.execute("select * from dashboard_strategy_performance").fetchall(),
                                      lambda: owner.execute(ungated).fetchall(), READS)
    return {"read_member_p50_ms": round(statistics.median(gated), 3),
            "read_ungated_p50_ms": round(statistics.median(base), 3),
            "read_member_p95_ms": round(percentile(gated, 95), 3),
            "read_gate_ratio": round(statistics.median(gated) / statistics.median(base), 3)}


def claim_cycles(url: str) -> dict[str, float]:
    with psycopg.connect(url, autocommit=True) as owner:
        emit(owner, 2 * CYCLES, "B")
        with psycopg.connect(url, autocommit=True) as bot:
            bot.execute("set role executor")
            bot.execute("select set_config('request.jwt.claims', %s, false)",
                        [json.dumps({"role": "executor", "consumer": "bot-a"})])

            def bound() -> None:
                (sid,) = bot.execute("select id from claim_signals('bot-a', 1, 60)").fetchone()
                bot.execute("select ack_signal(%s, 'bot-a', 'rejected', 'bench')", [sid])

            def direct() -> None:
                (sid,) = owner.execute("select id from queue_core.claim_signals('bot-a', 1, 60)").fetchone()
                owner.execute("select queue_core.ack_signal(%s, 'bot-a', 'rejected', 'bench')", [sid])

            checked, base = interleaved(bound, direct, CYCLES)
    return {"cycle_bound_p50_ms": round(statistics.median(checked), 3),
            "cycle_direct_p50_ms": round(statistics.median(base), 3),
            "cycle_check_ratio": round(statistics.median(checked) / statistics.median(base), 3)}


def main() -> None:
    with postgres_server() as admin_url:
        with migrated_database(admin_url) as url:
            read = dashboard_read(url)
        print(f"dashboard_strategy_performance over {TRADES:,} trades, p50 of {READS}: as a member "
              f"{read['read_member_p50_ms']} ms, the ungated query as owner {read['read_ungated_p50_ms']} ms "
              f"(ratio {read['read_gate_ratio']})")
        with migrated_database(admin_url) as url:
            cycle = claim_cycles(url)
        print(f"claim + ack, p50 of {CYCLES}: with a bound token {cycle['cycle_bound_p50_ms']} ms, the unchecked "
              f"functions as owner {cycle['cycle_direct_p50_ms']} ms (ratio {cycle['cycle_check_ratio']})")
    print(json.dumps({"benchmark": "access", "trades": TRADES, **read, **cycle}))


if __name__ == "__main__":
    main()
