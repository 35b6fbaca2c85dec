"""Sharded scanners on recorded candles and a real Postgres: disjoint symbols, leases, takeover, no double emit."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from controller.data import flags
from controller.data.shard_leases import ShardLeases
from controller.data.shards import ShardSpec, parse_spec, shard_of
from controller.data.storage.postgres import PostgresStore
from controller.ops.health import HealthConfig, Kind, assess, read_database
from controller.scan.pipeline import Scanner
from tests.support.clock import wait_for_database_time
from tests.support.scan import ENTRY_SCAN, SPECS, rows, scanner

BITTREX = ("ADA-BTC", "ETC-BTC", "ETH-BTC", "LTC-BTC", "XLM-BTC")


@pytest.fixture
def store(migrated_db: str) -> Iterator[PostgresStore]:
    with psycopg.connect(migrated_db) as conn:
        flags.sync(conn, SPECS, "test")
    adapter = PostgresStore(migrated_db)
    yield adapter
    adapter.close()


def leases(url: str, spec: str, holder: str, lease_s: float = 30.0) -> ShardLeases:
    return ShardLeases(lambda: psycopg.connect(url), parse_spec(spec), holder, lease_s)


def sharded(store: PostgresStore, gate: ShardLeases) -> Scanner:
    scan, _ = scanner(store, ENTRY_SCAN, symbols=BITTREX)
    scan.shards = gate
    return scan


def lease_expiry(url: str, n: int, shard: int) -> object:
    return rows(url, "select expires_at from shard_leases where n = %s and shard = %s", n, shard)[0][0]


def test_two_controllers_on_different_shards_scan_disjoint_symbols_and_together_all(store: PostgresStore,
                                                                                    migrated_db: str) -> None:
    first = sharded(store, leases(migrated_db, "0/2", "a")).scan()
    second = sharded(store, leases(migrated_db, "1/2", "b")).scan()

    assert first.shards == (0,) and second.shards == (1,)
    mine = {p.decision.symbol for p in first.planned}
    theirs = {p.decision.symbol for p in second.planned}
    assert mine and theirs and not mine & theirs and mine | theirs == set(BITTREX)
    assert all(shard_of(s, 2) == 0 for s in mine)
    scanned = rows(migrated_db, "select strategy, symbol, count(*) from scans group by 1, 2")
    assert {s for _, s, _ in scanned} == set(BITTREX) and all(c == 1 for *_, c in scanned)
    emitted = rows(migrated_db, "select symbol from signals where strategy = 'dca' order by symbol")
    assert ("ADA-BTC",) in emitted and ("ETH-BTC",) in emitted  # DCA enters both on this candle, one per shard
    beats = dict(rows(migrated_db, "select component, progress -> 'shards' from heartbeats"))
    assert beats == {"controller:a": [0], "controller:b": [1]}
    with psycopg.connect(migrated_db) as conn:  # `controller status` sees both, and no missing controller
        snapshot = read_database(conn, {})
    report = assess(snapshot.heartbeats, snapshot.now, HealthConfig())
    controllers = {c.name: c.kind for c in report.components if c.kind is Kind.CONTROLLER}
    assert controllers == {"controller:a": Kind.CONTROLLER, "controller:b": Kind.CONTROLLER}


def test_a_shard_whose_renewals_stop_is_taken_over_at_the_next_cycle_and_its_candle_is_not_queued_twice(
        store: PostgresStore, migrated_db: str) -> None:
    gate_a, gate_b = leases(migrated_db, "auto/2", "a", lease_s=1.0), leases(migrated_db, "auto/2", "b", lease_s=1.0)
    a, b = sharded(store, gate_a), sharded(store, gate_b)
    gate_a.start()
    gate_b.start()
    try:
        assert a.scan().shards == (0,)
        assert b.scan().shards == (1,)  # the two took different shards
        # a's thread renews between its cycles: past its lease, b still cannot take shard 0
        wait_for_database_time(migrated_db, lease_expiry(migrated_db, 2, 0))
        assert b.scan().shards == (1,)
        assert rows(migrated_db, "select holder from shard_leases where shard = 0") == [("a",)]

        gate_a.stop(release=False)  # a dies: no release, no more renewals
        wait_for_database_time(migrated_db, lease_expiry(migrated_db, 2, 0))
        before = set(rows(migrated_db, "select strategy, symbol from signals"))
        report = b.scan()  # b's very next cycle, on the candle a was scanning when it died
    finally:
        gate_a.stop(release=False)
        gate_b.stop()

    assert report.shards == (0, 1) and gate_b.taken_over == [0]
    assert report.already_emitted >= 1  # a had queued ADA-BTC's DCA entry on this candle: b's attempt is a no-op
    skipped = {(p.decision.strategy, p.decision.symbol) for p in report.planned
               if p.reason.startswith("duplicate decision")}
    assert ("dca", "ADA-BTC") in skipped and skipped <= before  # only what a (or b itself) had queued on this candle
    assert len(rows(migrated_db, "select id from signals")) == len(before) + report.emitted
    doubled = rows(migrated_db, "select strategy, symbol, candle_ts, count(*) from signals"
                                " group by 1, 2, 3 having count(*) > 1")
    assert doubled == []
    [(ada,)] = rows(migrated_db, "select count(*) from signals where strategy = 'dca' and symbol = 'ADA-BTC'")
    assert ada == 1
    assert rows(migrated_db, "select holder from shard_leases order by shard") == [(None,), (None,)]  # b released


def test_a_controller_with_every_shard_held_stands_by_and_takes_a_released_one(store: PostgresStore,
                                                                             migrated_db: str) -> None:
    holders = [leases(migrated_db, "auto/2", name) for name in ("a", "b")]
    assert [h.held() for h in holders] == [(0,), (1,)]
    standby = sharded(store, leases(migrated_db, "auto/2", "c"))
    fixed = sharded(store, leases(migrated_db, "1/2", "d"))

    first = standby.scan()
    assert first.skipped == "standby: every shard of 2 is held by another controller" and first.planned == []
    assert fixed.scan().skipped is not None  # its shard is b's while b renews
    assert rows(migrated_db, "select count(*) from scans") == [(0,)]

    holders[1].stop(release=True)  # b stops cleanly: shard 1 is free at once, no lease to wait out
    assert standby.scan().shards == (1,)


def test_a_controller_of_another_split_is_refused_while_the_first_split_is_live(store: PostgresStore,
                                                                              migrated_db: str) -> None:
    leases(migrated_db, "auto/2", "a").held()
    other = sharded(store, leases(migrated_db, "auto/3", "z"))
    report = other.scan()
    assert report.skipped is not None and "another split hold live leases (n = 2)" in report.skipped
    assert rows(migrated_db, "select count(*) from scans") == [(0,)]


def test_bad_lease_arguments_are_refused_by_name(migrated_db: str) -> None:
    with psycopg.connect(migrated_db) as conn, pytest.raises(psycopg.errors.InvalidParameterValue,
                                                             match=r"the shard must be 0 \.\. n-1"):
        conn.execute("select acquire_shard(2, 2, 'a', 10)")
    with pytest.raises(ValueError, match="lease_s must be positive"):
        ShardLeases(lambda: psycopg.connect(migrated_db), ShardSpec(2, 0), "a", 0)
