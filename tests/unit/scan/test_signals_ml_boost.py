"""The ML booster inside planning: it orders the cycle's entries by the model's confidence and scales their size,
and the caps apply to the boosted size: a boost never takes the exposure past the cap."""

from __future__ import annotations

from controller.scan.signals import Boost, OpenBook, QuoteSizing, SizingParams, plan, size_for
from tests.unit.scan.test_signals_edges import CLOSE, NORMAL, SIZING, decision


def _entered(planned: list) -> dict[str, float]:
    return {p.decision.symbol: p.signal.quote_amount for p in planned if p.outcome == "enter"}


def test_entries_take_the_last_free_slot_in_order_of_ml_confidence_not_rule_confidence() -> None:
    one_slot = SIZING.model_copy(update={"max_open_total": 1})
    decisions = [decision("A-USDT", confidence=0.9), decision("B-USDT", confidence=0.5)]
    rules_only = plan(decisions, NORMAL, OpenBook(), one_slot, {}, CLOSE, CLOSE)
    assert _entered(rules_only) == {"A-USDT": 50}
    boosts = {("dca", "A-USDT"): Boost(0.3, 0.5), ("dca", "B-USDT"): Boost(0.8, 1.4)}
    with_ml = plan(decisions, NORMAL, OpenBook(), one_slot, {}, CLOSE, CLOSE, boosts=boosts)
    assert _entered(with_ml) == {"B-USDT": 70}
    blocked = next(p for p in with_ml if p.decision.symbol == "A-USDT")
    assert blocked.outcome == "blocked" and "max open USDT positions reached" in blocked.reason


def test_a_boost_is_cut_to_the_exposure_cap_and_never_exceeds_it() -> None:
    book = OpenBook()
    book.add("swing", "BTC-USDT", 440.0)  # 500 allowed: room for 60, a 1.5x boost asks for 75
    amount, why = size_for(decision(), NORMAL, book, SIZING, boost=1.5)
    assert amount == 60
    assert "cut to the exposure cap" in why
    # several boosted entries in one cycle: the total open never passes the cap
    sizing = SizingParams(quotes={"USDT": QuoteSizing(amount=50, balance=1000)}, max_balance_share=0.2,
                          max_open_total=10, max_open_per_strategy=10, max_open_per_symbol=2, expiry_candles=2)
    decisions = [decision(f"S{k}-USDT", confidence=0.6) for k in range(6)]
    boosts = {("dca", f"S{k}-USDT"): Boost(0.9, 1.5) for k in range(6)}
    entered = _entered(plan(decisions, NORMAL, OpenBook(), sizing, {}, CLOSE, CLOSE, boosts=boosts))
    assert sum(entered.values()) <= 200  # 20 % of 1000
    assert sorted(entered.values()) == [50, 75, 75]  # two full boosts, the third cut to the 50 left


def test_a_boost_does_not_rescue_an_entry_whose_unboosted_size_does_not_fit_and_a_shrunk_one_fits() -> None:
    book = OpenBook()
    book.add("swing", "BTC-USDT", 460.0)  # room for 40 of a 50 entry
    assert size_for(decision(), NORMAL, book, SIZING, boost=1.5)[0] == 0.0
    amount, why = size_for(decision(), NORMAL, book, SIZING, boost=0.6)
    assert amount == 30 and why.endswith("(ml x0.6)")


def test_without_boosts_planning_is_the_rules_alone() -> None:
    decisions = [decision("A-USDT", confidence=0.9), decision("B-USDT", confidence=0.5)]
    assert plan(decisions, NORMAL, OpenBook(), SIZING, {}, CLOSE, CLOSE, boosts={}) == plan(
        decisions, NORMAL, OpenBook(), SIZING, {}, CLOSE, CLOSE)
