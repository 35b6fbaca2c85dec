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
from tests.unit.scan.test_signals import CLOSE, OPEN_ENTRY, SIZING, decision

# --- plan_exits ---------------------------------------------------------------------------------------------

OTHER_ENTRY = {**OPEN_ENTRY, "id": "0d1e5b0a-7a2c-4d1e-9c55-1b2a3c4d5e6f", "symbol": "SOL-USDT",
               "quote_amount": 20, "take_profit_pct": 2.0}


def wants_out(symbol: str = "ETH-USDT", **kw: object):
    return decision(symbol=symbol, strategy="channel", entry=False, exit=True, exit_reason="rsi 74", **kw)


def test_every_open_position_is_looked_at_even_after_rows_that_get_no_exit() -> None:
    rows = [{**OPEN_ENTRY, "status": "new", "id": "a"},   # skipped: not held
            {**OPEN_ENTRY, "strategy": "dca", "id": "b"},  # skipped: no exit decision for dca
            {**OPEN_ENTRY, "exchange": "bybit", "id": "c"},  # skipped: another exchange's position
            OPEN_ENTRY, OTHER_ENTRY]
    planned = plan_exits([wants_out(), wants_out("SOL-USDT", candle_close=CLOSE - timedelta(hours=1))], rows,
                         CLOSE, CLOSE, SIZING)
    # SOL's decision is an hour old (stale), ETH's is sent: the rows after a skipped one are still read
    assert [str(p.signal.entry_signal_id) for p in planned] == [OPEN_ENTRY["id"]]
    planned = plan_exits([wants_out(), wants_out("SOL-USDT")], [*rows, {**OPEN_ENTRY, "kind": "exit"}],
                         CLOSE, CLOSE, SIZING)
    assert [str(p.signal.entry_signal_id) for p in planned] == [OPEN_ENTRY["id"], OTHER_ENTRY["id"]]


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
