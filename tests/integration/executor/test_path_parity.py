"""Parity: the Hummingbot script on a paper book that walks recorded candles' market path exits where
`bridge.exits.walk_candles` says, at the price it says (within the book's spread and one walk step).

Recorded Bittrex ETH-BTC 5m candles; the barriers are placed from the data so the cases happen: one candle
that reaches both the take profit and the stop, an open that gaps through the stop, and a stretch whose
prices cross the stop (the position must leave by its stop). The replay starts from the executor's own entry
fill, as calibration does.
"""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from bridge import exits
from bridge import path as market
from bridge.queue_client import PostgresQueue
from controller.data.market_data import ohlcv_dir
from controller.data.storage.postgres import PostgresStore
from offline.harness import executor_config, start, stop
from tests.support.executor import NO_WAIT, emit, open_position, trade_row

PAIR = "ETH-BTC"
SPREAD_PCT = 0.02  # levels 0.02 % apart: a 0.04 % spread


@dataclass(frozen=True)
class B:
    take_profit_pct: float
    stop_loss_pct: float
    time_limit_s: float = 86400
    trailing_activation_pct: float | None = None
    trailing_delta_pct: float | None = None


def recorded() -> list[market.Candle]:
    with (ohlcv_dir() / "bittrex_ETH-BTC_5m.csv").open() as f:
        return [market.Candle(int(r["timestamp"]) / 1000, 300.0, float(r["open"]), float(r["high"]), float(r["low"]),
                              float(r["close"])) for r in csv.DictReader(f)]


def both_levels_in_one_candle(candles: list[market.Candle]) -> tuple[int, B]:
    """The first candle without a gap whose range is 1.5 % or more: both barriers at 60 % of the way to its
    extremes."""
    for i in range(200, len(candles) - 1):
        entry, nxt = candles[i].close, candles[i + 1]
        if nxt.open == entry and (nxt.high - nxt.low) / entry >= 0.015 and nxt.high > entry > nxt.low:
            return i, B(round(0.6 * (nxt.high / entry - 1) * 100, 4), round(0.6 * (1 - nxt.low / entry) * 100, 4))
    raise AssertionError("no wide candle in the recording")


def gap_through_the_stop(candles: list[market.Candle]) -> tuple[int, B]:
    """The first open 0.5 % or more below the previous close: the stop halfway into the gap."""
    for i in range(200, len(candles) - 1):
        entry, nxt = candles[i].close, candles[i + 1]
        if nxt.open <= entry * 0.995:
            return i, B(5.0, round((1 - (entry + nxt.open) / 2 / entry) * 100, 4))
    raise AssertionError("no gap in the recording")


def stop_crossed_later(candles: list[market.Candle]) -> tuple[int, B]:
    """An entry whose stop (1 %) the prices cross within the next hours before any take profit (4 %)."""
    for i in range(300, len(candles) - 60):
        entry = candles[i].close
        after = candles[i + 1:i + 60]
        lows = [c.low for c in after]
        first_stop = next((k for k, c in enumerate(after) if c.low <= entry * 0.99), None)
        first_tp = next((k for k, c in enumerate(after) if c.high >= entry * 1.04), None)
        if first_stop is not None and first_stop >= 3 and (first_tp is None or first_tp > first_stop) \
                and min(lows[:first_stop]) > entry * 0.993 and after[first_stop].open > entry * 0.991:
            return i, B(4.0, 1.0)
    raise AssertionError("no stop crossing in the recording")


CASES = {"both levels in one candle": both_levels_in_one_candle, "gap through the stop": gap_through_the_stop,
         "stop crossed": stop_crossed_later}


@pytest.mark.parametrize("case", list(CASES))
def test_the_script_on_the_walked_book_exits_as_the_replay_does(store: PostgresStore, migrated_db: str,
                                                                 outbox: Path, case: str) -> None:
    candles = recorded()
    at, barriers = CASES[case](candles)
    entry_close = candles[at].close
    after = candles[at + 1:at + 61]

    async def scenario() -> tuple[float, int, float]:
        config = executor_config(outbox, trading_pairs=[PAIR], stability_window_s=3)
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT), balances={"BTC": 10.0, "ETH": 0.0},
                        books={}, tick_size=5.0)
        try:
            harness.book(PAIR, entry_close, spread_step=entry_close * SPREAD_PCT / 100, volume=1e5, width=0.01)
            signal_id = emit(store, symbol=PAIR, price=entry_close, quote_amount=0.05,
                             take_profit_pct=barriers.take_profit_pct, stop_loss_pct=barriers.stop_loss_pct,
                             time_limit_s=int(barriers.time_limit_s))
            await open_position(harness, migrated_db, signal_id)
            walked = 0
            for candle in after:
                if trade_row(migrated_db, signal_id) is not None or signal_id not in harness.strategy.positions:
                    break
                points = market.market_path([market.Candle(0.0, 300.0, candle.open, candle.high, candle.low,
                                                           candle.close)]).points
                await harness.walk({PAIR: list(points)}, 300.0, real_pause=0.001, spread_pct=SPREAD_PCT,
                                   volume=1e5)
                walked += 1
            await harness.until(lambda: trade_row(migrated_db, signal_id) is not None)
            await harness.drained()
            return signal_id, walked, harness.max_step_pct
        finally:
            stop(harness)

    signal_id, walked, step_pct = asyncio.run(scenario())
    trade = trade_row(migrated_db, signal_id)
    assert trade is not None
    replay = exits.walk_candles(barriers, float(trade["entry_price"]), after[0].ts_s, after)
    assert replay.hit is not None and replay.candle is not None
    assert trade["exit_reason"] == replay.hit.reason, (case, trade["exit_reason"], replay)
    assert walked == replay.candle + 1  # it left during the candle the replay names
    tolerance = (2 * SPREAD_PCT + step_pct) / 100 + 1e-9
    assert float(trade["exit_price"]) == pytest.approx(replay.hit.price, rel=tolerance), (case, step_pct)
    if case != "both levels in one candle":
        assert trade["exit_reason"] == "stop_loss"


STRATEGIES = ("dca", "swing", "channel")


def quiet_stretch(candles: list[market.Candle], length: int = 6) -> int:
    """The first run of `length` candles, each within 0.4 % high to low and no gap above 0.05 %."""
    for i in range(200, len(candles) - length):
        run = candles[i:i + length]
        if all((c.high - c.low) / c.low <= 0.004 for c in run) and all(
                abs(b.open / a.close - 1) <= 0.0005 for a, b in pairwise(run)):
            return i
    raise AssertionError("no quiet stretch in the recording")


def test_a_quiet_recorded_stretch_passes_the_stability_gate_every_time(store: PostgresStore, migrated_db: str,
                                                                      outbox: Path) -> None:
    """The gate (0.5 % within 5 s) measures the walked book: on calm candles it must reject nothing."""
    candles = recorded()
    at = quiet_stretch(candles)
    run = candles[at:at + 6]

    async def scenario() -> tuple[list[str], dict[str, int]]:
        config = executor_config(outbox, trading_pairs=[PAIR], stability_window_s=5, max_open_per_pair=10,
                                 max_open_positions=10)
        harness = start(config, PostgresQueue(migrated_db, retry=NO_WAIT), balances={"BTC": 10.0, "ETH": 0.0},
                        books={}, tick_size=5.0)
        ids = []
        try:
            harness.book(PAIR, run[0].open, spread_step=run[0].open * SPREAD_PCT / 100, volume=1e5, width=0.01)
            for k, candle in enumerate(run):
                points = market.market_path([market.Candle(0.0, 300.0, candle.open, candle.high, candle.low,
                                                           candle.close)]).points
                await harness.walk({PAIR: list(points)}, 300.0, real_pause=0.001, spread_pct=SPREAD_PCT,
                                   volume=1e5)
                if k % 2 == 0:  # one open entry per strategy and pair: three strategies, every other close
                    continue
                ids.append(emit(store, strategy=STRATEGIES[len(ids)], symbol=PAIR, price=candle.close,
                                quote_amount=0.05, take_profit_pct=5.0, stop_loss_pct=5.0,
                                expires_at=datetime.now(UTC) + timedelta(hours=2)))  # the walk runs the clock ahead
                await harness.until(lambda sid=ids[-1]: signal_status(migrated_db, sid) not in ("new", "claimed"))
            return [signal_status(migrated_db, sid) for sid in ids], dict(harness.strategy.rejections)
        finally:
            stop(harness)

    statuses, rejections = asyncio.run(scenario())
    assert statuses == ["executing"] * len(STRATEGIES), (statuses, rejections)
    assert rejections.get("unstable", 0) == 0


def signal_status(url: str, signal_id: object) -> str:
    from tests.support.executor import signal_row

    return str(signal_row(url, signal_id)["status"])  # type: ignore[arg-type]
