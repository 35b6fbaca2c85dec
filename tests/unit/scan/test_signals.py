"""From decisions to signals: sizing by regime, position and exposure caps, expiry, blocked symbols."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from controller.scan.regime import Regime, RegimeReading, StopWidening
from controller.scan.signals import OpenBook, SizingParams, plan_exits, scan_row
from tests.support.planning import CAUTION, CLOSE, GRID, OPEN_ENTRY, PANIC, SIZING, decision, run


def test_an_entry_becomes_a_buy_signal_with_its_exits_and_expiry() -> None:
    [item] = run([decision()])
    assert item.outcome == "enter"
    signal = item.signal
    assert (signal.side, signal.quote_amount, signal.take_profit_pct, signal.stop_loss_pct) == ("buy", 50, 3.0, 5.0)
    assert signal.time_limit_s == 14_400
    assert signal.trailing_activation_pct == 1.1 and signal.trailing_delta_pct is None  # NaN means not set
    assert signal.expires_at == CLOSE + timedelta(seconds=2 * 900)
    assert signal.features == {"rsi": 31.0} and signal.params_hash == "p1"


def test_expiry_keeps_its_remaining_validity_when_scan_time_is_replayed() -> None:
    wall = datetime(2030, 1, 1, tzinfo=UTC)
    [item] = run([decision()], sim_now=CLOSE + timedelta(seconds=300), wall_now=wall)
    assert item.signal.expires_at == wall + timedelta(seconds=2 * 900 - 300)


def test_a_decision_whose_signal_would_already_be_expired_is_blocked_as_stale() -> None:
    [item] = run([decision()], sim_now=CLOSE + timedelta(seconds=1800))
    assert item.outcome == "blocked" and "stale" in item.reason and item.signal is None


def test_no_entry_is_recorded_as_a_skip_with_the_strategy_reason() -> None:
    [item] = run([decision(entry=False, reason="rsi 61.2 above 56")])
    assert (item.outcome, item.reason, item.signal) == ("skip", "rsi 61.2 above 56", None)


def test_panic_blocks_every_entry_and_caution_halves_the_size() -> None:
    assert [i.outcome for i in run([decision()], regime=PANIC)] == ["blocked"]
    [halved] = run([decision()], regime=CAUTION)
    assert halved.signal.quote_amount == 25 and "x0.5 for CAUTION" in halved.reason


def test_an_unknown_regime_blocks_entries_and_says_regime_unknown() -> None:
    unknown = RegimeReading(Regime.UNKNOWN, 0.0, "regime unknown: no fresh BTC-USDT candles on bittrex")
    [item] = run([decision()], regime=unknown)
    assert item.outcome == "blocked" and item.reason.startswith("regime unknown") and item.signal is None


def test_a_btc_quoted_pair_is_sized_in_btc_not_in_dollars() -> None:
    [item] = run([decision("ETH-BTC", price=0.05)])
    assert item.outcome == "enter" and item.signal.quote_amount == 0.002 and "0.002 BTC" in item.reason
    [halved] = run([decision("ETH-BTC", price=0.05)], regime=CAUTION)
    assert halved.signal.quote_amount == 0.001


def test_a_pair_whose_quote_has_no_sizing_rule_is_skipped_with_the_reason() -> None:
    [item] = run([decision("ETH-BTC", price=0.05)], sizing=SizingParams())  # defaults: USD-like quotes only
    assert (item.outcome, item.reason, item.signal) == ("skip", "no sizing for quote BTC", None)
    [eth] = run([decision("LINK-ETH", price=0.005)])
    assert (eth.outcome, eth.reason) == ("skip", "no sizing for quote ETH")


def test_caps_and_exposure_are_kept_per_quote_currency() -> None:
    book = OpenBook()
    for i in range(5):
        book.add("swing", f"X{i}-USDT", 90)  # USDT: total cap (5) reached, 450 of 500 exposed
    [usdt] = run([decision("ETH-USDT")], book=book)
    assert usdt.outcome == "blocked" and "max open USDT positions" in usdt.reason
    [btc] = run([decision("ETH-BTC", price=0.05)], book=book)  # BTC has its own caps and balance
    assert btc.outcome == "enter" and btc.signal.quote_amount == 0.002
    full_btc = OpenBook()
    full_btc.add("dca", "LTC-BTC", 0.049)  # 0.05 BTC allowed
    [refused] = run([decision("ETH-BTC", price=0.05)], book=full_btc)
    assert refused.outcome == "blocked" and "exposure cap: 0.049 BTC open of 0.05 BTC allowed" in refused.reason


def test_a_strategy_turned_off_by_volatility_is_blocked_with_the_reason() -> None:
    volatile = RegimeReading(Regime.CAUTION, 0.5, "BTC volatile", disabled={"channel": "BTC volatility 9% >= 8%"})
    items = run([decision(strategy="channel"), decision(strategy="dca", symbol="SOL-USDT")], regime=volatile)
    outcome = {i.decision.strategy: (i.outcome, i.reason) for i in items}
    assert outcome["channel"] == ("blocked", "BTC volatility 9% >= 8%") and outcome["dca"][0] == "enter"


def test_the_stop_on_the_signal_is_widened_by_volatility_and_regime() -> None:
    volatile = RegimeReading(Regime.CAUTION, 0.5, "BTC volatile", volatility_24h_pct=10.0)
    [item] = run([decision(thresholds={"tier": "mid"})], regime=volatile, stops=StopWidening())
    assert item.signal.stop_loss_pct == pytest.approx(5.0 * 1.015 * 1.3)


def test_caps_per_symbol_per_strategy_and_total_apply_in_order_of_confidence() -> None:
    decisions = [decision("ETH-USDT", "dca", confidence=0.9), decision("ETH-USDT", "swing", confidence=0.8),
                 decision("ETH-USDT", "channel", confidence=0.7)]
    outcomes = {(i.decision.strategy, i.outcome) for i in run(decisions)}
    assert outcomes == {("dca", "enter"), ("swing", "enter"), ("channel", "blocked")}  # 2 per symbol

    per_strategy = [decision(f"S{i}-USDT", "dca") for i in range(4)]
    assert [i.outcome for i in run(per_strategy)].count("enter") == 3

    book = OpenBook()
    for i in range(5):
        book.add("swing", f"X{i}-USDT", 10)
    assert [i.outcome for i in run([decision()], book=book)] == ["blocked"]


def test_exposure_is_capped_at_a_share_of_the_balance() -> None:
    book = OpenBook()
    book.add("swing", "BTC-USDT", 460)  # 500 allowed in all
    [item] = run([decision()], book=book)
    assert item.outcome == "blocked" and "exposure cap" in item.reason


def test_a_blocked_symbol_gets_no_signal_and_its_reason_is_recorded() -> None:
    [item] = run([decision()], blocked={"ETH-USDT": "cooling down until 16:00 after a stop loss"})
    assert (item.outcome, item.reason) == ("blocked", "cooling down until 16:00 after a stop loss")


def test_the_open_book_counts_open_signals() -> None:
    book = OpenBook.from_signals([{"strategy": "dca", "symbol": "ETH-USDT", "quote_amount": 50},
                                  {"strategy": "dca", "symbol": "BTC-USDT", "quote_amount": 25}])
    usdt = book.of("USDT")
    assert (usdt.total, usdt.by_strategy["dca"], usdt.by_symbol["ETH-USDT"], usdt.exposure) == (2, 2, 1, 75)


def test_a_scan_row_carries_decision_reason_features_and_thresholds() -> None:
    [item] = run([decision()])
    row = scan_row(item, "15m", signal_id="abc")
    assert row == {"candle_ts": CLOSE, "strategy": "dca", "exchange": "binance", "symbol": "ETH-USDT",
                   "timeframe": "15m", "decision": "enter", "reason": item.reason, "features": {"rsi": 31.0},
                   "thresholds": {"drop_pct": 3.75}, "params_hash": "p1", "signal_id": "abc"}


@pytest.mark.parametrize("confidence", [-0.2, 1.4])
def test_confidence_is_clamped_into_the_contract_range(confidence: float) -> None:
    [item] = run([decision(confidence=confidence)])
    assert 0 <= item.signal.confidence <= 1


def test_a_dca_entry_carries_its_grid_and_the_whole_grid_counts_against_exposure() -> None:
    [item] = run([decision(grid=GRID)])
    signal = item.signal
    assert (signal.grid_levels, signal.grid_spacing_pct, signal.grid_level_quote) == (3, 1.4, 50)
    book = OpenBook()
    book.add("swing", "BTC-USDT", 350)  # 500 allowed: 150 left, the entry and its 3 levels need 200
    [refused] = run([decision(grid=GRID)], book=book)
    assert refused.outcome == "blocked" and "exposure cap" in refused.reason
    [without] = run([decision()], book=book)
    assert without.outcome == "enter" and without.signal.grid_levels is None


def test_an_open_position_whose_exit_rule_holds_gets_one_exit_signal_referring_to_its_entry() -> None:
    wants_out = decision(strategy="channel", entry=False, exit=True, exit_reason="rsi 74.0 at or above the exit level")
    [item] = plan_exits([wants_out], [OPEN_ENTRY], CLOSE, CLOSE, SIZING)
    signal = item.signal
    assert item.outcome == "exit" and item.reason == "exit: rsi 74.0 at or above the exit level"
    assert (signal.kind, signal.side, str(signal.entry_signal_id)) == ("exit", "sell", OPEN_ENTRY["id"])
    assert signal.expires_at == CLOSE + timedelta(seconds=2 * 900)  # stale exits expire like entries


@pytest.mark.parametrize("row", [
    {**OPEN_ENTRY, "status": "new"},           # not claimed: no position yet
    {**OPEN_ENTRY, "kind": "exit"},            # an exit is not a position
    {**OPEN_ENTRY, "symbol": "SOL-USDT"},      # another pair
    {**OPEN_ENTRY, "strategy": "dca"},         # another strategy's position
])
def test_no_exit_signal_without_an_open_position_of_that_strategy_and_pair(row: dict) -> None:
    wants_out = decision(strategy="channel", entry=False, exit=True, exit_reason="top")
    assert plan_exits([wants_out], [row], CLOSE, CLOSE, SIZING) == []


def test_an_exit_decided_on_a_candle_too_old_is_not_sent() -> None:
    wants_out = decision(strategy="channel", entry=False, exit=True, exit_reason="top")
    assert plan_exits([wants_out], [OPEN_ENTRY], CLOSE + timedelta(seconds=1800), CLOSE, SIZING) == []


def test_the_earlier_single_quote_amount_is_refused_with_how_to_write_it_per_quote() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="per quote currency"):
        SizingParams(quote_amount=50, balance=10_000)


def test_in_a_replay_a_new_signal_past_its_simulated_expiry_no_longer_counts_as_open() -> None:
    from controller.scan.pipeline import open_at

    rows = [{"status": "new", "expires_at": CLOSE}, {"status": "new", "expires_at": "2026-11-21T12:30:00+00:00"},
            {"status": "executing", "expires_at": CLOSE}]
    assert [r["status"] for r in open_at(rows, CLOSE + timedelta(minutes=10))] == ["new", "executing"]
