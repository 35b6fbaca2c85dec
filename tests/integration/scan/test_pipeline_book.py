"""The scanner's wiring of what is open and what recently stopped out: caps, exposure, cooldown and ban.

The pure rules (`plan`, `size_for`, `symbol_block`) have unit tests; these check that the scanner feeds them
the real book from the database (open signals, closed trades) and not an empty one. Each test seeds the
queue, scans the recorded candle on which DCA wants both ADA-BTC and ETH-BTC (ETH-BTC first: it ranks
higher), and asserts what was emitted and why the rest was not.

Sizing is per quote currency: these BTC-quoted pairs use a BTC rule of 50 per entry out of 10000 (round
numbers, not realistic BTC amounts), and the caps count what is open in BTC only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from bridge.schemas import NewSignal
from controller.config import PROJECT_ROOT, ControllerConfig, load_model
from controller.data import flags
from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir
from controller.data.storage.postgres import PostgresStore
from controller.scan.pipeline import Scanner
from controller.scan.regime import ProtectionParams, RegimeParams
from controller.scan.signals import QuoteSizing, SizingParams
from controller.scan.strategy_params import load_strategies

# On the recorded bittrex data DCA (15m) enters ADA-BTC and ETH-BTC on the candle 00:00-00:15 of 2018-01-11,
# 25 each (50 halved: no BTC-USDT candles in that data, so the regime is unknown and regime.on_missing
# is set to act as CAUTION).
ENTRY_SCAN = datetime(2018, 1, 11, 0, 15, tzinfo=UTC)
SPECS = load_model(flags.FlagsFile, PROJECT_ROOT / "conf" / "flags.yml")


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    with psycopg.connect(migrated_db) as conn:
        flags.sync(conn, SPECS, "test")
        flags.set_flag(conn, SPECS, "strategies.channel.enabled", "false", "test")  # DCA only: fewer moving parts
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


def scan(store: PostgresStore, *, sizing: SizingParams | None = None,
         protection: ProtectionParams | None = None) -> dict[str, tuple[str, str]]:
    """One scan at ENTRY_SCAN; returns symbol -> (outcome, reason) of DCA's decisions."""
    clock = SimClock(ENTRY_SCAN)
    config = ControllerConfig(sizing=sizing or sizing_btc(), protection=protection or ProtectionParams(),
                              regime=RegimeParams(on_missing="caution"))
    scanner = Scanner(config=config, strategy_config=load_strategies(), store=store,
                      source=ReplaySource(ohlcv_dir(), "bittrex", clock=clock), exchange="bittrex",
                      symbols=("ADA-BTC", "ETH-BTC"), clock=clock.now,
                      flag_defaults={n: s.default for n, s in SPECS.flags.items()})
    report = scanner.scan()
    return {p.decision.symbol: (p.outcome, p.reason) for p in report.planned if p.decision.strategy == "dca"}


def sizing_btc(balance: float = 10_000.0, **caps: float) -> SizingParams:
    return SizingParams(quotes={"BTC": QuoteSizing(amount=50.0, balance=balance)}, **caps)


def seed_signal(store: PostgresStore, url: str, *, strategy: str, symbol: str, status: str = "new",
                exchange: str = "bittrex", quote_amount: float = 10.0) -> str:
    signal_id = store.emit_signal(NewSignal(
        strategy=strategy, exchange=exchange, symbol=symbol, side="buy", price=1.0, quote_amount=quote_amount,
        take_profit_pct=2, stop_loss_pct=1, expires_at=datetime.now(UTC) + timedelta(hours=1), confidence=0.5))
    if status != "new":
        with psycopg.connect(url) as conn:
            conn.execute("update signals set status = %s, claimed_by = 'bot-seed',"
                         " reject_reason = case when %s = 'rejected' then 'seeded' end where id = %s",
                         (status, status, signal_id))
    return str(signal_id)


def seed_closed_trade(store: PostgresStore, url: str, *, symbol: str, exit_reason: str, closed_at: datetime,
                      strategy: str = "seed") -> None:
    signal_id = seed_signal(store, url, strategy=strategy, symbol=symbol, status="closed")
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, fees_quote,"
            " pnl_quote, pnl_pct, exit_reason, opened_at, closed_at)"
            " values (%s, 'bittrex', %s, 'buy', 1, 1, 1, 0, 0, 0, %s, %s, %s)",
            (signal_id, symbol, exit_reason, closed_at - timedelta(hours=1), closed_at))


def emitted(url: str) -> list[tuple[str, float]]:
    with psycopg.connect(url) as conn:
        return [(s, float(q)) for s, q in conn.execute(
            "select symbol, quote_amount from signals where strategy = 'dca' and exchange = 'bittrex'"
            " and symbol in ('ADA-BTC', 'ETH-BTC') order by symbol").fetchall()]


def test_with_an_empty_book_both_entries_are_emitted(store: PostgresStore, migrated_db: str) -> None:
    outcomes = scan(store)
    assert {s: o for s, (o, _) in outcomes.items()} == {"ADA-BTC": "enter", "ETH-BTC": "enter"}
    assert emitted(migrated_db) == [("ADA-BTC", 25.0), ("ETH-BTC", 25.0)]


def test_open_signals_of_any_open_status_fill_the_per_symbol_cap(store: PostgresStore, migrated_db: str) -> None:
    for strategy, status in (("seed-a", "new"), ("seed-b", "claimed"), ("seed-c", "executing")):
        seed_signal(store, migrated_db, strategy=strategy, symbol="ADA-BTC", status=status)
    # closed and rejected signals are not open: they must not count against ETH-BTC
    for strategy, status in (("seed-a", "closed"), ("seed-b", "rejected"), ("seed-c", "expired")):
        seed_signal(store, migrated_db, strategy=strategy, symbol="ETH-BTC", status=status)

    outcomes = scan(store)

    assert outcomes["ADA-BTC"] == ("blocked", "max open positions for ADA-BTC reached (3)")
    assert outcomes["ETH-BTC"][0] == "enter"
    assert emitted(migrated_db) == [("ETH-BTC", 25.0)]


def test_open_signals_count_against_the_strategy_cap_and_each_entry_fills_it(store: PostgresStore,
                                                                               migrated_db: str) -> None:
    seed_signal(store, migrated_db, strategy="dca", symbol="XRP-BTC", status="executing")
    seed_signal(store, migrated_db, strategy="dca", symbol="LTC-BTC", status="claimed")

    outcomes = scan(store, sizing=sizing_btc(max_open_per_strategy=3))

    # ETH-BTC ranks first and takes the last place; ADA-BTC then finds the strategy full
    assert outcomes["ETH-BTC"][0] == "enter"
    assert outcomes["ADA-BTC"] == ("blocked", "max open BTC positions for dca reached (3)")
    assert emitted(migrated_db) == [("ETH-BTC", 25.0)]


def test_open_signals_count_against_the_total_cap(store: PostgresStore, migrated_db: str) -> None:
    seed_signal(store, migrated_db, strategy="seed-a", symbol="XRP-BTC")
    seed_signal(store, migrated_db, strategy="seed-b", symbol="XRP-BTC", exchange="binance")

    outcomes = scan(store, sizing=sizing_btc(max_open_total=3))

    assert outcomes["ETH-BTC"][0] == "enter"
    assert outcomes["ADA-BTC"] == ("blocked", "max open BTC positions reached (3/3)")


def test_signals_open_in_another_quote_count_against_neither_cap(store: PostgresStore, migrated_db: str) -> None:
    seed_signal(store, migrated_db, strategy="dca", symbol="XRP-USDT", quote_amount=5000.0)
    seed_signal(store, migrated_db, strategy="seed-b", symbol="LTC-USDT", quote_amount=5000.0, status="executing")

    # 200 BTC allowed (400 x 0.5): exactly two entries with their grids (4 x 25 each)
    outcomes = scan(store, sizing=sizing_btc(balance=400.0, max_open_total=2, max_open_per_strategy=2))

    assert {s: o for s, (o, _) in outcomes.items()} == {"ADA-BTC": "enter", "ETH-BTC": "enter"}
    assert emitted(migrated_db) == [("ADA-BTC", 25.0), ("ETH-BTC", 25.0)]


def test_a_pair_whose_quote_has_no_sizing_is_skipped_and_says_so(store: PostgresStore, migrated_db: str) -> None:
    outcomes = scan(store, sizing=SizingParams())  # USD-like quotes only

    assert outcomes == {"ADA-BTC": ("skip", "no sizing for quote BTC"), "ETH-BTC": ("skip", "no sizing for quote BTC")}
    assert emitted(migrated_db) == []


def test_open_exposure_counts_against_the_balance_share(store: PostgresStore, migrated_db: str) -> None:
    # 200 allowed (1000 x 0.2); 60 already open leaves room for one entry of 25 with its DCA grid of 3 x 25
    # (the whole grid counts: 100 an entry), not two
    seed_signal(store, migrated_db, strategy="seed-a", symbol="XRP-BTC", quote_amount=35.0)
    seed_signal(store, migrated_db, strategy="seed-b", symbol="LTC-BTC", quote_amount=25.0, status="executing")

    outcomes = scan(store, sizing=sizing_btc(balance=1000.0, max_balance_share=0.2))

    assert outcomes["ETH-BTC"][0] == "enter"
    assert outcomes["ADA-BTC"] == ("blocked", "exposure cap: 160 BTC open of 200 BTC allowed")
    assert emitted(migrated_db) == [("ETH-BTC", 25.0)]


def test_a_recent_stop_loss_cools_its_symbol_down(store: PostgresStore, migrated_db: str) -> None:
    seed_closed_trade(store, migrated_db, symbol="ADA-BTC", exit_reason="stop_loss",
                      closed_at=ENTRY_SCAN - timedelta(hours=1))
    seed_closed_trade(store, migrated_db, symbol="ETH-BTC", exit_reason="take_profit",
                      closed_at=ENTRY_SCAN - timedelta(hours=1))

    outcomes = scan(store)

    assert outcomes["ADA-BTC"] == ("blocked", "cooling down until 2018-01-11 03:15 after a stop loss (4 h for large)")
    assert outcomes["ETH-BTC"][0] == "enter"
    assert emitted(migrated_db) == [("ETH-BTC", 25.0)]


def test_the_cooldown_length_comes_from_the_config(store: PostgresStore, migrated_db: str) -> None:
    seed_closed_trade(store, migrated_db, symbol="ADA-BTC", exit_reason="stop_loss",
                      closed_at=ENTRY_SCAN - timedelta(hours=1))

    outcomes = scan(store, protection=ProtectionParams(cooldown_after_stop_h=0.5))

    assert outcomes["ADA-BTC"][0] == "enter"


def test_three_stop_losses_in_a_row_ban_the_symbol_after_the_cooldown_ends(store: PostgresStore,
                                                                            migrated_db: str) -> None:
    for hours_ago, strategy in ((20, "seed-a"), (12, "seed-b"), (6, "seed-c")):
        seed_closed_trade(store, migrated_db, symbol="ADA-BTC", exit_reason="stop_loss",
                          closed_at=ENTRY_SCAN - timedelta(hours=hours_ago), strategy=strategy)
    # two stops then a win: the streak is broken, no ban and no cooldown
    for hours_ago, strategy, reason in ((10, "seed-a", "stop_loss"), (9, "seed-b", "stop_loss"),
                                        (8, "seed-c", "take_profit")):
        seed_closed_trade(store, migrated_db, symbol="ETH-BTC", exit_reason=reason,
                          closed_at=ENTRY_SCAN - timedelta(hours=hours_ago), strategy=strategy)

    outcomes = scan(store)

    assert outcomes["ADA-BTC"] == ("blocked", "banned until 2018-01-11 18:15 after 3 consecutive stop losses")
    assert outcomes["ETH-BTC"][0] == "enter"
