"""Exit signals for open positions and the per-symbol protection, edge by edge (found by `make mutation`):
several open rows, rows without the optional columns, the exit signal's fields, and the protection's
defaults when a tier or a regime is not configured."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.scan.regime import (
    ClosedTrade,
    ProtectionParams,
    Regime,
    RegimeReading,
    StopWidening,
    symbol_block,
    widened_stop,
)
from controller.scan.signals import plan_exits
from tests.support.planning import CLOSE, OPEN_ENTRY, SIZING, decision

# --- plan_exits ---------------------------------------------------------------------------------------------

OTHER_ENTRY = {**OPEN_ENTRY, "id": "0d1e5b0a-7a2c-4d1e-9c55-1b2a3c4d5e6f", "symbol": "SOL-USDT",
               "quote_amount": 20, "take_profit_pct": 2.0}


def wants_out(symbol: str = "ETH-USDT", **kw: object):
    return decision(symbol=symbol, strategy="channel", entry=False, exit=True, exit_reason="rsi 74", **kw)


def test_every_open_position_is_looked_at_even_after_rows_that_get_no_exit() -> None:
    rows = [{**OPEN_ENTRY, "status": "new", "id": "a"},   # skipped: not held
            {**OPEN_ENTRY, "strategy": "dca", "id": "b"},  # skipped: no exit decision for dca
            {**OPEN_ENTRY, "exchange": "bybit", "id": "c"},  # skipped: another exchange's position
            OTHER_ENTRY, OPEN_ENTRY]
    planned = plan_exits([wants_out(), wants_out("SOL-USDT", candle_close=CLOSE - timedelta(hours=1))], rows,
                         CLOSE, CLOSE, SIZING)
    # SOL's decision is an hour old (stale), ETH's is sent: the rows after a skipped one are still read
    assert [str(p.signal.entry_signal_id) for p in planned] == [OPEN_ENTRY["id"]]
    planned = plan_exits([wants_out(), wants_out("SOL-USDT")], [*rows, {**OPEN_ENTRY, "kind": "exit"}],
                         CLOSE, CLOSE, SIZING)
    assert [str(p.signal.entry_signal_id) for p in planned] == [OTHER_ENTRY["id"], OPEN_ENTRY["id"]]


def test_a_row_without_kind_or_exchange_is_an_entry_on_the_decisions_exchange() -> None:
    bare = {k: v for k, v in OPEN_ENTRY.items() if k not in ("kind", "exchange")}
    [item] = plan_exits([wants_out()], [bare], CLOSE, CLOSE, SIZING)
    assert item.signal.exchange == "binance"
    for status in ("claimed", "executing"):
        assert len(plan_exits([wants_out()], [{**bare, "status": status}], CLOSE, CLOSE, SIZING)) == 1


def test_the_exit_signal_carries_the_decision_and_the_positions_amounts() -> None:
    [item] = plan_exits([wants_out()], [OPEN_ENTRY], CLOSE, CLOSE, SIZING)
    signal = item.signal
    assert item.decision == wants_out()
    assert signal.params_hash == "p1" and signal.confidence == 1.0
    assert signal.features == {"rsi": 31.0, "exit_reason": "rsi 74"}
    assert (signal.strategy, signal.exchange, signal.symbol, signal.price) == ("channel", "binance", "ETH-USDT", 2500.0)
    assert (signal.quote_amount, signal.take_profit_pct) == (50, 4.0)  # the entry's, not the sizing's


# --- protection: cooldowns, bans, stop widening -------------------------------------------------------------

def test_a_tier_without_a_cooldown_gets_the_longest_and_no_cooldowns_at_all_mean_none() -> None:
    params = ProtectionParams(cooldown_after_stop_h={"large": 4.0, "meme": 24.0})
    assert params.cooldown_h("large") == 4.0 and params.cooldown_h("mid") == 24.0
    assert ProtectionParams(cooldown_after_stop_h={}).cooldown_h("small") == 0.0


@pytest.mark.parametrize(("ban_h", "cooldowns", "longest"), [
    (24.0, {"large": 4.0, "meme": 48.0}, 48.0),  # a cooldown longer than the ban
    (30.0, {"large": 4.0, "meme": 24.0}, 30.0),  # the ban
    (0.0, {}, 0.0),                               # nothing configured: nothing to look back for
    (0.5, {}, 0.5),
])
def test_the_longest_protection_is_how_far_back_closed_trades_matter(ban_h: float, cooldowns: dict,
                                                                      longest: float) -> None:
    assert ProtectionParams(ban_h=ban_h, cooldown_after_stop_h=cooldowns).longest_h() == longest


def test_the_default_tier_of_a_symbol_is_small() -> None:
    stop = [ClosedTrade("SOL-USDT", "stop_loss", CLOSE - timedelta(hours=1))]
    assert symbol_block(stop, "SOL-USDT", CLOSE, ProtectionParams()) == (
        f"cooling down until {CLOSE + timedelta(hours=11):%Y-%m-%d %H:%M} after a stop loss (12 h for small)")


def reading(regime: Regime = Regime.NORMAL, volatility: float | None = None) -> RegimeReading:
    return RegimeReading(regime, 1.0, "test", volatility_24h_pct=volatility)


def test_a_stop_widens_only_with_a_known_volatility() -> None:
    params = StopWidening(from_volatility_pct=0.0, per_volatility_point=0.1)
    assert widened_stop(2.0, reading(volatility=None), "large", params) == 2.0  # unknown volatility: as set
    assert widened_stop(2.0, reading(volatility=1.0), "large", params) == pytest.approx(2.2)


def test_a_regime_without_a_factor_leaves_the_stop_as_it_is() -> None:
    params = StopWidening(regime_factor={Regime.PANIC: 1.5})
    assert widened_stop(2.0, reading(Regime.CAUTION), "large", params) == 2.0
    assert widened_stop(2.0, reading(Regime.PANIC), "large", params) == 3.0


def test_a_tier_without_a_cap_gets_the_widest_cap_and_no_caps_at_all_keep_the_base() -> None:
    panic = reading(Regime.PANIC)
    params = StopWidening(regime_factor={Regime.PANIC: 10.0}, cap_pct={"large": 5.0, "meme": 8.0})
    assert widened_stop(2.0, panic, "large", params) == 5.0
    assert widened_stop(2.0, panic, "mid", params) == 8.0
    assert widened_stop(2.0, panic, "mid", StopWidening(regime_factor={Regime.PANIC: 10.0}, cap_pct={})) == 2.0


# --- sizing and planning defaults and edges -----------------------------------------------------------------

def test_the_seed_defaults_for_sizing_and_volatility_gates() -> None:
    from controller.scan.regime import RegimeParams, VolatilityGate
    from controller.scan.signals import QuoteSizing, SizingParams

    assert SizingParams().quotes == {q: QuoteSizing(amount=50.0, balance=10_000.0) for q in ("USDT", "USD", "USDC")}
    assert RegimeParams().volatility_gates == {
        "channel": VolatilityGate(off_at_pct=8.0, on_at_pct=6.0, on_after_h=2.0),
        "swing": VolatilityGate(off_at_pct=15.0), "dca": VolatilityGate(off_at_pct=20.0)}


def test_the_quote_is_the_part_after_the_last_dash_in_capitals() -> None:
    from controller.scan.signals import quote_of

    assert quote_of("eth-usdt") == "USDT"
    assert quote_of("1000-PEPE-USDT") == "USDT"
    assert quote_of("BTC") == "BTC"


def test_a_pair_whose_quote_has_no_rule_is_sized_zero_and_skipped_with_its_decision() -> None:
    from controller.scan.signals import OpenBook, size_for
    from tests.support.planning import NORMAL, run

    assert size_for(decision("ETH-EUR"), NORMAL, OpenBook(), SIZING) == (0.0, "no sizing for quote EUR")
    eur = decision("ETH-EUR")
    [item] = run([eur])
    assert (item.decision, item.outcome, item.reason) == (eur, "skip", "no sizing for quote EUR")


def test_a_blocked_entry_does_not_stop_the_next_one() -> None:
    from controller.scan.signals import OpenBook
    from tests.support.planning import run

    book = OpenBook()
    for _ in range(2):
        book.add("swing", "ETH-USDT", 10)  # ETH-USDT at its cap of 2 per symbol
    first, second = run([decision("ETH-USDT", confidence=0.9), decision("SOL-USDT", confidence=0.5)], book=book)
    assert (first.outcome, second.outcome) == ("blocked", "enter")
    first, second = run([decision("ETH-EUR", confidence=0.9), decision("SOL-USDT", confidence=0.5)])
    assert (first.outcome, second.outcome) == ("skip", "enter")  # nor does a pair without a sizing rule


def test_the_stop_is_widened_up_to_the_cap_of_the_decisions_tier_small_when_unsaid() -> None:
    from tests.support.planning import run

    wide = StopWidening(regime_factor={Regime.NORMAL: 10.0}, cap_pct={"large": 6.0, "small": 9.0, "meme": 12.0})
    [large] = run([decision(thresholds={"tier": "large"})], stops=wide)
    [unsaid] = run([decision(thresholds={})], stops=wide)
    assert (large.signal.stop_loss_pct, unsaid.signal.stop_loss_pct) == (6.0, 9.0)


def test_a_planned_grid_counts_against_the_book_in_full() -> None:
    from controller.scan.signals import OpenBook, grid_share
    from tests.support.planning import GRID, run

    book = OpenBook()
    [item] = run([decision(grid=GRID)], book=book)
    assert item.outcome == "enter" and book.of("USDT").exposure == 50 * (1 + 3)
    assert grid_share(decision(grid={**GRID, "grid_level_share": 0.5})) == 1.5


def test_a_grid_levels_quote_is_its_share_of_the_entry_and_its_spacing_is_rounded_to_six_places() -> None:
    from tests.support.planning import GRID, run

    [item] = run([decision(grid={**GRID, "grid_level_share": 0.5, "grid_spacing_pct": 1.23456789})])
    assert (item.signal.grid_level_quote, item.signal.grid_spacing_pct) == (25.0, 1.234568)


# --- volatility gates: off at a level, back on after a calm spell -------------------------------------------

def gates():
    from controller.scan.regime import VolatilityGate

    # dca (no hysteresis) and swing (never reached in these tests) come first: channel is still looked at
    return {"dca": VolatilityGate(off_at_pct=20.0), "swing": VolatilityGate(off_at_pct=30.0, on_at_pct=25.0),
            "channel": VolatilityGate(off_at_pct=8.0, on_at_pct=6.0, on_after_h=2.0)}


def vol(*readings: float):
    """Hourly BTC volatility readings; the last one is `now`."""
    import pandas as pd

    index = pd.date_range(end=pd.Timestamp(CLOSE), periods=len(readings), freq="h")
    return pd.Series(readings, index=index, dtype=float)


def off(*readings: float) -> dict[str, str]:
    import pandas as pd

    from controller.scan.regime import disabled_strategies

    return disabled_strategies(vol(*readings), pd.Timestamp(CLOSE), gates())


def test_a_strategy_is_off_at_its_level_and_the_one_without_hysteresis_is_back_below_it() -> None:
    assert off(5.0, 8.0) == {"channel": "BTC volatility 8.00% >= 8% turns channel off"}
    assert off(25.0, 19.0) == {"channel": "BTC volatility 19.00% >= 8% turns channel off"}  # dca back at once
    assert off(20.0) == {"dca": "BTC volatility 20.00% >= 20% turns dca off",
                         "channel": "BTC volatility 20.00% >= 8% turns channel off"}
    assert off(5.0, 7.9) == {}  # never reached its level: nothing to wait for


def test_after_a_breach_a_strategy_comes_back_only_after_every_reading_of_the_spell_was_calm() -> None:
    waiting = "channel off since BTC volatility reached 8%: back on at <= 6% for 2 h (now {:.2f}%)"
    assert off(9.0, 6.0, 6.0, 6.0) == {}                                # calm for 2 h exactly (readings at <= 6)
    assert off(9.0, 7.0, 6.0, 6.0) == {"channel": waiting.format(6.0)}  # calm for 1 h only
    assert off(9.0, 5.0, 5.0, 7.0) == {"channel": waiting.format(7.0)}  # not calm now
    assert off(9.0, 5.0, 7.0, 5.0) == {"channel": waiting.format(5.0)}  # a reading inside the spell was not calm
    assert off(9.0, 5.0, 5.0, 5.0, 5.0) == {}
    assert off(8.0, 9.0, 5.0, 5.0, 5.0) == {}                           # the last breach counts
    assert off(9.0, 5.0, 5.0, 8.5, 5.0, 5.0) == {"channel": waiting.format(5.0)}
    assert off(8.0, 7.0) == {"channel": waiting.format(7.0)}           # reaching the level exactly is a breach
    assert off(9.0, 5.0, 7.0, 5.0, 5.0) == {}  # calm since 3 h, and every reading after now - 2 h was calm


# --- the regime's triggers, one at a time -------------------------------------------------------------------

QUIET = {"panic_peak_decline_24h_pct": 50, "panic_peak_decline_48h_pct": 50, "caution_volatility_pct": 50,
         "panic_volatility_pct": 50}  # only the change under test can decide


@pytest.mark.parametrize(("closes", "expected"), [
    ([(24, 100), (4, 104), (1, 100.1), (0, 100)], Regime.CAUTION),  # down 3.8 % over 4 h only
    ([(24, 104), (4, 100), (1, 100.1), (0, 100)], Regime.CAUTION),  # down 3.8 % over 24 h only
    ([(24, 106), (4, 100), (1, 100.1), (0, 100)], Regime.PANIC),    # down 5.7 % over 24 h only
    ([(24, 100), (4, 100), (1, 100.1), (0, 100)], Regime.NORMAL),
])
def test_each_falling_trigger_alone_decides(closes: list[tuple[float, float]], expected: Regime) -> None:
    from tests.support.regime import at, candles

    assert at(QUIET, candles([(h, c, c, c) for h, c in closes])) == expected


def test_the_24_hour_peak_is_taken_strictly_inside_the_last_24_hours() -> None:
    from controller.scan.regime import classify
    from tests.support.regime import NOW, PARAMS, candles

    reading = classify(candles([(24, 110, 110, 110), (23, 105, 105, 105), (0, 100, 100, 100)]), NOW, PARAMS)
    assert reading.peak_decline_24h_pct == pytest.approx(100 * (105 - 100) / 105)
    assert reading.peak_decline_48h_pct == pytest.approx(100 * (110 - 100) / 110)
