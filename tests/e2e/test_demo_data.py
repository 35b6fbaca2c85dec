"""Any folder of recorded candles: the options of `python -m offline.demo` checked against it, on copies of
the shared recordings cut into the shapes users have (several windows of a pair, 1m only, USDT quotes)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from controller.data.market_data import SimClock, ohlcv_dir, window
from offline import demo
from offline.dataset import DatasetError, DatasetSource, select

SHARED = ohlcv_dir()
pytestmark = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared recordings not found at {SHARED}")


def copy(name: str, folder: Path, as_name: str | None = None, rows: slice = slice(None)) -> pd.DataFrame:
    frame = pd.read_csv(SHARED / name).iloc[rows]
    frame.to_csv(folder / (as_name or name), index=False)
    return frame


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_windows_of_one_pair_are_merged_and_sizes_follow_the_usdt_quote(tmp_path: Path) -> None:
    first = copy("binanceusdm_BTC-USDT_5m.csv", tmp_path, "binance_BTC-USDT_5m_20230102.csv", slice(0, 2000))
    second = copy("binanceusdm_BTC-USDT_5m.csv", tmp_path, "binance_BTC-USDT_5m_20230115.csv", slice(3000, 5000))
    selection = select(tmp_path)
    assert (selection.exchange, selection.symbols, selection.quote) == ("binance", ("BTC-USDT",), "USDT")
    assert selection.start == utc(first["timestamp"].iloc[0]) + timedelta(hours=24)
    assert selection.end == utc(second["timestamp"].iloc[-1])  # the later window is part of the series
    # ... but a replay that must not cross the hole between them ends with the first (phases 3-4 of the demo
    # put their window at the end of the stretch recorded without a hole, and train on what came before)
    assert selection.stretch_end == utc(first["timestamp"].iloc[-1])
    assert select(tmp_path, start=utc(second["timestamp"].iloc[300])).stretch_end == utc(second["timestamp"].iloc[-1])
    assert selection.sizing().quotes["USDT"].amount == 50 and selection.sizing().quotes["USDT"].balance == 10_000
    source = DatasetSource(selection, clock=SimClock(utc(second["timestamp"].iloc[-1]) + timedelta(hours=1)))
    candles = source.fetch_ohlcv("BTC-USDT", "5m", utc(first["timestamp"].iloc[0]), None)
    assert len(candles) == 4000  # both windows, the gap between them left as it is
    # a window inside the gap between the two recordings is refused, naming the pair and what is recorded
    gap = utc(first["timestamp"].iloc[-1]) + timedelta(hours=6)
    with pytest.raises(DatasetError, match=r"outside the data of BTC-USDT \(recorded: BTC-USDT 2023-01-02"):
        select(tmp_path, start=gap, hours=6)


def test_one_minute_only_btc_pairs_replay_as_five_minute_candles_in_btc_sizes(tmp_path: Path) -> None:
    copy("bittrex_ETH-BTC_1m.csv", tmp_path)
    copy("bittrex_LTC-BTC_1m.csv", tmp_path)  # 38 missing minutes: gaps stay gaps
    selection = select(tmp_path, symbols=["eth/btc", "LTC-BTC"], hours=6)
    assert selection.symbols == ("ETH-BTC", "LTC-BTC") and selection.timeframe == "1m"
    assert selection.quote == "BTC" and selection.sizing(0.4).quotes["BTC"].amount == pytest.approx(0.0008)
    assert selection.end - selection.start == timedelta(hours=6)
    source = DatasetSource(selection, clock=SimClock(selection.end))
    five = source.fetch_ohlcv("ETH-BTC", "5m", selection.start, selection.end)
    assert len(five) == 72 and (five["ts"].diff().dropna() == pd.Timedelta(minutes=5)).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"exchange": "kraken"}, "no 5m-or-finer candles for exchange 'kraken' in .*; it has: bittrex"),
    ({"symbols": ["DOGE-BTC"]}, "no recorded file for DOGE-BTC on bittrex in .*; it has: ETH-BTC, LTC-BTC"),
    ({"start": datetime(2019, 1, 1, tzinfo=UTC), "symbols": ["ETH-BTC"]},
     r"the window 2019-01-01 00:00 to .* is outside the data of ETH-BTC \(recorded: ETH-BTC 2018-01-10 04:55"),
])
def test_options_that_do_not_fit_the_folder_get_one_line_that_says_why(tmp_path: Path, kwargs: dict,
                                                                      message: str) -> None:
    copy("bittrex_ETH-BTC_5m.csv", tmp_path)
    copy("bittrex_LTC-BTC_5m.csv", tmp_path)
    with pytest.raises(DatasetError, match=message) as exc:
        select(tmp_path, **kwargs)
    assert "\n" not in str(exc.value)


def test_an_unknown_an_empty_and_a_coarse_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such folder"):
        select(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not candles")
    (tmp_path / "ETHBTC.csv").write_text("timestamp,open\n")
    with pytest.raises(DatasetError, match=r"no recorded candles in .*: expected files named <exchange>_<BASE-QUOTE>"):
        select(tmp_path)
    copy("bittrex_ETH-BTC_5m.csv", tmp_path, "binance_ETH-BTC_1h.csv", slice(0, 100))
    with pytest.raises(DatasetError, match="has no 1m or 5m candles: the strategies need 5m or finer"):
        select(tmp_path)


def test_a_file_without_candles_or_columns_is_named(tmp_path: Path) -> None:
    (tmp_path / "bittrex_ETH-BTC_5m.csv").write_text("timestamp,open,high,low,close,volume\n")
    with pytest.raises(DatasetError, match=r"bittrex_ETH-BTC_5m\.csv: no candles"):
        select(tmp_path)
    (tmp_path / "bittrex_ETH-BTC_5m.csv").write_text("timestamp,close\n1516423980000,0.09\n")
    lacks = r"bittrex_ETH-BTC_5m\.csv: line 1: the header lacks open, high, low, volume"
    with pytest.raises(DatasetError, match=lacks):
        select(tmp_path)


def test_the_replay_reveals_exactly_the_closed_candles_of_each_window_it_is_asked(tmp_path: Path) -> None:
    # the source finds a window by binary search on the series' open times: it must return what the plain
    # filter (`window`) returns, for 5m as recorded and 15m/1h built from it, across the hole between two windows
    copy("binanceusdm_BTC-USDT_5m.csv", tmp_path, "binance_BTC-USDT_5m_20230102.csv", slice(0, 2000))
    copy("binanceusdm_BTC-USDT_5m.csv", tmp_path, "binance_BTC-USDT_5m_20230115.csv", slice(3000, 5000))
    selection = select(tmp_path)
    clock = SimClock(selection.start)
    source = DatasetSource(selection, clock=clock)
    seen = 0
    for step in [0, 60, 300, 900, 3600, 7 * 3600, 24 * 3600] * 12:
        clock.advance(step)
        now = clock.now()
        for timeframe in ("5m", "15m", "1h"):
            for since, until in ((now - timedelta(hours=25), None), (now - timedelta(minutes=47), now),
                                 (now - timedelta(hours=3), now - timedelta(minutes=7))):
                got = source.fetch_ohlcv("BTC-USDT", timeframe, since, until)
                expected = window(source._candles("BTC-USDT", timeframe), timeframe, since, until, now)
                pd.testing.assert_frame_equal(got, expected)
                assert got.empty or got["ts"].iloc[-1] + pd.Timedelta(timeframe.replace("m", "min")) <= now
                seen += len(got)
    assert seen > 10_000  # the windows held candles, not only empty frames


def plan_for(folder: Path, **options: object) -> demo.Plan:
    """The plan of `python -m offline.demo --data folder` with these options (as argparse gives them)."""
    values = {"data": str(folder), "exchange": None, "symbols": None, "start": None, "hours": None,
              "phases": "0-4", "quick": False, "report": "r.html"}
    return demo.make_plan(argparse.Namespace(**{**values, **options}))


def test_phase_2_trades_every_pair_of_the_stretch_and_the_other_phases_the_five_longest(tmp_path: Path) -> None:
    # seven BTC pairs over one stretch: the five full records and two recorded from two days later
    for name in ("ADA", "ETC", "ETH", "LTC", "XLM"):
        copy(f"bittrex_{name}-BTC_5m.csv", tmp_path)
    for name, like in (("NEO", "ETH"), ("OMG", "LTC")):
        copy(f"bittrex_{like}-BTC_5m.csv", tmp_path, f"bittrex_{name}-BTC_5m.csv", slice(576, None))
    plan = plan_for(tmp_path)
    assert set(plan.selection.symbols) == {"ADA-BTC", "ETC-BTC", "ETH-BTC", "LTC-BTC", "XLM-BTC", "NEO-BTC",
                                           "OMG-BTC"}
    assert plan.core == ("ADA-BTC", "ETC-BTC", "ETH-BTC", "LTC-BTC", "XLM-BTC")
    # the pairs a user names, and a --quick run, are scanned by every phase
    named = plan_for(tmp_path, symbols="ETH-BTC,NEO-BTC")
    assert named.core == named.selection.symbols == ("ETH-BTC", "NEO-BTC")
    quick = plan_for(tmp_path, quick=True)
    assert quick.core == quick.selection.symbols and len(quick.core) == 5
