"""The executor's pure parts, without a clock or a database: the outbox file, the slot counter shared by its two
threads, the exit and fee arithmetic, the price-stability measure, and the config's own checks.

These run per mutant in `make mutation` (hummingbot_scripts/signal_executor.py); the Clock-driven behaviour
of the same parts is in tests/integration/executor.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hummingbot.core.data_type.common import TradeType
from hummingbot.core.data_type.trade_fee import AddedToCostTradeFee, DeductedFromReturnsTradeFee, TokenAmount

from bridge.schemas import Signal
from executor.config import SignalExecutorConfig
from executor.models import Position, TrackedOrder, dec, iso, timestamp
from executor.outbox import Outbox
from executor.pricing import barrier_hit, fee_parts, instability_pct
from executor.worker import Slots

D = Decimal


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# --- Slots ------------------------------------------------------------------------------------------------

def test_slots_hand_out_at_most_the_limit_and_never_go_below_zero() -> None:
    slots = Slots(3)
    assert slots.held == 0
    assert slots.reserve(2) == 2 and slots.held == 2
    assert slots.reserve(5) == 1 and slots.held == 3  # only what is left
    assert slots.reserve(1) == 0 and slots.held == 3  # full
    slots.release()
    assert slots.held == 2
    slots.release(2)
    assert slots.held == 0
    slots.release(4)  # a double release (a rejected and then closed signal) does not make room that is not there
    assert slots.held == 0 and slots.reserve(9) == 3


def test_slots_hold_beyond_the_limit_for_restored_positions() -> None:
    slots = Slots(2)
    slots.hold()
    assert slots.held == 1
    slots.hold(3)  # a restart brought back four open positions with a limit of two
    assert slots.held == 4
    assert slots.reserve(1) == 0 and slots.held == 4  # nothing free, and never a negative grant
    slots.release(3)
    assert slots.held == 1 and slots.reserve(0) == 0 and slots.held == 1
    assert slots.reserve(1) == 1 and slots.held == 2


# --- Outbox -----------------------------------------------------------------------------------------------

def test_outbox_writes_each_record_before_it_is_sent_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "bot" / "data" / "outbox.jsonl"  # its folder does not exist yet
    outbox = Outbox(path)
    assert outbox.peek() is None and len(outbox) == 0 and path.parent.is_dir()
    signal_id = UUID(int=7)
    outbox.append("ack", {"signal_id": signal_id, "amount": D("1.5")})
    outbox.append("report", {"type": "order_created"})
    # written first (values that JSON has no type for are written as text)
    assert lines(path) == [{"seq": 1, "kind": "ack", "signal_id": str(signal_id), "amount": "1.5"},
                           {"seq": 2, "kind": "report", "type": "order_created"}]
    assert len(outbox) == 2
    assert outbox.peek() == {"seq": 1, "kind": "ack", "signal_id": signal_id, "amount": D("1.5")}


def test_outbox_marks_delivery_in_order_and_reopens_with_only_what_was_not_sent(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    outbox = Outbox(path)
    for n in range(3):
        outbox.append("ack", {"n": n})
    assert len(outbox) == 3 and outbox.peek()["seq"] == 1
    outbox.mark_sent(1)
    assert len(outbox) == 2 and outbox.peek()["seq"] == 2
    assert lines(path)[-1] == {"sent": 1}  # a mark line while records wait, not a rewrite

    reopened = Outbox(path)  # a restart
    assert len(reopened) == 2 and reopened.peek() == {"seq": 2, "kind": "ack", "n": 1}
    assert lines(path) == [{"seq": 2, "kind": "ack", "n": 1}, {"seq": 3, "kind": "ack", "n": 2}]  # compacted
    reopened.append("ack", {"n": 3})
    assert reopened.peek()["seq"] == 2 and lines(path)[-1]["seq"] == 4  # numbering goes on past the last record
    reopened.mark_sent(2)
    reopened.mark_sent(3)
    reopened.mark_sent(4)
    assert len(reopened) == 0 and reopened.peek() is None and path.read_text() == ""
    assert not path.with_name(path.name + ".tmp").exists()  # the rewrite replaced the file


def test_outbox_reopening_skips_blank_lines_and_a_torn_last_line_but_refuses_damage_inside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.jsonl"
    first = {"seq": 5, "kind": "ack", "n": 0}
    second = {"seq": 9, "kind": "report", "n": 1}
    path.write_text("\n" + json.dumps(first) + "\n   \n" + json.dumps(second) + "\n" + '{"seq": 10, "ki')
    outbox = Outbox(path)
    assert len(outbox) == 2 and outbox.peek() == first
    assert lines(path) == [first, second]  # the torn line is gone and the file ends with a newline
    assert f"outbox {path}: skipped a torn last line (a crash while writing it)" in caplog.text
    outbox.append("ack", {"n": 2})
    assert lines(path)[-1] == {"seq": 10, "kind": "ack", "n": 2}

    path.write_text(json.dumps(first) + "\n{oops\n" + json.dumps(second) + "\n")
    with pytest.raises(ValueError) as raised:
        Outbox(path)
    assert str(raised.value) == (f"outbox {path}, line 2: not JSON; move the file aside to start (its undelivered "
                                 "events would then be lost)")
    assert path.read_text().count("\n") == 3  # the damaged file is left as it was, for a person to look at


def test_a_mark_for_an_empty_outbox_changes_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.jsonl")
    outbox.mark_sent(1)  # a mark repeated after a restart that found everything delivered
    assert len(outbox) == 0 and outbox.peek() is None and (tmp_path / "outbox.jsonl").read_text() == ""


def test_outbox_reopened_after_everything_was_sent_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    path.write_text(json.dumps({"seq": 1, "kind": "ack"}) + "\n" + json.dumps({"seq": 2, "kind": "ack"}) + "\n"
                    + json.dumps({"sent": 1}) + "\n" + json.dumps({"sent": 2}) + "\n")
    outbox = Outbox(path)
    assert len(outbox) == 0 and outbox.peek() is None and path.read_text() == ""
    outbox.append("ack", {})
    assert outbox.peek()["seq"] == 3  # numbers are not reused while the old marks may still be around


# --- exits, fees, stability -------------------------------------------------------------------------------

def signal(**overrides: Any) -> Signal:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    fields: dict[str, Any] = {
        "id": uuid4(), "created_at": now, "expires_at": now + timedelta(minutes=5), "strategy": "dca",
        "exchange": "binance", "symbol": "BTC-USDT", "side": "buy", "price": D(100), "quote_amount": D(50),
        "take_profit_pct": D(3), "stop_loss_pct": D(2), "time_limit_s": 60, "confidence": 0.7,
        "status": "executing"}
    return Signal(**{**fields, **overrides})


def position(opened_at: float | None = 1000.0, **overrides: Any) -> Position:
    return Position(signal(**overrides), opened_at=opened_at, entry_amount=D(2), entry_quote=D(200), peak=D(100))


@pytest.mark.parametrize(("bid", "now", "expected"), [
    (D(103), 1001.0, "take_profit"),   # 100 + 3 %
    (D("102.99"), 1001.0, None),
    (D(98), 1001.0, "stop_loss"),       # 100 - 2 %
    (D("98.01"), 1001.0, None),
    (D(100), 1060.0, "time_limit"),     # held 60 s of 60
    (D(100), 1059.9, None),
])
def test_barrier_hit_applies_the_exit_rule_to_the_bid_and_the_time_held(bid: Decimal, now: float,
                                                                        expected: str | None) -> None:
    assert barrier_hit(position(), bid, now) == expected


def test_barrier_hit_has_no_time_limit_before_the_entry_filled() -> None:
    assert barrier_hit(position(opened_at=None), D(100), 10**9) is None
    assert barrier_hit(position(opened_at=0.0), D(100), 60.0) == "time_limit"  # a clock that starts at 0


def test_barrier_hit_trails_from_the_positions_peak() -> None:
    held = position(trailing_activation_pct=D(1), trailing_delta_pct=D("0.5"), take_profit_pct=D(10))
    held.peak = D(102)
    assert barrier_hit(held, D("101.49"), 1001.0) == "trailing_stop"  # 102 - 0.5 % = 101.49
    assert barrier_hit(held, D("101.5"), 1001.0) is None


def test_position_prices_and_amounts() -> None:
    empty = Position(signal())
    assert empty.entry_price == 0 and empty.open_amount == 0
    held = Position(signal(), entry_amount=D(2), entry_quote=D(201), entry_fee_base=D("0.002"), exit_amount=D("0.5"))
    assert held.entry_price == D("100.5")
    assert held.open_amount == D("1.498")
    entry = TrackedOrder("e", "entry", TradeType.BUY, D(2), None, 0.0, done=True)
    exit_open = TrackedOrder("x1", "exit", TradeType.SELL, D(1), D(101), 1.0)
    exit_done = TrackedOrder("x2", "exit", TradeType.SELL, D(1), D(101), 2.0, done=True)
    held.orders = {o.order_id: o for o in (entry, exit_open, exit_done)}
    assert held.open_orders() == [exit_open]
    assert held.open_orders("exit") == [exit_open] and held.open_orders("entry") == []


BTC, USDT = "BTC", "USDT"


@pytest.mark.parametrize(("fee", "side", "expected"), [
    # Binance spot: a buy's percent fee is kept in the coin bought
    (DeductedFromReturnsTradeFee(percent=D("0.001")), TradeType.BUY, (BTC, D("0.002"), D("0.002"))),
    (DeductedFromReturnsTradeFee(percent=D("0.001"), percent_token=BTC), TradeType.BUY, (BTC, D("0.002"), D("0.002"))),
    # the percent named in the quote asset is paid in quote, even on a deducted buy
    (DeductedFromReturnsTradeFee(percent=D("0.001"), percent_token=USDT), TradeType.BUY, (USDT, D("0.2"), D(0))),
    # a sell's percent fee comes out of the quote received
    (DeductedFromReturnsTradeFee(percent=D("0.001")), TradeType.SELL, (USDT, D("0.2"), D(0))),
    # a fee added to the cost is paid in quote
    (AddedToCostTradeFee(percent=D("0.001")), TradeType.BUY, (USDT, D("0.2"), D(0))),
    # no fee at all: nothing taken, named in quote
    (AddedToCostTradeFee(), TradeType.BUY, (USDT, D(0), D(0))),
    (DeductedFromReturnsTradeFee(), TradeType.BUY, (USDT, D(0), D(0))),
    # a flat fee alone is in its own token (BNB)
    (AddedToCostTradeFee(flat_fees=[TokenAmount("BNB", D("0.01"))]), TradeType.BUY, ("BNB", D("0.01"), D(0))),
    # a flat fee in the asset of the percent fee adds to it
    (AddedToCostTradeFee(percent=D("0.001"), flat_fees=[TokenAmount(USDT, D(1))]), TradeType.SELL,
     (USDT, D("1.2"), D(0))),
    # a flat fee in another token is left out of the amount (the quote value still counts it)
    (AddedToCostTradeFee(percent=D("0.001"), flat_fees=[TokenAmount("BNB", D(1))]), TradeType.SELL,
     (USDT, D("0.2"), D(0))),
    # several flat tokens and no percent: reported in the first
    (AddedToCostTradeFee(flat_fees=[TokenAmount("BNB", D(1)), TokenAmount("ETH", D(2))]), TradeType.BUY,
     ("BNB", D(1), D(0))),
    (AddedToCostTradeFee(flat_fees=[TokenAmount("BNB", D(1)), TokenAmount("BNB", D(2))]), TradeType.BUY,
     ("BNB", D(3), D(0))),
    # a flat fee in the coin bought, kept from a deducted buy, leaves the wallet's base too
    (DeductedFromReturnsTradeFee(percent=D("0.001"), flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.BUY,
     (BTC, D("0.0025"), D("0.0025"))),
    (DeductedFromReturnsTradeFee(flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.BUY,
     (BTC, D("0.0005"), D("0.0005"))),
    # ... but not when it is added to the cost, or on a sell
    (AddedToCostTradeFee(flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.BUY, (BTC, D("0.0005"), D(0))),
    (DeductedFromReturnsTradeFee(flat_fees=[TokenAmount(BTC, D("0.0005"))]), TradeType.SELL,
     (BTC, D("0.0005"), D(0))),
])
def test_fee_parts_names_the_asset_the_amount_and_what_left_the_position(
        fee: Any, side: TradeType, expected: tuple[str, Decimal, Decimal]) -> None:
    assert fee_parts(fee, side, BTC, USDT, price=D(100), amount=D(2)) == expected


def test_instability_is_the_range_over_the_low_in_percent() -> None:
    assert instability_pct([D(100), D(101), D(99)]) == D(2) / D(99) * 100
    assert instability_pct([D(50)]) == 0
    assert instability_pct([D("0.5"), D("0.51")]) == D(2)  # a price below 1 (many altcoins, BTC quotes)
    assert instability_pct([D(0), D(1)]) == 100  # no price to divide by: as unstable as it gets
    assert instability_pct([D(-1), D(1)]) == 100


# --- small conversions and the config's own checks --------------------------------------------------------

def test_conversions_of_the_queue_values() -> None:
    assert dec(D("1.10")) == D("1.10") and str(dec(D("1.10"))) == "1.10"
    assert dec(0.1) == D("0.1") and dec("2") == D(2)  # floats through their text, not their binary value
    moment = datetime(2026, 3, 4, 5, 6, 7, 250000, tzinfo=UTC)
    assert timestamp(None) is None
    assert timestamp(moment) == moment.timestamp()
    assert timestamp("2026-03-04T05:06:07.25+00:00") == moment.timestamp()
    assert iso(moment.timestamp()) == "2026-03-04T05:06:07.250000+00:00"
    assert iso(0.0) == "1970-01-01T00:00:00.000000+00:00"
    assert iso(0.1234569) == "1970-01-01T00:00:00.123456+00:00"  # cut to the microsecond, not rounded up


def test_the_config_fields_hummingbot_asks_for_when_a_config_is_created() -> None:
    asked = {name: field.json_schema_extra for name, field in SignalExecutorConfig.model_fields.items()
             if field.json_schema_extra}
    assert asked["connector"] == {"prompt": "Connector to trade on", "prompt_on_new": True}
    assert set(asked) >= {"connector", "exchange", "trading_pairs", "consumer"}
    assert all(extra["prompt_on_new"] is True and extra["prompt"] for extra in asked.values())


def test_the_config_refuses_a_partial_fill_age_past_the_stale_age_and_adds_its_pairs() -> None:
    with pytest.raises(ValueError) as raised:
        SignalExecutorConfig(partial_fill_max_age_s=600, stale_order_s=600)
    assert ("partial_fill_max_age_s (600) must be shorter than stale_order_s (600), or a partial fill is never "
            "handled") in str(raised.value)
    assert SignalExecutorConfig(partial_fill_max_age_s=599, stale_order_s=600).stale_order_s == 600
    config = SignalExecutorConfig(connector="paper", trading_pairs=["BTC-USDT", "ETH-USDT"])
    assert config.update_markets({}) == {"paper": {"BTC-USDT", "ETH-USDT"}}
    assert config.update_markets({"paper": {"SOL-USDT"}, "other": {"X-Y"}}) == {
        "paper": {"SOL-USDT", "BTC-USDT", "ETH-USDT"}, "other": {"X-Y"}}
