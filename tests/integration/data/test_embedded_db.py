"""The embedded Postgres launcher: start, find it running, stop it by its pid."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from controller.data.embedded_db import EmbeddedPostgres, debian_bindir


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="TEST_DATABASE_URL replaces the launcher")
def test_start_is_idempotent_listens_on_loopback_and_stop_ends_the_process(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", "demo", durable=False)
    try:
        info = server.start()
        assert server.start() == info  # a second start finds the running server
        assert server.status() == info
        with psycopg.connect(info.url) as conn:
            listen, dbname = conn.execute("select current_setting('listen_addresses'), current_database()").fetchone()
        assert listen == "127.0.0.1"
        assert dbname == "demo"
        bindir = debian_bindir()
        assert info.pg_cron == (bindir is not None and (bindir.parent / "lib" / "pg_cron.so").exists())

        assert server.stop() is True

        assert not pid_alive(info.pid)
        assert server.status() is None
        assert server.stop() is False
        # and it comes back with its data on the next start
        again = server.start()
        with psycopg.connect(again.url) as conn:
            assert conn.execute("select current_database()").fetchone()[0] == "demo"
    finally:
        server.destroy()


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="TEST_DATABASE_URL replaces the launcher")
def test_a_port_taken_between_picking_and_starting_is_replaced_by_another(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two test workers start their servers at once: a port can be free when picked and taken when Postgres
    binds it. The start picks another instead of failing. (The race is forced: the first pick is a port that
    a socket here holds.)"""
    import socket

    from controller.data import embedded_db

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        picks = iter([taken])
        real = embedded_db.free_port
        monkeypatch.setattr(embedded_db, "free_port", lambda: next(picks, None) or real())
        server = EmbeddedPostgres(tmp_path / "pg", "demo", durable=False)
        try:
            info = server.start()
            assert info.port != taken
            with psycopg.connect(info.url) as conn:
                assert conn.execute("select current_database()").fetchone()[0] == "demo"
        finally:
            server.destroy()
