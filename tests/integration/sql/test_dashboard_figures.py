"""The dashboard's figures, exactly: known signals, orders, fills, trades and fees go in through the real
queue functions, and every `dashboard_*` view must show the P&L, win rate, fees, counts and open positions
worked out by hand below. A view that this file does not check fails `test_every_dashboard_view_is_checked`.

The world (two strategies, fixed days):

    dca   2026-01-05  BTC  ml 0.8  closed  pnl +1.80 (+3.5 %)  fees 0.10   entry 0.3@100 + 0.2@101, exit 0.5@104
          2026-01-05  ETH  rules   closed  pnl -1.25 (-2.5 %)  fees 0.08
          2026-01-05  SOL  ml 0.6  closed  pnl +0.50 (+1.0 %)  fees 0.04   a first entry order cancelled unfilled
          2026-01-05  XRP          rejected "spread too wide"
          2026-01-06  ADA          rejected "spread too wide"
          2026-01-06  DOT          rejected "price moved"
          2026-01-06  LTC          executing: entry 1.0@50 + 0.5@53, exit 0.4@55 so far -> 1.1 held at 51
          2026-01-06  LINK         new (nobody claimed it)
    swing 2026-01-05  BTC  rules   closed  pnl +2.00 (+2.0 %)  fees 0.20
          2026-01-05  ETH          expired unclaimed
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import product
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.support.trading_rows import History

D1, D2 = date(2026, 1, 5), date(2026, 1, 6)
CLOSED_AT = datetime(2026, 1, 7, 12, 0, tzinfo=UTC)
CHECKED = {"dashboard_signal_funnel", "dashboard_signal_rejections", "dashboard_strategy_performance",
           "dashboard_ml_vs_rules", "dashboard_open_positions", "dashboard_shadow_leaderboard", "dashboard_storage",
           "dashboard_active_strategy_params", "dashboard_exit_signals",
           "dashboard_signal_stages"}


def emit(conn: psycopg.Connection, strategy: str, symbol: str, **extra: Any) -> UUID:
    return conn.execute("select emit_signal(%s)", [Jsonb({
        "strategy": strategy, "exchange": "binance", "symbol": symbol, "side": "buy", "price": 100,
        "quote_amount": 50, "take_profit_pct": 2, "stop_loss_pct": 1, "time_limit_s": 3600, "confidence": 0.7,
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(), **extra})]).fetchone()[0]


def report(conn: psycopg.Connection, signal_id: UUID, kind: str, **fields: Any) -> None:
    conn.execute("select report_order_event(%s)", [Jsonb({
        "type": kind, "signal_id": str(signal_id), "ts": CLOSED_AT.isoformat(), **fields})])


def order(conn: psycopg.Connection, signal_id: UUID, coid: str, symbol: str, purpose: str,
          fills: list[tuple[str, str, str]], cancel: bool = False) -> None:
    """An order and its fills [(amount, price, fee_quote)], as the executor reports them. (Floats go out as
    their shortest decimal text, e.g. 0.1, which Postgres reads as exactly that numeric.)"""
    side = "buy" if purpose == "entry" else "sell"
    common = {"client_order_id": coid, "exchange": "binance", "symbol": symbol, "side": side, "purpose": purpose}
    report(conn, signal_id, "order_created", order_type="market", **common)
    for n, (amount, price, fee) in enumerate(fills):
        report(conn, signal_id, "order_filled", exchange_trade_id=f"{coid}-{n}", amount=float(amount),
               price=float(price), fee_quote=float(fee), **common)
    report(conn, signal_id, "order_cancelled" if cancel else "order_completed", **common)


def close(conn: psycopg.Connection, signal_id: UUID, symbol: str, pnl: str, pnl_pct: str, fees: str) -> None:
    report(conn, signal_id, "position_closed", exchange="binance", symbol=symbol, side="buy", amount=0.5,
           entry_price=100, exit_price=101, fees_quote=float(fees), pnl_quote=float(pnl),
           pnl_pct=float(pnl_pct), exit_reason="take_profit", opened_at=(CLOSED_AT - timedelta(hours=1)).isoformat())


@pytest.fixture(scope="module")
def world(module_db: str) -> Iterator[tuple[str, dict[str, UUID]]]:
    with psycopg.connect(module_db, autocommit=True) as conn:
        ids = {"dca/BTC": emit(conn, "dca", "BTC-USDT", ml_confidence=0.8),
               "dca/ETH": emit(conn, "dca", "ETH-USDT"),
               "dca/SOL": emit(conn, "dca", "SOL-USDT", ml_confidence=0.6),
               "dca/XRP": emit(conn, "dca", "XRP-USDT"),
               "dca/ADA": emit(conn, "dca", "ADA-USDT"),
               "dca/DOT": emit(conn, "dca", "DOT-USDT"),
               "dca/LTC": emit(conn, "dca", "LTC-USDT"),
               "swing/BTC": emit(conn, "swing", "BTC-USDT"),
               "swing/ETH": emit(conn, "swing", "ETH-USDT")}
        conn.execute("update signals set expires_at = now() - interval '1 second' where id = %s", [ids["swing/ETH"]])
        claimed = conn.execute("select count(*) from claim_signals('bot-a', 100, 600)").fetchone()[0]
        assert claimed == 8  # the expired one is not handed out
        ids["dca/LINK"] = emit(conn, "dca", "LINK-USDT")

        for key, reason in (("dca/XRP", "spread too wide"), ("dca/ADA", "spread too wide"),
                            ("dca/DOT", "price moved")):
            conn.execute("select ack_signal(%s, 'bot-a', 'rejected', %s)", [ids[key], reason])
        for key in ("dca/BTC", "dca/ETH", "dca/SOL", "dca/LTC", "swing/BTC"):
            conn.execute("select ack_signal(%s, 'bot-a', 'executing')", [ids[key]])

        order(conn, ids["dca/BTC"], "btc-in", "BTC-USDT", "entry", [("0.3", "100", "0.03"), ("0.2", "101", "0.02")])
        order(conn, ids["dca/BTC"], "btc-out", "BTC-USDT", "exit", [("0.5", "104", "0.05")])
        close(conn, ids["dca/BTC"], "BTC-USDT", "1.80", "3.5", "0.10")
        order(conn, ids["dca/ETH"], "eth-in", "ETH-USDT", "entry", [("0.5", "100", "0.05")])
        close(conn, ids["dca/ETH"], "ETH-USDT", "-1.25", "-2.5", "0.08")
        order(conn, ids["dca/SOL"], "sol-in-1", "SOL-USDT", "entry", [], cancel=True)
        order(conn, ids["dca/SOL"], "sol-in-2", "SOL-USDT", "entry", [("0.5", "100", "0.02")])
        close(conn, ids["dca/SOL"], "SOL-USDT", "0.50", "1.0", "0.04")
        order(conn, ids["dca/LTC"], "ltc-in", "LTC-USDT", "entry", [("1.0", "50", "0.05"), ("0.5", "53", "0.03")])
        order(conn, ids["dca/LTC"], "ltc-out", "LTC-USDT", "exit", [("0.4", "55", "0.02")], cancel=True)
        order(conn, ids["swing/BTC"], "swing-in", "BTC-USDT", "entry", [("0.5", "100", "0.1")])
        close(conn, ids["swing/BTC"], "BTC-USDT", "2.00", "2.0", "0.20")

        day_two = [ids[k] for k in ("dca/ADA", "dca/DOT", "dca/LTC", "dca/LINK")]
        conn.execute("update signals set created_at = case when id = any(%s) then %s else %s end",
                     [day_two, datetime(2026, 1, 6, 9, tzinfo=UTC), datetime(2026, 1, 5, 9, tzinfo=UTC)])

        # the randomized control of phase 3: one ML-scored signal boosted, one scored but left alone
        conn.execute("insert into ml_models (version, strategy, features, training_start, training_end,"
                     " artefact_path, artefact_sha256) values ('dca-1', 'dca', '[]', %s, %s, 'm.joblib', 'x')",
                     [CLOSED_AT - timedelta(days=30), CLOSED_AT - timedelta(days=2)])
        for key, arm, confidence in (("dca/BTC", "boosted", 0.8), ("dca/SOL", "control", 0.6)):
            conn.execute("insert into ml_predictions (model_version, signal_id, strategy, exchange, symbol, candle_ts,"
                         " confidence, arm) values ('dca-1', %s, 'dca', 'binance', %s, %s, %s, %s)",
                         [ids[key], key.split("/")[1] + "-USDT", CLOSED_AT, confidence, arm])

        first = conn.execute("insert into shadow_variations (name, strategy, params, params_hash, base_params_hash)"
                             " values ('tp-wide', 'dca', '{}', 'h1', 'h0') returning id").fetchone()[0]
        second = conn.execute("insert into shadow_variations (name, strategy, params, params_hash, base_params_hash)"
                              " values ('sl-tight', 'dca', '{}', 'h2', 'h0') returning id").fetchone()[0]
        windows = [(first, D1, D2, 4, 1, "-0.5", "-2.0", "3.0"),
                   (first, D2, date(2026, 1, 7), 10, 7, "0.8", "8.0", "1.5"),
                   (second, D2, date(2026, 1, 7), 0, 0, None, None, None)]
        for w in windows:
            conn.execute("insert into shadow_performance (variation_id, window_start, window_end, trades, wins,"
                         " avg_pnl_pct, total_pnl_pct, max_drawdown_pct) values (%s, %s, %s, %s, %s, %s, %s, %s)", w)
    yield module_db, ids


def rows(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_every_dashboard_view_is_checked(world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    views = {r[0] for r in rows(url, "select relname from pg_class where relkind in ('v', 'm')"
                                     " and relnamespace = 'public'::regnamespace and relname like 'dashboard%'")}
    assert views == CHECKED


def test_the_funnel_counts_each_stage_per_strategy_and_day(world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    funnel = rows(url, "select strategy, day, emitted, claimed, ordered, filled, closed, rejected, expired, open"
                       " from dashboard_signal_funnel order by strategy, day")
    assert funnel == [("dca", D1, 4, 4, 3, 3, 3, 1, 0, 0),
                      ("dca", D2, 4, 3, 1, 1, 0, 2, 0, 2),
                      ("swing", D1, 2, 1, 1, 1, 1, 0, 1, 0)]


def test_the_funnel_only_narrows_on_every_combination_of_recorded_stages(migrated_db: str) -> None:
    """Rows written straight into the tables, so that even impossible histories (an order from a signal no
    executor claimed, a trade row with no entry fill logged) are there: every combination of claimed, ordered,
    filled (an entry fill implies its entry order) and a trade row, each with its own count of signals. Each
    stage must count the signals that passed it and every stage before; a skipped stage is counted apart."""
    combos = [(c, o, f, t) for c, (o, f), t in product((False, True), ((False, False), (True, False), (True, True)),
                                                         (False, True))]
    with psycopg.connect(migrated_db) as conn:
        h = History(conn)
        for n, (c, o, f, t) in enumerate(combos, start=1):
            for _ in range(n):
                sid = h.signal(strategy="grid", symbol=f"C{n}-BTC", claimed=c)
                if o:
                    h.order(sid, "entry", fill=f)
                if t:
                    conn.execute("insert into trades (signal_id, exchange, symbol, side, amount, entry_price,"
                                 " exit_price, fees_quote, pnl_quote, pnl_pct, exit_reason, opened_at, closed_at)"
                                 " values (%s, 'bittrex', 'ETH-BTC', 'buy', 1, 1, 1, 0, 0, 0, 'time_limit', now(),"
                                 " now())", [sid])
        for status, claimed in (("closed", True), ("rejected", False), ("expired", False), ("new", False)):
            exit_id = h.signal(strategy="grid", symbol="X-BTC", status=status, claimed=claimed,
                               reason="no position to exit" if status == "rejected" else None)
            conn.execute("update signals set kind = 'exit' where id = %s", [exit_id])
        funnel = conn.execute("select sum(emitted), sum(claimed), sum(ordered), sum(filled), sum(closed),"
                              " sum(skipped_claimed), sum(skipped_ordered), sum(skipped_filled)"
                              " from dashboard_signal_funnel").fetchone()
        exits = conn.execute("select strategy, emitted, claimed, executed, rejected, expired, open, waiting"
                             " from dashboard_exit_signals").fetchall()
        furthest = dict(conn.execute("select stage, count(*) from dashboard_signal_stages where kind = 'entry'"
                                     " group by 1").fetchall())
        exit_stages = conn.execute("select distinct stage, claimed, ordered, filled, closed"
                                   " from dashboard_signal_stages where kind = 'exit'").fetchall()

    def passed(stages: int) -> int:
        return sum(n for n, flags in enumerate(combos, start=1) if all(flags[:stages]))

    def skipped(stage: int) -> int:
        return sum(n for n, flags in enumerate(combos, start=1) if not flags[stage] and any(flags[stage + 1:]))

    assert funnel == (passed(0), passed(1), passed(2), passed(3), passed(4), skipped(0), skipped(1), skipped(2))
    assert list(funnel[:5]) == sorted(funnel[:5], reverse=True) and funnel[4] < funnel[0]
    assert funnel[0] == sum(range(1, len(combos) + 1))  # the exit signals are in none of the stages
    assert exits == [("grid", 4, 1, 1, 1, 1, 1, 1)]
    # per signal, the furthest stage it passed: what a reader drills down to
    assert furthest == {stage: passed(i) - passed(i + 1) for i, stage in enumerate(("emitted", "claimed", "ordered",
                                                                                    "filled"))} | {"closed": passed(4)}
    assert exit_stages == [("emitted", False, False, False, False)]


def test_rejections_are_counted_by_reason_and_day(world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    assert rows(url, "select strategy, day, reason, signals from dashboard_signal_rejections"
                     " order by day, reason") == [("dca", D1, "spread too wide", 1),
                                                  ("dca", D2, "price moved", 1),
                                                  ("dca", D2, "spread too wide", 1)]


def test_performance_per_strategy_gives_pnl_win_rate_and_fees(world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    performance = rows(url, "select strategy, trades, wins, win_rate_pct, pnl_quote, avg_pnl_pct, fees_quote,"
                            " first_close, last_close from dashboard_strategy_performance order by strategy")
    assert performance == [
        ("dca", 3, 2, Decimal("66.67"), Decimal("1.05"), Decimal("0.6667"), Decimal("0.22"), CLOSED_AT, CLOSED_AT),
        ("swing", 1, 1, Decimal("100.00"), Decimal("2.00"), Decimal("2.0000"), Decimal("0.20"), CLOSED_AT, CLOSED_AT),
    ]


def test_ml_arms_compare_boosted_control_and_ml_off_with_a_wilson_interval(
        world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    # one trade each: a win's 95 % Wilson interval is [20.65, 100], a loss's [0, 79.35]
    assert rows(url, "select strategy, arm, trades, wins, win_rate_pct, win_rate_ci_low_pct, win_rate_ci_high_pct,"
                     " pnl_quote, avg_pnl_pct from dashboard_ml_vs_rules order by strategy, arm") == [
        ("dca", "boosted", 1, 1, Decimal("100.00"), Decimal("20.65"), Decimal("100.00"), Decimal("1.80"),
         Decimal("3.5000")),
        ("dca", "control", 1, 1, Decimal("100.00"), Decimal("20.65"), Decimal("100.00"), Decimal("0.50"),
         Decimal("1.0000")),
        ("dca", "ml_off", 1, 0, Decimal("0.00"), Decimal("0.00"), Decimal("79.35"), Decimal("-1.25"),
         Decimal("-2.5000")),
        ("swing", "ml_off", 1, 1, Decimal("100.00"), Decimal("20.65"), Decimal("100.00"), Decimal("2.00"),
         Decimal("2.0000")),
    ]


def test_open_positions_show_what_is_held_net_of_exits_at_the_average_entry(
        world: tuple[str, dict[str, UUID]]) -> None:
    url, ids = world
    positions = rows(url, "select signal_id, strategy, symbol, side, executor, amount, avg_entry_price,"
                          " take_profit_pct, stop_loss_pct, time_limit_s, opened_at is not null"
                          " from dashboard_open_positions")
    assert positions == [(ids["dca/LTC"], "dca", "LTC-USDT", "buy", "bot-a", Decimal("1.1"), Decimal("51.00000000"),
                          Decimal("2"), Decimal("1"), 3600, True)]


def test_the_shadow_leaderboard_shows_each_variations_latest_window(world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    assert rows(url, "select name, window_start::date, trades, wins, win_rate_pct, avg_pnl_pct, total_pnl_pct,"
                     " max_drawdown_pct from dashboard_shadow_leaderboard order by name") == [
        ("sl-tight", D2, 0, 0, None, None, None, None),
        ("tp-wide", D2, 10, 7, Decimal("70.00"), Decimal("0.8"), Decimal("8.0"), Decimal("1.5")),
    ]


def test_active_params_show_each_strategys_latest_activation_even_a_rollback_to_an_older_version(
        world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    with psycopg.connect(url) as conn:  # rolled back on leaving: the other tests see no activations
        v1, v2 = (conn.execute("select register_strategy_params('dca', %s, %s)", [f'{{"v": {n}}}', f"dca-{n}"])
                  .fetchone()[0] for n in (1, 2))
        swing = conn.execute("select register_strategy_params('swing', '{}', 'swing-1')").fetchone()[0]
        for strategy, version, reason in (("dca", v1, "start"), ("swing", swing, "start"), ("dca", v2, "applied"),
                                          ("dca", v1, "rollback")):
            conn.execute("insert into strategy_params_activations (strategy, version, reason) values (%s, %s, %s)",
                         [strategy, version, reason])
        shown = conn.execute("select strategy, version, params_hash, reason from dashboard_active_strategy_params"
                             " order by strategy").fetchall()
        conn.rollback()
    assert shown == [("dca", v1, "dca-1", "rollback"), ("swing", swing, "swing-1", "start")]


def test_storage_lists_every_table_once_with_its_partitions_bytes(world: tuple[str, dict[str, UUID]]) -> None:
    url, _ = world
    storage = {r[0]: r[1:] for r in rows(url, "select table_name, rows_estimate, total_bytes, total_size"
                                              " from dashboard_storage")}
    tables = {r[0] for r in rows(url, "select relname from pg_class where relnamespace = 'public'::regnamespace"
                                      " and relkind in ('r', 'p') and not relispartition")}
    candles_bytes = rows(url, "select sum(pg_total_relation_size(relid))::bigint from pg_partition_tree('candles')")
    fills_bytes = rows(url, "select pg_total_relation_size('fills')")
    with psycopg.connect(url) as conn:
        pretty = conn.execute("select pg_size_pretty(%s::bigint)", [storage["fills"][1]]).fetchone()[0]

    assert set(storage) == tables
    assert storage["candles"][1] == candles_bytes[0][0] > 0
    assert storage["fills"][1] == fills_bytes[0][0] > 0
    assert storage["fills"][2] == pretty
    assert all(r[0] >= 0 for r in storage.values())
