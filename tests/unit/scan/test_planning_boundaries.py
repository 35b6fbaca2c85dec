"""Sizing's and planning's boundaries: an entry that exactly fills the exposure cap, the reason texts a user
reads, every decision kept in the plan, exits passed through or dropped, confidence clamped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.scan.regime import Regime, RegimeReading
from controller.scan.signals import Decision, OpenBook, QuoteSizing, SizingParams, plan, size_for

CLOSE = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NORMAL = RegimeReading(Regime.NORMAL, 1.0, "BTC steady")
SIZING = SizingParams(quotes={"USDT": QuoteSizing(amount=50, balance=1000)}, max_balance_share=0.5, max_open_total=5,
                      max_open_per_strategy=3, max_open_per_symbol=2, expiry_candles=2)
EXITS = {"take_profit_pct": 3.0, "stop_loss_pct": 5.0, "time_limit_s": 14_400, "trailing_activation_pct": 1.1,
         "trailing_delta_pct": 0.8}


def decision(symbol: str = "ETH-USDT", *, entry: bool = True, confidence: float = 0.6,
             exits: dict[str, float | int | None] | None = None, reason: str = "drop 4.1%") -> Decision:
    return Decision(strategy="dca", exchange="binance", symbol=symbol, timeframe_s=900, candle_close=CLOSE,
                    price=2500.0, entry=entry, confidence=confidence, reason=reason, exits=exits or EXITS)


def run(decisions: list[Decision], sizing: SizingParams = SIZING, book: OpenBook | None = None,
        blocked: dict[str, str] | None = None, sim_now: datetime = CLOSE):
    return plan(decisions, NORMAL, book or OpenBook(), sizing, blocked or {}, sim_now, CLOSE)


def test_an_entry_that_exactly_fills_the_exposure_cap_is_allowed() -> None:
    book = OpenBook()
    book.add("swing", "BTC-USDT", 450.0)  # 500 allowed: room for exactly one more 50
    amount, why = size_for(decision(), NORMAL, book, SIZING)
    assert amount == 50 and why == "drop 4.1%; size 50 USDT"


def test_the_exposure_refusal_names_what_is_open_and_what_is_allowed() -> None:
    book = OpenBook()
    book.add("swing", "BTC-USDT", 460.0)
    assert size_for(decision(), NORMAL, book, SIZING) == (0.0, "exposure cap: 460 USDT open of 500 USDT allowed")


def test_full_size_carries_no_regime_note_and_a_reduced_size_names_its_regime() -> None:
    caution = RegimeReading(Regime.CAUTION, 0.5, "BTC falling")
    assert size_for(decision(), NORMAL, OpenBook(), SIZING)[1] == "drop 4.1%; size 50 USDT"
    assert size_for(decision(), caution, OpenBook(), SIZING)[1] == "drop 4.1%; size 25 USDT (x0.5 for CAUTION)"


def test_every_decision_stays_in_the_plan_with_its_own_decision_whatever_happens_to_the_ones_before() -> None:
    decisions = [decision("A-USDT", entry=False, confidence=0.9, reason="rsi 61"),
                 decision("B-USDT", confidence=0.8),
                 decision("C-USDT", confidence=0.7),
                 decision("D-USDT", confidence=0.6)]
    planned = run(decisions, blocked={"B-USDT": "cooling down"})
    assert [(p.decision.symbol, p.outcome) for p in planned] == [
        ("A-USDT", "skip"), ("B-USDT", "blocked"), ("C-USDT", "enter"), ("D-USDT", "enter")]
    assert [p.decision for p in planned] == decisions


def test_a_stale_or_refused_decision_does_not_stop_the_ones_after_it() -> None:
    tight = SizingParams(quotes={"USDT": QuoteSizing(amount=50, balance=1000)}, max_balance_share=0.5,
                         max_open_per_symbol=1)
    decisions = [decision("A-USDT", confidence=0.9), decision("A-USDT", confidence=0.8),
                 decision("B-USDT", confidence=0.7)]
    planned = run(decisions, sizing=tight)
    assert [(p.decision.symbol, p.outcome) for p in planned] == [
        ("A-USDT", "enter"), ("A-USDT", "blocked"), ("B-USDT", "enter")]
    assert planned[1].decision is decisions[1]
    stale = run([decision("A-USDT", confidence=0.9), decision("B-USDT")], sim_now=CLOSE + timedelta(hours=1))
    assert [p.outcome for p in stale] == ["blocked", "blocked"] and stale[0].decision.symbol == "A-USDT"


def test_an_entry_smaller_than_one_quote_unit_is_emitted() -> None:  # BTC-quoted pairs
    small = SizingParams(quotes={"BTC": QuoteSizing(amount=0.002, balance=0.5)}, max_balance_share=0.5)
    [item] = run([decision("ETH-BTC")], sizing=small)
    assert item.outcome == "enter" and item.signal is not None and item.signal.quote_amount == 0.002


def test_every_exit_barrier_is_passed_through_to_the_signal() -> None:
    [item] = run([decision()])
    s = item.signal
    assert s is not None
    assert (s.take_profit_pct, s.stop_loss_pct, s.time_limit_s, s.trailing_activation_pct,
            s.trailing_delta_pct) == (3.0, 5.0, 14_400, 1.1, 0.8)


@pytest.mark.parametrize("unset", [None, 0, 0.0, float("nan")])
def test_an_unset_optional_barrier_is_left_out(unset: float | None) -> None:
    exits = {**EXITS, "stop_loss_pct": unset, "time_limit_s": unset, "trailing_delta_pct": unset}
    [item] = run([decision(exits=exits)])
    s = item.signal
    assert s is not None and (s.stop_loss_pct, s.time_limit_s, s.trailing_delta_pct) == (None, None, None)


def test_a_barrier_below_one_percent_is_kept() -> None:
    [item] = run([decision(exits={**EXITS, "stop_loss_pct": 0.5, "time_limit_s": 1})])
    assert item.signal is not None and (item.signal.stop_loss_pct, item.signal.time_limit_s) == (0.5, 1)


@pytest.mark.parametrize(("confidence", "stored"), [(0.6, 0.6), (1.7, 1.0), (-0.2, 0.0), (0.0, 0.0)])
def test_confidence_is_kept_and_clamped_to_zero_one(confidence: float, stored: float) -> None:
    [item] = run([decision(confidence=confidence)])
    assert item.signal is not None and item.signal.confidence == stored
