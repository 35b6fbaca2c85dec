"""Debian's pgbouncer in transaction mode on a loopback port, as Supabase's transaction pooler (port 6543) runs:
no session state between transactions, no prepared statements, no LISTEN. For the tests and bench/load.py."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

EXECUTOR_LOGIN = "bench_executor"  # a login member of `executor`, for what must log in as the bot's role


def binary() -> str | None:
    """pgbouncer's path, or None when it is not installed."""
    return shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def pgbouncer(server_url: str) -> Iterator[str]:
    """Debian's pgbouncer in transaction mode on a loopback port in front of `server_url`; yields its URL."""
    program = binary()
    if program is None:
        raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    target = psycopg.conninfo.conninfo_to_dict(server_url)
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    port = free_port()
    (folder / "users.txt").write_text(f'"{target.get("user", "postgres")}" ""\n"{EXECUTOR_LOGIN}" ""\n')
    (folder / "pgbouncer.ini").write_text(f"""[databases]
* = host={target.get("host", "127.0.0.1")} port={target.get("port", 5432)}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {folder / "users.txt"}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
""")
    argv = [program, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses root, as Postgres does
        shutil.chown(folder, "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres")
        argv = ["runuser", "-u", "postgres", "--", *argv]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = str(psycopg.conninfo.make_conninfo(server_url, host="127.0.0.1", port=str(port)))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                psycopg.connect(url, prepare_threshold=None, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "pgbouncer.log").read_text() if (folder / "pgbouncer.log").exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {log[-500:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
