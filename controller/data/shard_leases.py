"""Shard leases in Postgres: which shards of the universe this controller may scan, renewed in the background.

`ShardLeases.held()` is called at the start of every cycle: it renews the leases held, drops any lost, and
takes what the spec allows (`i/n`: shard i; `auto/n`: one free or lapsed shard when holding none, and every
lapsed shard, i.e. one whose holder stopped renewing). Between cycles a daemon thread renews every
`lease_s / 3` seconds, so a lease outlives a live controller's longest pause but lapses `lease_s` after it
dies: a lease shorter than the candle period is taken over at the survivors' next cycle.

The leases decide who scans; they cannot by themselves stop a controller that paused past its lease from
emitting once more. The signals' unique key on the decision candle does: the second emission is a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from controller.data.shards import ShardSpec

logger = logging.getLogger(__name__)

Connect = Callable[[], psycopg.Connection]


class ShardLeases:
    """The leases of one controller (`holder`), on its own connection per call (a pooler may sit between)."""

    def __init__(self, connect: Connect, spec: ShardSpec, holder: str, lease_s: float) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        self.connect = connect
        self.spec = spec
        self.holder = holder
        self.lease_s = lease_s
        self._held: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.taken_over: list[int] = []  # shards taken from a holder whose lease lapsed, in order

    # --- the cycle -------------------------------------------------------------------------------

    def held(self) -> tuple[int, ...]:
        """Renew, take what the spec allows, and return the shards held now (sorted)."""
        with self._lock, self.connect() as conn:
            conn.autocommit = True
            self._renew(conn)
            n = self.spec.n
            if self.spec.shard is not None:
                if self.spec.shard not in self._held and self._acquire(conn, self.spec.shard):
                    self._held.add(self.spec.shard)
                return tuple(sorted(self._held))
            for (shard,) in conn.execute("select lapsed_shards(%s)", (n,)).fetchall():
                if shard not in self._held and self._acquire(conn, shard):
                    self._held.add(shard)
                    self.taken_over.append(shard)
                    logger.warning("took over a lapsed shard", extra={"shard": f"{shard}/{n}", "holder": self.holder})
            if not self._held:
                picked = conn.execute("select acquire_free_shard(%s, %s, %s)", (n, self.holder, self.lease_s)
                                      ).fetchone()[0]
                if picked is not None:
                    self._held.add(int(picked))
            return tuple(sorted(self._held))

    def _acquire(self, conn: psycopg.Connection, shard: int) -> bool:
        return bool(conn.execute("select acquire_shard(%s, %s, %s, %s)",
                                 (self.spec.n, shard, self.holder, self.lease_s)).fetchone()[0])

    def _renew(self, conn: psycopg.Connection) -> None:
        for shard in sorted(self._held):
            if not self._acquire(conn, shard):  # another controller took it while we were away
                self._held.discard(shard)
                logger.warning("shard lease lost", extra={"shard": f"{shard}/{self.spec.n}", "holder": self.holder})

    # --- between cycles --------------------------------------------------------------------------

    def start(self) -> None:
        """Renew in the background every lease_s / 3 until `stop()`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="shard-leases", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                with self._lock, self.connect() as conn:
                    conn.autocommit = True
                    self._renew(conn)
            except psycopg.Error as exc:  # the database is away: the next cycle says so; the lease may lapse
                logger.warning("shard lease renewal failed", extra={"error": str(exc), "holder": self.holder})

    def stop(self, release: bool = True) -> None:
        """Stop renewing; `release` frees the shards at once (a clean stop) instead of letting them lapse."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.lease_s)
        if not release:
            return
        with self._lock:
            try:
                with self.connect() as conn:
                    conn.autocommit = True
                    for shard in sorted(self._held):
                        conn.execute("select release_shard(%s, %s, %s)", (self.spec.n, shard, self.holder))
            except psycopg.Error as exc:
                logger.warning("shard release failed; the leases lapse instead", extra={"error": str(exc)})
            self._held.clear()
