"""The ML booster inside planning: it orders the cycle's entries by the model's confidence and scales their size,
and the caps apply to the boosted size: a boost never takes the exposure past the cap."""

from __future__ import annotations

from controller.scan.pipeline import MlVerdict, apply_verdicts
from controller.scan.signals import Boost, OpenBook, QuoteSizing, SizingParams, plan, size_for
from tests.support.planning import CLOSE, NORMAL, SIZING, decision


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


def test_verdicts_apply_in_one_step_a_veto_skips_the_entry_and_only_the_boosted_arm_may_steer() -> None:
    decisions = [decision("A-USDT", confidence=0.9), decision("B-USDT", confidence=0.5),
                 decision("C-USDT", confidence=0.7)]
    verdicts = {("dca", "A-USDT"): MlVerdict(0.2, "m7", "boosted", veto=True),
                ("dca", "B-USDT"): MlVerdict(0.95, "m7", "control", size_multiplier=1.5),
                ("dca", "C-USDT"): MlVerdict(0.8, "m7", "boosted", size_multiplier=1.2)}
    applied, boosts = apply_verdicts(decisions, verdicts)
    vetoed = applied[0]
    assert not vetoed.entry and vetoed.reason == "ml veto: confidence 0.20 below the threshold (m7)"
    assert applied[1:] == decisions[1:]
    assert boosts[("dca", "B-USDT")] == Boost(0.95, 1.0, "m7", "control")  # the control arm never resizes
    assert boosts[("dca", "C-USDT")] == Boost(0.8, 1.2, "m7", "boosted")


def test_every_arm_stamps_its_score_on_the_signal_but_only_the_boosted_arm_changes_order_or_size() -> None:
    one_slot = SIZING.model_copy(update={"max_open_total": 1})
    decisions = [decision("A-USDT", confidence=0.9), decision("B-USDT", confidence=0.5)]
    control = {("dca", "A-USDT"): Boost(0.1, 1.0, "m7", "control"),
               ("dca", "B-USDT"): Boost(0.99, 1.0, "m7", "control")}
    planned = plan(decisions, NORMAL, OpenBook(), one_slot, {}, CLOSE, CLOSE, boosts=control)
    assert _entered(planned) == {"A-USDT": 50}  # the rule's order: the control arm's 0.99 does not jump ahead
    entry = next(p for p in planned if p.outcome == "enter")
    assert (entry.signal.ml_confidence, entry.signal.model_version) == (0.1, "m7")
    assert entry.reason.endswith("; ml control 0.10, size 50")
    rules_only = next(p for p in plan(decisions, NORMAL, OpenBook(), one_slot, {}, CLOSE, CLOSE) if p.signal)
    assert rules_only.signal.ml_confidence is None and rules_only.signal.model_version is None
