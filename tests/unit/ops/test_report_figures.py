"""The report's arithmetic against figures computed by hand, the gate classifier against the texts the
executor and the queue write. (The funnel's stages are counted by the view dashboard_signal_funnel, tested on
every combination of stages in tests/integration/sql/test_dashboard_figures.py.)"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.ops.report_figures import (
    GATES,
    OTHER_GATE,
    amount_text,
    by_gate,
    by_group,
    duration_text,
    gate_of,
    headline,
)

ROOT = Path(__file__).resolve().parents[3]
T = datetime(2018, 1, 12, tzinfo=UTC)


def trade(closed_h: float, minutes: float, pnl_quote: float, pnl_pct: float, strategy: str = "DCA",
          exit_reason: str = "take_profit", symbol: str = "ETH-BTC") -> dict[str, Any]:
    closed = T + timedelta(hours=closed_h)
    return {"closed_at": closed, "opened_at": closed - timedelta(minutes=minutes), "pnl_quote": pnl_quote,
            "pnl_pct": pnl_pct, "strategy": strategy, "exit_reason": exit_reason, "symbol": symbol}


# Five trades on a capital of 10 BTC, given out of their closing order (the headline sorts them):
#   closes  1 h: +2.0 BTC  +4 %  10 min   equity 12.0   peak 12.0   drawdown 0
#   closes  2 h: -1.0 BTC  -2 %  30 min   equity 11.0   peak 12.0   drawdown 1/12
#   closes  3 h: -3.0 BTC  -6 %  20 min   equity  8.0   peak 12.0   drawdown 4/12 = 33.33 %  (4 BTC)
#   closes  4 h: +4.0 BTC  +8 %  60 min   equity 12.0   peak 12.0   drawdown 0
#   closes  5 h: +0.5 BTC  +1 %  40 min   equity 12.5   peak 12.5   drawdown 0
# net +2.5 BTC = 25 % of 10; wins 3 of 5 = 60 %; profit factor 6.5 / 4.0 = 1.625;
# expectancy 2.5 / 5 = 0.5 BTC and (4 - 2 - 6 + 8 + 1) / 5 = 1 % a trade;
# durations mean (10 + 30 + 20 + 60 + 40) / 5 = 32 min, median 30 min;
# Sharpe: deviations from the mean 1 are 3, -3, -7, 7, 0, squares sum to 116, sample variance 116 / 4 = 29,
#   so 1 / sqrt(29) = 0.18569534;
# Sortino: downside min(r, 0) is 0, -2, -6, 0, 0, mean square (4 + 36) / 5 = 8, so 1 / sqrt(8) = 0.35355339.
BOOK = [trade(4, 60, 4.0, 8.0), trade(1, 10, 2.0, 4.0), trade(3, 20, -3.0, -6.0), trade(5, 40, 0.5, 1.0),
        trade(2, 30, -1.0, -2.0)]


def test_headline_figures_equal_the_hand_computed_equity_curve() -> None:
    h = headline(BOOK, capital=10.0, quote="BTC")
    assert (h.quote, h.capital, h.trades, h.wins) == ("BTC", 10.0, 5, 3)
    assert h.net_pnl_quote == pytest.approx(2.5) and h.net_return_pct == pytest.approx(25.0)
    assert h.win_rate_pct == pytest.approx(60.0) and h.profit_factor == pytest.approx(1.625)
    assert h.expectancy_quote == pytest.approx(0.5) and h.expectancy_pct == pytest.approx(1.0)
    assert h.equity == pytest.approx((12.0, 11.0, 8.0, 12.0, 12.5))
    assert h.max_drawdown_pct == pytest.approx(100 / 3) and h.max_drawdown_quote == pytest.approx(4.0)
    assert h.mean_duration_s == pytest.approx(32 * 60) and h.median_duration_s == pytest.approx(30 * 60)
    assert h.sharpe == pytest.approx(1 / math.sqrt(29)) and h.sortino == pytest.approx(1 / math.sqrt(8))


def test_a_book_that_loses_more_than_its_capital_has_drawn_down_100_percent_not_more() -> None:
    # capital 1: -0.6 leaves 0.4 (40 % down), -0.6 more leaves -0.2, which is ruin: 100 %
    h = headline([trade(1, 5, -0.6, -60.0), trade(2, 5, -0.6, -60.0)], capital=1.0, quote="BTC")
    assert h.max_drawdown_pct == pytest.approx(100.0) and h.net_return_pct == pytest.approx(-120.0)
    assert h.profit_factor == pytest.approx(0.0) and h.win_rate_pct == 0.0


def test_a_first_losing_trade_is_a_drawdown_from_the_starting_capital() -> None:
    # capital 4: -1 leaves 3 (25 % down), +2 makes 5, a new peak
    h = headline([trade(1, 5, -1.0, -2.0), trade(2, 5, 2.0, 4.0)], capital=4.0, quote="USDT")
    assert h.max_drawdown_pct == pytest.approx(25.0) and h.max_drawdown_quote == pytest.approx(1.0)


def test_equal_returns_have_no_sharpe_or_sortino_and_no_loss_has_no_profit_factor() -> None:
    # 0.1 * 1.01 - 0.1 etc. are equal only up to float rounding: without the guard the ratio is about 1e14
    same = [trade(i, 5, 0.1 * 1.01 - 0.1, (0.1 * 1.01 - 0.1) / 0.1 * 100 + i * 1e-15) for i in range(1, 6)]
    h = headline(same, capital=1.0, quote="BTC")
    assert h.sharpe is None and h.sortino is None and h.profit_factor is None
    assert h.win_rate_pct == 100.0 and h.max_drawdown_pct == 0.0


def test_no_trade_and_no_capital_leave_the_figures_that_need_them_empty() -> None:
    empty = headline([], capital=10.0, quote="BTC")
    assert (empty.trades, empty.win_rate_pct, empty.sharpe, empty.mean_duration_s) == (0, None, None, None)
    assert empty.net_return_pct == 0.0 and empty.max_drawdown_pct == 0.0
    unknown = headline(BOOK, capital=None, quote="XYZ")
    assert unknown.net_return_pct is None and unknown.max_drawdown_pct is None
    assert unknown.max_drawdown_quote == pytest.approx(4.0) and unknown.net_pnl_quote == pytest.approx(2.5)
    one = headline(BOOK[:1], capital=10.0, quote="BTC")
    assert one.sharpe is None and one.sortino is None  # one return has no spread


def test_per_strategy_and_exit_reason_tables_keep_quote_currencies_apart() -> None:
    trades = [trade(1, 5, 0.001, 2.0, "DCA", "take_profit"), trade(2, 5, -0.0005, -1.0, "DCA", "stop_loss"),
              trade(3, 5, 0.002, 4.0, "CHANNEL", "take_profit"),
              trade(4, 5, 10.0, 20.0, "DCA", "take_profit", symbol="BTC-USDT")]
    rows = {(r.key, r.quote): r for r in by_group(trades, "strategy")}
    dca = rows[("DCA", "BTC")]
    assert (dca.trades, dca.win_rate_pct, dca.mean_pnl_pct) == (2, 50.0, 0.5)
    assert dca.total_pnl_quote == pytest.approx(0.0005)
    assert rows[("DCA", "USDT")].total_pnl_quote == 10.0  # never added to the BTC amounts
    exits = {(r.key, r.quote): r.trades for r in by_group(trades, "exit_reason")}
    assert exits == {("take_profit", "BTC"): 2, ("stop_loss", "BTC"): 1, ("take_profit", "USDT"): 1}


def test_amounts_are_written_in_their_currency_without_si_prefixes() -> None:
    assert amount_text(0.000012, "BTC") == "+0.000012 BTC"
    assert amount_text(-1234.5, "USDT") == "-1234.50 USDT"
    assert amount_text(0.4, "BTC", signed=False) == "0.40 BTC"
    assert amount_text(None, "BTC") == "—"
    assert [duration_text(s) for s in (40, 720, 3 * 3600 + 300, 26 * 3600, None)] == [
        "40 s", "12 min", "3 h 05 min", "1 d 2 h", "—"]


# One text of every shape the executor's gates and the queue's claim_signals write (their f-strings filled in).
REASONS = {
    "price stability": ["price moved 0.97% within 5 s (max 0.5%)", "price moved 12.30% within 10 s (max 1.0%)"],
    "price moved from the signal": ["price moved 2.10% from the signal's 0.0712 (max 1.0%)",
                                    "price moved 2.1% from the reference"],
    "spread": ["spread 0.84% wider than 0.5%"],
    "expired": ["expired at 2017-11-13T22:10:00+00:00"],
    "max open positions": ["max open positions reached (3)", "max open positions for ETH-BTC reached (1)"],
    "pair not traded": ["XRP-BTC is not traded by binance_paper_trade"],
    "no order book": ["no book for ETH-BTC"],
    "below the exchange minimum": ["an entry of 0.0001 BTC is below the minimum notional 0.001"],
    "balance": ["balance too small for 0.02 ETH at 0.1"],
    "side not traded": ["sell signals are not traded: binance_paper_trade is spot and this bot only opens long "
                        "positions"],
    "duplicate": ["signal 5f0c was already executed by this bot"],
    "exit before the entry was placed": ["exit signal 5f0c came before the entry was placed"],
    "exit without a position": ["no open position of entry 5f0c on this bot",
                                "entry 5f0c closed without a fill: no position to exit",
                                "entry 5f0c closed (take_profit) before its exit was claimed",
                                "entry 5f0c is expired: no position to exit",
                                "its entry signal is gone: no position to exit"],
}


def test_every_reason_text_is_classified_by_the_gate_that_writes_it() -> None:
    for gate, texts in REASONS.items():
        for text in texts:
            assert gate_of(text) == gate, text
    assert gate_of("the exchange said no") == OTHER_GATE and gate_of(None) == OTHER_GATE


def test_every_gate_the_executor_reports_has_a_pattern() -> None:
    """A new gate in the executor without a pattern here would fall into "other": found in its source."""
    sources = (ROOT / "executor" / "gates.py").read_text() + (ROOT / "hummingbot_scripts" /
                                                             "signal_executor.py").read_text()
    written = set(re.findall(r'return "(\w+)", \(?f"', sources))
    written |= set(re.findall(r'reporter\.reject\(\w+, "(\w+)", f"', sources))
    assert {"unstable", "price_moved", "expired", "duplicate", "no_position"} <= written  # the regexes read it
    assert written <= {name for name, _, _ in GATES}


def test_rejections_grouped_by_gate_with_their_count_and_most_frequent_example() -> None:
    rows = [("DCA", "price moved 0.97% within 5 s (max 0.5%)", 3),
            ("DCA", "price moved 1.20% within 5 s (max 0.5%)", 5),
            ("CHANNEL", "price moved 0.61% within 5 s (max 0.5%)", 1), ("DCA", "spread 0.84% wider than 0.5%", 2),
            ("DCA", "the exchange said no", 1)]
    grouped = by_gate(rows)
    assert [(g.gate, g.signals, g.texts) for g in grouped] == [("price stability", 9, 3), ("spread", 2, 1),
                                                                ("other", 1, 1)]
    assert grouped[0].example == "price moved 1.20% within 5 s (max 0.5%)"
    assert grouped[0].strategies == ("CHANNEL", "DCA")
