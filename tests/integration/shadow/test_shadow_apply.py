"""Recommendations reach trading: an applied one changes the very next scan's decision; with shadow.apply
off nothing changes; a rollback (by hand or by a trigger) makes the previous parameters active again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from controller.config import PROJECT_ROOT, ControllerConfig, load_model
from controller.data import flags
from controller.data.market_data import ReplaySource, SimClock, ohlcv_dir
from controller.data.storage.postgres import PostgresStore
from controller.scan.pipeline import Scanner
from controller.scan.regime import RegimeParams
from controller.scan.signals import QuoteSizing, SizingParams
from controller.scan.strategy_params import StrategiesConfig, load_strategies
from shadow.apply import ActiveParams, ApplyRefused, apply, monitor, rollback, write_recommendation
from shadow.evaluate import EvaluationReport, record_decisions, sync_variations
from shadow.recommend import Calibration, Evidence, Recommendation, recommend
from shadow.settings import RecommendConfig, RollbackConfig, ShadowSettings
from shadow.stats import Paired, Summary
from shadow.variations import CHAMPION, Change, Variation, vary
from tests.support.scan import scanner

# DCA on ADA-BTC (15m): at 22:15 on 2018-01-11 the drop from the 16-bar high is 3.57 %, under the
# champion's 3.75 %: a skip. DCA_DROPS_3 (3.0 %) enters there.
SKIPPED = datetime(2018, 1, 11, 22, 15, tzinfo=UTC)
SPECS = load_model(flags.FlagsFile, PROJECT_ROOT / "conf" / "flags.yml")
# The bittrex files hold no BTC market: act as CAUTION, and size BTC-quoted pairs in BTC.
CONFIG = ControllerConfig(regime=RegimeParams(on_missing="caution"),
                          sizing=SizingParams(quotes={"BTC": QuoteSizing(amount=0.002, balance=0.2)}))


@pytest.fixture
def url(migrated_db: str) -> str:
    with psycopg.connect(migrated_db) as conn:
        flags.sync(conn, SPECS, "test")
    return migrated_db


@pytest.fixture
def store(url: str) -> Iterator[PostgresStore]:
    adapter = PostgresStore(url)
    yield adapter
    adapter.close()


@pytest.fixture(scope="module")
def champion() -> StrategiesConfig:
    return load_strategies()


def dca_scanner(store: PostgresStore, url: str, champion: StrategiesConfig, canary_seed: int | None = None) -> Scanner:
    clock = SimClock(SKIPPED)
    return Scanner(config=CONFIG, strategy_config=champion, store=store, simulated=True,
                   source=ReplaySource(ohlcv_dir(), "bittrex", clock=clock), exchange="bittrex",
                   symbols=("ADA-BTC",), clock=clock.now,
                   flag_defaults={n: s.default for n, s in SPECS.flags.items()},
                   params_source=ActiveParams(lambda: psycopg.connect(url)), canary_seed=canary_seed)


def scan_dca(store: PostgresStore, url: str, champion: StrategiesConfig) -> tuple[str, str, str]:
    """One scan of ADA-BTC at SKIPPED; the DCA scan row's (decision, reason, params_hash)."""
    dca_scanner(store, url, champion).scan()
    with psycopg.connect(url) as conn:
        return conn.execute("select decision, reason, params_hash from scans where strategy = 'dca'"
                            " order by id desc limit 1").fetchone()


def replay(url: str, champion: StrategiesConfig, variations: list[Variation]) -> None:
    """The evaluator's decision step for `variations` on the scans so far: registered and replayed."""
    with psycopg.connect(url) as conn:
        ids = sync_variations(conn, [Variation(CHAMPION, "dca", champion.dca), *variations])
        record_decisions(conn, champion, [Variation(CHAMPION, "dca", champion.dca), *variations], ids,
                         SKIPPED - timedelta(days=1), SKIPPED + timedelta(days=1), EvaluationReport())


def propose(url: str, champion: StrategiesConfig, *, replayed: bool = True) -> int:
    """A HIGH-tier recommendation drawn from DCA_DROPS_3, written as the evaluator writes it."""
    drops = Variation("DCA_DROPS_3", "dca", vary(champion.dca, Change(set={"min_drop_pct": 3.0}), "test"))
    if replayed:
        replay(url, champion, [drops])
    summary = Summary(120, 72, 60.0, 0.5, 60.0, 0.3, 2.0)
    base = Summary(120, 54, 45.0, 0.2, 24.0, 0.1, 3.0)
    evidence = Evidence("DCA_DROPS_3", summary, base, Paired(120, 0.3, 0.1, 0.5, 0.002), 0.004, 4.0)
    rec = recommend("dca", champion.dca, {"DCA_DROPS_3": drops}, [evidence], Calibration(20, 0.95),
                    now=SKIPPED, regime_changes=[], applied=[], settings=ShadowSettings(), config=RecommendConfig())
    assert isinstance(rec, Recommendation)
    with psycopg.connect(url) as conn:
        return write_recommendation(conn, champion.dca, rec)


def set_apply(url: str, on: bool) -> dict:
    with psycopg.connect(url) as conn:
        flags.set_flag(conn, SPECS, "shadow.apply", "true" if on else "false", "test")
        return flags.live_values(conn, SPECS)


def test_apply_changes_the_next_decision_and_rollback_restores_it(store: PostgresStore, url: str,
                                                                  champion: StrategiesConfig) -> None:
    before = scan_dca(store, url, champion)
    assert before[0] == "skip" and "smaller than 3.75%" in before[1]

    rec_id = propose(url, champion)
    with psycopg.connect(url) as conn:
        version = apply(conn, rec_id, champion, set_apply(url, True), SKIPPED)
        status, recorded_version = conn.execute("select status, version from recommendations where id = %s",
                                                (rec_id,)).fetchone()
        replayed = conn.execute("select count(*) from shadow_outcomes o join shadow_variations v"
                                " on v.id = o.variation_id where v.name = 'DCA_DROPS_3' and o.would_enter"
                                " and v.params_hash = %s", (vary(champion.dca, Change(set={"min_drop_pct": 3.0}),
                                                                 "test").params_hash(),)).fetchone()[0]
    assert (status, recorded_version) == ("applied", version)
    assert replayed == 1  # the applied set is the one replayed: it entered the scan CHAMPION skipped

    after = scan_dca(store, url, champion)
    assert after[0] == "enter" and after[2] != before[2], after  # the next scan decided with the new version
    with psycopg.connect(url) as conn:
        thresholds = conn.execute("select thresholds ->> 'min_drop_pct' from scans where strategy = 'dca'"
                                  " order by id desc limit 1").fetchone()[0]
        assert float(thresholds) == 3.0
        back_id = rollback(conn, rec_id, champion, "by hand", SKIPPED + timedelta(hours=1))
        undone = conn.execute("select rollback_of, from_params_hash, to_params_hash, status from recommendations"
                              " where id = %s", (back_id,)).fetchone()
        original = conn.execute("select status from recommendations where id = %s", (rec_id,)).fetchone()[0]
    assert undone[0] == rec_id and undone[3] == "applied" and original == "rolled_back"

    restored = scan_dca(store, url, champion)
    assert restored[2] == before[2] and "smaller than 3.75%" in restored[1]
    with psycopg.connect(url) as conn, pytest.raises(ApplyRefused, match="only an applied change rolls back"):
        rollback(conn, rec_id, champion, "twice", SKIPPED + timedelta(hours=2))


def test_with_shadow_apply_off_nothing_changes(store: PostgresStore, url: str, champion: StrategiesConfig) -> None:
    before = scan_dca(store, url, champion)
    rec_id = propose(url, champion)
    with psycopg.connect(url) as conn, pytest.raises(ApplyRefused, match=r"shadow\.apply is off"):
        apply(conn, rec_id, champion, set_apply(url, False), SKIPPED)
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from strategy_params_activations").fetchone()[0] == 0
        assert conn.execute("select status from recommendations where id = %s", (rec_id,)).fetchone()[0] == "proposed"
    after = scan_dca(store, url, champion)
    assert after[2] == before[2] and after[0] == "skip"


def _trade(conn: psycopg.Connection, closed_at: datetime, reason: str, pnl: float) -> None:
    signal_id = conn.execute(
        "insert into signals (expires_at, strategy, exchange, symbol, side, price, quote_amount, take_profit_pct,"
        " confidence, status) values (%s, 'dca', 'bittrex', 'ADA-BTC', 'buy', 1, 50, 3, 0.5, 'closed') returning id",
        (closed_at,)).fetchone()[0]
    conn.execute("insert into trades (signal_id, exchange, symbol, side, amount, entry_price, exit_price, pnl_quote,"
                 " pnl_pct, exit_reason, opened_at, closed_at) values (%s, 'bittrex', 'ADA-BTC', 'buy', 50, 1, 1,"
                 " %s, %s, %s, %s, %s)", (signal_id, pnl / 2, pnl, reason, closed_at - timedelta(hours=1), closed_at))


def test_a_rare_run_of_losing_exits_after_a_change_rolls_it_back_automatically(store: PostgresStore, url: str,
                                                                                  champion: StrategiesConfig) -> None:
    before = scan_dca(store, url, champion)
    rec_id = propose(url, champion)
    applied_at = datetime.now(UTC) - timedelta(hours=6)
    with psycopg.connect(url) as conn:
        apply(conn, rec_id, champion, set_apply(url, True), applied_at)
        # twelve winners before the change: a run of 4 losses is below 1 % in 50 trades at that loss rate
        for i in range(12):
            _trade(conn, applied_at - timedelta(hours=24 - i), "take_profit", 3.0)
        for hours, reason in [(1, "stop_loss"), (2, "trailing_stop"), (3, "time_limit")]:
            _trade(conn, applied_at + timedelta(hours=hours), reason, -1.0)
        assert monitor(conn, champion, RollbackConfig(), applied_at + timedelta(hours=3.5)) == []  # three: wait
        _trade(conn, applied_at + timedelta(hours=4), "trailing_stop", -1.0)
        [(rolled, reason)] = monitor(conn, champion, RollbackConfig(), applied_at + timedelta(hours=4.5))
    assert rolled == rec_id and reason.startswith("4 consecutive losing exits since the change")
    assert scan_dca(store, url, champion)[2] == before[2]


def test_a_parameter_set_that_was_never_replayed_is_not_applied(store: PostgresStore, url: str,
                                                                 champion: StrategiesConfig) -> None:
    scan_dca(store, url, champion)
    rec_id = propose(url, champion, replayed=False)
    with psycopg.connect(url) as conn, pytest.raises(ApplyRefused, match="never replayed as a variation"):
        apply(conn, rec_id, champion, set_apply(url, True), SKIPPED)
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from strategy_params_activations").fetchone()[0] == 0


# BTC-USDT on binanceusdm falls 3.7 % in the hour to 16:40 on 2023-01-18: the regime guard reads PANIC.
CRASH = datetime(2023, 1, 18, 16, 45, tzinfo=UTC)


def test_a_panic_after_a_change_rolls_it_back_with_the_reason(store: PostgresStore, url: str,
                                                              champion: StrategiesConfig) -> None:
    before = scan_dca(store, url, champion)
    rec_id = propose(url, champion)
    applied_at = CRASH - timedelta(hours=6)
    with psycopg.connect(url) as conn:
        apply(conn, rec_id, champion, set_apply(url, True), applied_at)
    # the scan loop on the recorded BTC market, with the shipped regime thresholds, records what it reads
    calm, clock = scanner(store, applied_at + timedelta(hours=1), exchange="binanceusdm", symbols=("BTC-USDT",),
                          config=ControllerConfig(), simulated=True)
    calm.scan()
    with psycopg.connect(url) as conn:
        assert monitor(conn, champion, RollbackConfig(), clock.now()) == []
    clock.set(CRASH)
    calm.scan()
    with psycopg.connect(url) as conn:
        regimes = [r for (r,) in conn.execute("select distinct features ->> 'regime' from scans"
                                              " where exchange = 'binanceusdm' order by 1").fetchall()]
        [(rolled, reason)] = monitor(conn, champion, RollbackConfig(), CRASH + timedelta(minutes=5))
        recorded = conn.execute("select evidence ->> 'rollback' from recommendations where rollback_of = %s",
                                (rec_id,)).fetchone()[0]
    assert "PANIC" in regimes and len(regimes) == 2, regimes
    assert rolled == rec_id and reason.startswith("emergency: the regime turned PANIC at 2023-01-18 16:45 UTC")
    assert "BTC-USDT: 1h -3" in reason and recorded == reason
    assert scan_dca(store, url, champion)[2] == before[2]


def test_an_underperforming_change_moves_half_way_back_then_fully_when_it_does_not_recover(
        store: PostgresStore, url: str, champion: StrategiesConfig) -> None:
    before = scan_dca(store, url, champion)
    rec_id = propose(url, champion)
    config, window = RollbackConfig(), timedelta(hours=RollbackConfig().monitor_h)
    with psycopg.connect(url) as conn:
        apply(conn, rec_id, champion, set_apply(url, True), SKIPPED)
        for i in range(20):  # the book before the change: +1 % a trade on average
            _trade(conn, SKIPPED - timedelta(hours=40 - i), "take_profit" if i % 2 else "trailing_stop",
                   3.0 if i % 2 else -1.0)
        for i in range(20):  # after it: -0.5 % a trade, never a long losing run, the win rate unchanged
            _trade(conn, SKIPPED + timedelta(hours=1 + i), "take_profit" if i % 2 else "trailing_stop",
                   0.5 if i % 2 else -1.5)
        assert monitor(conn, champion, config, SKIPPED + timedelta(hours=30)) == []  # nothing immediate
        [(halved, reason)] = monitor(conn, champion, config, SKIPPED + window + timedelta(hours=1))
        half = conn.execute("select id, evidence, decided_at from recommendations where rollback_of = %s",
                            (rec_id,)).fetchone()
        active = conn.execute("select params -> 'default' ->> 'min_drop_pct' from dashboard_active_strategy_params"
                              " where strategy = 'dca'").fetchone()[0]
        status = conn.execute("select status from recommendations where id = %s", (rec_id,)).fetchone()[0]
    assert halved == rec_id and reason.startswith("gradual: mean P&L -0.50 % per trade over 20 trades in 48 h")
    assert half[1]["revert_share"] == 0.5 and half[1]["rollback"] == reason and status == "applied"
    assert float(active) == pytest.approx(3.375)  # half-way from 3.0 back to 3.75
    halfway = scan_dca(store, url, champion)
    assert halfway[0] == "enter" and halfway[2] not in (before[2],)  # 3.57 % is deeper than 3.375 %

    with psycopg.connect(url) as conn:
        assert monitor(conn, champion, config, half[2] + window - timedelta(hours=1)) == []  # its window runs
        for i in range(20):  # no recovery after the half-way revert
            _trade(conn, half[2] + timedelta(hours=1 + i), "trailing_stop" if i % 2 else "take_profit",
                   -1.5 if i % 2 else 0.5)
        [(rolled, final)] = monitor(conn, champion, config, half[2] + window + timedelta(hours=1))
        status = conn.execute("select status from recommendations where id = %s", (rec_id,)).fetchone()[0]
        recorded = conn.execute("select evidence ->> 'rollback' from recommendations where rollback_of = %s"
                                " and not evidence ? 'revert_share'", (rec_id,)).fetchone()[0]
        assert monitor(conn, champion, config, half[2] + window + timedelta(hours=2)) == []  # once
    assert rolled == rec_id and final.startswith("gradual: no recovery in 48 h after the half-way revert")
    assert status == "rolled_back" and recorded == final
    assert scan_dca(store, url, champion)[2] == before[2]


def test_a_half_reverted_change_that_recovers_stays(store: PostgresStore, url: str,
                                                    champion: StrategiesConfig) -> None:
    scan_dca(store, url, champion)
    rec_id = propose(url, champion)
    config, window = RollbackConfig(), timedelta(hours=RollbackConfig().monitor_h)
    with psycopg.connect(url) as conn:
        apply(conn, rec_id, champion, set_apply(url, True), SKIPPED)
        for i in range(20):
            _trade(conn, SKIPPED - timedelta(hours=40 - i), "take_profit", 3.0 if i % 2 else -1.0)
        for i in range(20):
            _trade(conn, SKIPPED + timedelta(hours=1 + i), "take_profit", 0.5 if i % 2 else -1.5)
        assert len(monitor(conn, champion, config, SKIPPED + window + timedelta(hours=1))) == 1
        halved_at = conn.execute("select decided_at from recommendations where rollback_of = %s",
                                 (rec_id,)).fetchone()[0]
        for i in range(20):  # after the half-way revert the book earns as before the change
            _trade(conn, halved_at + timedelta(hours=1 + i), "take_profit", 3.0 if i % 2 else -1.0)
        assert monitor(conn, champion, config, halved_at + window + timedelta(hours=1)) == []
        status = conn.execute("select status from recommendations where id = %s", (rec_id,)).fetchone()[0]
    assert status == "applied"


def test_a_canary_puts_a_random_share_of_decisions_on_the_new_parameters_and_records_the_arm(
        store: PostgresStore, url: str, champion: StrategiesConfig) -> None:
    before = scan_dca(store, url, champion)
    rec_id = propose(url, champion)
    new_hash = vary(champion.dca, Change(set={"min_drop_pct": 3.0}), "test").params_hash_for("ADA-BTC")
    with psycopg.connect(url) as conn:
        apply(conn, rec_id, champion, set_apply(url, True), SKIPPED, canary_share=0.5)
        first = conn.execute("select max(id) from scans").fetchone()[0]
    scanner = dca_scanner(store, url, champion, canary_seed=3)
    for _ in range(30):
        scanner.scan()
    with psycopg.connect(url) as conn:
        rows = conn.execute("select features ->> 'params_arm', params_hash, decision from scans"
                            " where strategy = 'dca' and id > %s", (first,)).fetchall()
        signal = conn.execute("select g.features ->> 'params_arm', g.params_hash from signals g"
                              " join scans s on s.signal_id = g.id where s.id > %s", (first,)).fetchall()
    arms = [arm for arm, _, _ in rows]
    assert 5 <= arms.count("canary") <= 25 and arms.count("control") == 30 - arms.count("canary"), arms
    for arm, params_hash, decision in rows:  # each decision was taken with its arm's parameters
        assert params_hash == (new_hash if arm == "canary" else before[2])
        assert decision in (("enter", "blocked") if arm == "canary" else ("skip",))
    assert signal == [("canary", new_hash)]  # the one signal (the rest are duplicates) carries its arm

    with psycopg.connect(url) as conn:  # the window passes without a rollback: a full rollout
        assert monitor(conn, champion, RollbackConfig(), SKIPPED + timedelta(hours=49)) == []
        last = conn.execute("select max(id) from scans").fetchone()[0]
    for _ in range(5):
        scanner.scan()
    with psycopg.connect(url) as conn:
        after = conn.execute("select features ->> 'params_arm', params_hash from scans where strategy = 'dca'"
                             " and id > %s", (last,)).fetchall()
    assert after == [(None, new_hash)] * 5
