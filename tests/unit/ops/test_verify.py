"""verify: the window parser and the pure analysis (funnel, P&L, stuck signals)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from controller.ops.verify import Thresholds, analyze, find_stuck, parse_window

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", timedelta(minutes=30)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
    ("90s", timedelta(seconds=90)),
    ("2w", timedelta(weeks=2)),
    (" 24H ", timedelta(hours=24)),
])
def test_parse_window_reads_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "-1h", "0m", "24 hours", "3y", "99999d"])
def test_parse_window_refuses_anything_else_and_says_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="window must"):
        parse_window(text)


def signal(status: str, created: timedelta, **extra: Any) -> dict[str, Any]:
    """A signal row created `created` before NOW."""
    row = {"id": f"{status}-{created}", "strategy": "DCA", "symbol": "BTC-USDT", "status": status,
           "created_at": NOW - created, "expires_at": NOW - created + timedelta(minutes=2), "claimed_by": None,
           "claimed_at": None, "lease_until": None, "executing_at": None, "finished_at": None,
           "reject_reason": None, "time_limit_s": None, "kind": "entry", "stage": "emitted"}
    row.update(extra)
    return row


def order(signal_id: str, purpose: str, status: str, created: timedelta, filled: str = "0") -> dict[str, Any]:
    return {"client_order_id": f"{signal_id}-{purpose}", "signal_id": signal_id, "purpose": purpose,
            "status": status, "filled_amount": Decimal(filled), "created_at": NOW - created}


def test_a_new_signal_past_its_expiry_is_stuck_and_one_before_it_is_not() -> None:
    late = signal("new", timedelta(minutes=10))
    fresh = signal("new", timedelta(minutes=1))

    stuck = find_stuck([late, fresh], [], NOW, Thresholds())

    assert [(s.signal_id, s.problem) for s in stuck] == [(late["id"], "new past its expiry")]
    assert stuck[0].overdue == timedelta(minutes=8)


def test_a_claimed_signal_is_stuck_only_once_its_lease_is_past_due() -> None:
    lapsed = signal("claimed", timedelta(minutes=30), claimed_by="bot-1", claimed_at=NOW - timedelta(minutes=29),
                    lease_until=NOW - timedelta(seconds=1), expires_at=NOW + timedelta(hours=1))
    leased = signal("claimed", timedelta(minutes=31), claimed_by="bot-2", claimed_at=NOW - timedelta(minutes=29),
                    lease_until=NOW + timedelta(seconds=30), expires_at=NOW + timedelta(hours=1))

    stuck = find_stuck([lapsed, leased], [], NOW, Thresholds())

    assert [(s.signal_id, s.problem, s.detail) for s in stuck] == [
        (lapsed["id"], "claimed, lease past due", "claimed by bot-1")]


def test_executing_signals_are_stuck_without_an_order_with_a_stale_entry_or_past_their_time_limit() -> None:
    thresholds = Thresholds(no_order_after=timedelta(minutes=5), stale_entry_order=timedelta(minutes=10),
                            time_limit_grace=timedelta(minutes=10))
    no_order = signal("executing", timedelta(minutes=20), executing_at=NOW - timedelta(minutes=6))
    just_started = signal("executing", timedelta(minutes=21), executing_at=NOW - timedelta(minutes=4))
    stale_entry = signal("executing", timedelta(minutes=30), executing_at=NOW - timedelta(minutes=29))
    filled_entry = signal("executing", timedelta(minutes=31), executing_at=NOW - timedelta(minutes=29))
    timed_out = signal("executing", timedelta(hours=2), executing_at=NOW - timedelta(minutes=75), time_limit_s=3600)
    within_grace = signal("executing", timedelta(hours=3), executing_at=NOW - timedelta(minutes=65),
                          time_limit_s=3600)
    orders = [order(stale_entry["id"], "entry", "partially_filled", timedelta(minutes=11), "0.5"),
              order(filled_entry["id"], "entry", "filled", timedelta(minutes=28), "1"),
              order(timed_out["id"], "entry", "filled", timedelta(minutes=74), "1"),
              order(within_grace["id"], "entry", "filled", timedelta(minutes=64), "1")]

    stuck = find_stuck([no_order, just_started, stale_entry, filled_entry, timed_out, within_grace], orders, NOW,
                       thresholds)

    assert sorted((s.signal_id, s.problem) for s in stuck) == sorted([
        (no_order["id"], "executing without an order"),
        (stale_entry["id"], "entry order open too long"),
        (timed_out["id"], "past its time limit"),
    ])


def test_the_resting_levels_of_a_filled_dca_grid_are_not_a_stale_entry() -> None:
    """A grid's limit buys rest below the filled entry for as long as the position is open (issue 11); an entry
    of a grid signal that never filled is still stale."""
    grid = signal("executing", timedelta(hours=2), executing_at=NOW - timedelta(hours=2), grid_levels=3)
    unfilled = signal("executing", timedelta(hours=3), executing_at=NOW - timedelta(hours=3), grid_levels=3)
    orders = [order(grid["id"], "entry", "filled", timedelta(hours=2), "1"),
              {**order(grid["id"], "entry", "created", timedelta(hours=2)), "client_order_id": "level-1"},
              order(unfilled["id"], "entry", "created", timedelta(hours=3))]

    stuck = find_stuck([grid, unfilled], orders, NOW, Thresholds())

    assert [(s.signal_id, s.problem) for s in stuck] == [(unfilled["id"], "entry order open too long")]


def test_analyze_counts_the_funnel_of_the_window_and_the_trades_closed_in_it() -> None:
    start = NOW - timedelta(hours=24)
    closed = signal("closed", timedelta(hours=5), claimed_at=NOW - timedelta(hours=5), stage="closed")
    rejected = [signal("rejected", timedelta(hours=h), claimed_at=NOW - timedelta(hours=h), reject_reason=reason,
                       stage="claimed")
                for h, reason in ((6, "spread too wide"), (7, "spread too wide"), (8, "no balance"))]
    expired = signal("expired", timedelta(hours=9))
    executing = signal("executing", timedelta(minutes=3), claimed_at=NOW - timedelta(minutes=3),
                       executing_at=NOW - timedelta(minutes=2), stage="ordered")
    # closed without a fill: by status it is closed, but its stage stops at ordered
    unfilled = signal("closed", timedelta(hours=2), claimed_at=NOW - timedelta(hours=2), stage="ordered")
    exits = [signal("closed", timedelta(hours=4), claimed_at=NOW - timedelta(hours=4), kind="exit"),
             signal("rejected", timedelta(hours=1), kind="exit", reject_reason="entry x closed: no position to exit")]
    old = signal("closed", timedelta(days=3), claimed_at=NOW - timedelta(days=3), stage="closed")
    orders = [order(closed["id"], "entry", "filled", timedelta(hours=5), "1"),
              order(closed["id"], "exit", "filled", timedelta(hours=4), "1"),
              order(executing["id"], "entry", "created", timedelta(minutes=1)),
              order(old["id"], "entry", "filled", timedelta(days=3), "1")]
    trades = [{"signal_id": closed["id"], "symbol": "BTC-USDT", "pnl_quote": Decimal("1.50"),
               "closed_at": NOW - timedelta(hours=4)},
              {"signal_id": "earlier", "symbol": "ETH-USDT", "pnl_quote": Decimal("-0.50"),
               "closed_at": NOW - timedelta(hours=23)},
              {"signal_id": "in-btc", "symbol": "ETH-BTC", "pnl_quote": Decimal("-0.0001"),
               "closed_at": NOW - timedelta(hours=22)},
              {"signal_id": old["id"], "symbol": "BTC-USDT", "pnl_quote": Decimal("9"),
               "closed_at": NOW - timedelta(days=2)}]

    report = analyze([closed, *rejected, expired, executing, unfilled, *exits, old], orders, trades, start, NOW)

    f = report.funnel
    assert (f.emitted, f.claimed, f.ordered, f.filled, f.closed, f.rejected, f.expired, f.open) == (
        7, 6, 3, 1, 1, 3, 1, 1)
    assert (f.exits.emitted, f.exits.claimed, f.exits.executed, f.exits.rejected) == (2, 1, 1, 1)
    assert f.rejected_by_reason == {"spread too wide": 2, "no balance": 1, "entry x closed: no position to exit": 1}
    assert (report.pnl.trades, report.pnl.wins, report.pnl.by_quote, report.pnl.win_rate) == (
        3, 1, {"USDT": Decimal("1.00"), "BTC": Decimal("-0.0001")}, 1 / 3)
    assert report.healthy and report.exit_code == 0


def test_a_stuck_signal_older_than_the_window_still_fails_the_check() -> None:
    forgotten = signal("claimed", timedelta(days=5), claimed_by="bot-1", claimed_at=NOW - timedelta(days=5),
                       lease_until=NOW - timedelta(days=5) + timedelta(minutes=1))

    report = analyze([forgotten], [], [], NOW - timedelta(hours=1), NOW)

    assert report.funnel.emitted == 0
    assert [s.signal_id for s in report.stuck] == [forgotten["id"]]
    assert report.exit_code == 1
