"""Exit routing benchmark: what migration 0018's claim_signals costs against 0006's, on a queue with a history.

0018 adds to every claim: resolving exits whose entry closed, counting this consumer's exits, and an
`exists` on the entry for each exit candidate. Measured on a database holding 20,000 closed entries with
their trades and 5,000 closed exits, plus 40 open positions (two bots) with 20 exits waiting for their
holders: p50 of 300 claim + ack cycles (claim one new entry, ack it rejected), the 0018 function and 0006's
(installed beside it as queue_core.claim_signals_0006) alternating so that the box's noise falls on both.
Last line of output: one JSON object.
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable

import psycopg
from _support import interleaved, migrated_database, percentile, postgres_server

from controller.data.migrate import MIGRATIONS_DIR
from tests.mutation.sql_mutants import function_statement

HISTORY = 20_000
CLOSED_EXITS = 5_000
OPEN = 20  # positions per bot
CYCLES = 300


def seed(conn: psycopg.Connection) -> None:
    conn.execute("""
        insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,
                             confidence, status, claimed_by, claimed_at, finished_at)
        select now() + interval '1 hour', 's' || (i %% 5), 'binance', 'H' || i || '-USDT', 'buy', 100, 50, 2, 0.7,
               'closed', 'bot-' || (i %% 2), now(), now()
          from generate_series(1, %s) i""", [HISTORY])
    conn.execute("""
        insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, fees_quote,
                            pnl_quote, pnl_pct, exit_reason, opened_at, closed_at)
        select id, exchange, symbol, side, 0.5, 100, 101, 0.1, 0.4, 1, 'strategy_exit', now(), now() from signals""")
    conn.execute("""
        insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,
                             confidence, status, claimed_by, claimed_at, finished_at, kind, entry_signal_id)
        select now() + interval '1 hour', strategy, exchange, symbol, 'sell', 100, 50, 2, 1, 'closed', claimed_by,
               now(), now(), 'exit', id
          from signals order by created_at limit %s""", [CLOSED_EXITS])
    # the new entries first: the oldest, so 0006 (which would hand out any exit) reaches them first too
    conn.execute("""
        insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,
                             confidence)
        select now() + interval '1 hour', 'new', 'binance', 'N' || i || '-USDT', 'buy', 100, 50, 2, 0.7
          from generate_series(1, %s) i""", [2 * CYCLES + 10])
    # open positions of two bots, half of them with an exit waiting for its holder (who is not claiming)
    conn.execute("""
        insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,
                             confidence, status, claimed_by, claimed_at, executing_at)
        select now() + interval '1 hour', 'open', 'binance', 'P' || i || '-USDT', 'buy', 100, 50, 2, 0.7,
               'executing', case when i <= %s then 'bot-b' else 'bot-c' end, now(), now()
          from generate_series(1, %s) i""", [OPEN, 2 * OPEN])
    conn.execute("""
        insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,
                             confidence, kind, entry_signal_id)
        select now() + interval '1 hour', strategy, exchange, symbol, 'sell', 100, 50, 2, 1, 'exit', id
          from signals where status = 'executing' and symbol ~ '^P[0-9]*[02468]-'""")
    conn.execute("analyze")


def install_0006(conn: psycopg.Connection) -> None:
    statement = function_statement((MIGRATIONS_DIR / "20260101000006_queue.sql").read_text(), "claim_signals")
    conn.execute(re.sub(r"^create function claim_signals\(", "create function queue_core.claim_signals_0006(",
                        statement, count=1))


def main() -> None:
    with postgres_server() as admin_url, migrated_database(admin_url) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            seed(conn)
            install_0006(conn)

            def cycle(function: str) -> Callable[[], None]:
                def run() -> None:
                    rows = conn.execute(f"select id, kind from queue_core.{function}('bot-a', 1, 60)").fetchall()
                    assert [kind for _, kind in rows] == ["entry"], rows  # bot-a holds none of the waiting exits
                    conn.execute("select queue_core.ack_signal(%s, 'bot-a', 'rejected', 'bench')", [rows[0][0]])
                return run

            routed, base = interleaved(cycle("claim_signals"), cycle("claim_signals_0006"), CYCLES)
            waiting = conn.execute("select count(*) from signals where kind = 'exit' and status = 'new'").fetchone()[0]
    assert waiting == OPEN, waiting  # nobody else took the holders' exits
    result = {"cycle_0018_p50_ms": round(statistics.median(routed), 3),
              "cycle_0006_p50_ms": round(statistics.median(base), 3),
              "cycle_0018_p95_ms": round(percentile(routed, 95), 3),
              "cycle_0006_p95_ms": round(percentile(base, 95), 3),
              "routing_ratio": round(statistics.median(routed) / statistics.median(base), 3)}
    print(f"claim + ack, p50 of {CYCLES} over {HISTORY:,} closed entries, {CLOSED_EXITS:,} closed exits and "
          f"{OPEN} exits waiting: 0018 {result['cycle_0018_p50_ms']} ms, 0006 {result['cycle_0006_p50_ms']} ms "
          f"(ratio {result['routing_ratio']})")
    print(json.dumps({"benchmark": "exit_routing", "history": HISTORY, "cycles": CYCLES, **result}))


if __name__ == "__main__":
    main()
