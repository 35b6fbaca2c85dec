"""The vectorised replay is `bridge.exits.walk`, K variations x N entries at a time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import exits, path
from shadow.replay import PENDING, BarrierGrid, Paths, net_pnl_pct, replay


@dataclass(frozen=True)
class B:
    take_profit_pct: float | None
    stop_loss_pct: float | None
    time_limit_s: float | None
    trailing_activation_pct: float | None
    trailing_delta_pct: float | None


def _grid(barriers: list[list[B]]) -> BarrierGrid:
    def arr(name: str) -> np.ndarray:
        return np.array([[np.nan if getattr(b, name) is None else float(getattr(b, name)) for b in row]
                         for row in barriers])
    return BarrierGrid(arr("take_profit_pct"), arr("stop_loss_pct"), arr("time_limit_s"),
                       arr("trailing_activation_pct"), arr("trailing_delta_pct"))


def _candles(draw: st.DrawFn, start: float) -> tuple[list[float], list[float], list[float], list[float]]:
    """Opens, highs, lows, closes; an open may gap away from the previous close."""
    n = draw(st.integers(0, 30))
    price = start
    opens, highs, lows, closes = [], [], [], []
    for _ in range(n):
        price = max(0.01, price * (1 + draw(st.sampled_from([0.0, 0.0, -3.0, 2.0])) / 100))
        opens.append(price)
        move = draw(st.floats(-6, 6))
        up = draw(st.floats(0, 4))
        down = draw(st.floats(0, 4))
        close = max(0.01, price * (1 + move / 100))
        high = max(price, close) * (1 + up / 100)
        low = min(price, close) * (1 - down / 100)
        highs.append(high)
        lows.append(low)
        closes.append(close)
        price = close
    return opens, highs, lows, closes


optional_pct = st.one_of(st.none(), st.floats(0.1, 12).map(lambda x: round(x, 2)))
barriers_strategy = st.builds(B, optional_pct, optional_pct, st.one_of(st.none(), st.integers(60, 3000)),
                              optional_pct, st.sampled_from([None, 0.5, 1.0, 2.5]))


@st.composite
def cases(draw: st.DrawFn) -> tuple[list, list[list[B]], float, float]:
    n_entries = draw(st.integers(1, 5))
    k = draw(st.integers(1, 4))
    entries = []
    for _ in range(n_entries):
        entry = draw(st.floats(1, 1000))
        candle_s = draw(st.sampled_from([60.0, 300.0]))
        start = draw(st.floats(0, 1e6).map(round))
        opens, highs, lows, closes = _candles(draw, entry)
        times = [start + i * candle_s for i in range(len(closes))]
        entries.append((entry, start - draw(st.sampled_from([0.0, 30.0])), times, opens, highs, lows, closes,
                        candle_s))
    grid = [[draw(barriers_strategy) for _ in range(n_entries)] for _ in range(k)]
    fee = draw(st.sampled_from([0.0, 0.1, 0.3]))
    slip = draw(st.sampled_from([0.0, 0.05, 0.5]))
    return entries, grid, fee, slip


def _paths(entries: list) -> Paths:
    return Paths.from_lists([e[0] for e in entries], [e[1] for e in entries],
                            *([np.array(e[i]) for e in entries] for i in range(2, 7)), [e[7] for e in entries])


@settings(max_examples=400, deadline=None)
@given(cases())
def test_replay_equals_exits_walk_on_random_cases(case: tuple) -> None:
    entries, grid, fee, slip = case
    result = replay(_paths(entries), _grid(grid), fee_pct=fee, slippage_pct=slip)
    for k, row in enumerate(grid):
        for n, barriers in enumerate(row):
            entry, entry_t, times, opens, highs, lows, closes, candle_s = entries[n]
            fill = entry if slip == 0 else entry * (100 + slip) / 100
            candles = [path.Candle(*row) for row in zip(times, [candle_s] * len(times), opens, highs, lows, closes,
                                                        strict=True)]
            outcome = exits.walk_candles(barriers, fill, entry_t, candles)
            if outcome.hit is None:
                assert result.index[k, n] == PENDING and result.reason[k, n] == PENDING
                assert np.isnan(result.pnl_pct[k, n])
                continue
            assert result.index[k, n] == outcome.candle and result.point[k, n] == outcome.index
            assert exits.REASONS[result.reason[k, n]] == outcome.hit.reason
            assert result.exit_price[k, n] == outcome.hit.price  # bit-identical, not approximately
            assert result.pnl_pct[k, n] == pytest.approx(net_pnl_pct(fill, outcome.hit.price, fee, slip), abs=1e-12)


def _one(b: B, highs: list[float], lows: list[float], closes: list[float], *, fee: float = 0.0,
         slip: float = 0.0) -> tuple[str | None, float, float]:
    opens = [100.0, *closes[:-1]]
    paths = Paths.from_lists([100.0], [0.0], [np.arange(len(closes)) * 60.0], [np.array(opens)], [np.array(highs)],
                             [np.array(lows)], [np.array(closes)], [60.0])
    r = replay(paths, _grid([[b]]), fee_pct=fee, slippage_pct=slip)
    reason = None if r.reason[0, 0] == PENDING else exits.REASONS[r.reason[0, 0]]
    return reason, float(r.exit_price[0, 0]), float(r.pnl_pct[0, 0])


def test_a_candle_touching_both_barriers_is_a_stop_not_a_take_profit() -> None:
    b = B(take_profit_pct=3.0, stop_loss_pct=2.0, time_limit_s=None, trailing_activation_pct=None,
          trailing_delta_pct=None)
    # one wide candle spans 97..104: the seed's evaluator called this a win; the rule calls it a stop
    reason, price, pnl = _one(b, [104.0], [97.0], [101.0])
    assert reason == "stop_loss"
    assert price == 98.0
    assert pnl == pytest.approx(-2.0)


def test_fees_and_slippage_turn_a_small_take_profit_into_a_smaller_gain() -> None:
    b = B(take_profit_pct=1.0, stop_loss_pct=5.0, time_limit_s=None, trailing_activation_pct=None,
          trailing_delta_pct=None)
    _, _, gross = _one(b, [100.5, 102.0], [99.5, 100.0], [100.0, 101.5])
    _, _, net = _one(b, [100.5, 102.0], [99.5, 100.0], [100.0, 101.5], fee=0.3)
    assert gross == pytest.approx(1.0)
    # 0.3 % taker on both sides: 1.0 - 0.3 - 0.3 * 1.01
    assert net == pytest.approx(1.0 - 0.3 - 0.3 * 1.01)
    _, _, slipped = _one(b, [100.5, 102.0], [99.5, 100.0], [100.0, 101.5], fee=0.3, slip=0.25)
    assert slipped < net


def test_candles_that_end_before_any_exit_leave_the_outcome_pending() -> None:
    b = B(take_profit_pct=10.0, stop_loss_pct=10.0, time_limit_s=3600, trailing_activation_pct=None,
          trailing_delta_pct=None)
    reason, _, pnl = _one(b, [101.0, 101.0], [99.0, 99.0], [100.0, 100.0])
    assert reason is None and np.isnan(pnl)
