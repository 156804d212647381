"""The test PostgreSQL server (OPTBENCH_TEST_POSTGRES, started by .ci/postgres.sh) as something tests may
take away: stop it, start it again, terminate its backends. Only for a throwaway server of one's own: the
outage tests and the fault harness stop it."""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import subprocess
import threading
import time
from urllib.parse import urlparse

URL = os.environ.get("OPTBENCH_TEST_POSTGRES")


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else None


def _sql(query: str, url: str | None = None) -> list[tuple]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url or URL, poolclass=sqlalchemy.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(sqlalchemy.text(query)))
            conn.commit()
            return rows
    finally:
        engine.dispose()


class Server:
    """The server behind URL: stop() and start() as its owner (user postgres when run as root)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = urlparse(url).port or 5432
        self.data = _sql("SHOW data_directory", url)[0][0]
        self.sockets = _sql("SHOW unix_socket_directories", url)[0][0].split(",")[0].strip()
        self.max_connections = _sql("SHOW max_connections", url)[0][0]

    def _ctl(self, *args: str) -> None:
        command = " ".join(shlex.quote(a) for a in [_bin("pg_ctl") or "pg_ctl", "-D", self.data, *args])
        if os.geteuid() == 0:
            command = f"su postgres -s /bin/bash -c {shlex.quote(command)}"
        subprocess.run(command, shell=True, check=True, capture_output=True, timeout=120)

    def up(self) -> bool:
        try:
            _sql("SELECT 1", self.url)
        except Exception:  # noqa: BLE001
            return False
        return True

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast", "-w")

    def start(self) -> None:
        if self.up():
            return
        options = f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -c max_connections={self.max_connections}"
        self._ctl("start", "-w", "-l", os.path.join(os.path.dirname(self.data.rstrip("/")), "log"), "-o", options)

    @contextlib.contextmanager
    def kept(self):
        """Whatever the block does to the server, it is up again afterwards."""
        try:
            yield self
        finally:
            self.start()


def server() -> Server | None:
    """The test server, if there is one this process may stop and start (root or its owner, pg_ctl)."""
    if not URL or not _bin("pg_ctl"):
        return None
    try:
        return Server(URL)
    except Exception:  # noqa: BLE001 -- not reachable, or not ours to control
        return None


def terminate_backends(url: str) -> int:
    """pg_terminate_backend of every other connection to the database: what a DBA, a failover or a pooler
    restart does to clients. Returns how many were terminated."""
    database = urlparse(url).path.lstrip("/")
    rows = _sql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()",
        url,
    )
    return int(rows[0][0])


@contextlib.contextmanager
def terminating(url: str, every: float = 0.5):
    """Backends terminated in a loop while the block runs; yields a list that counts them."""
    stop, counted = threading.Event(), []

    def loop() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):
                counted.append(terminate_backends(url))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield counted
    finally:
        stop.set()
        thread.join()


def wait_until(predicate, timeout: float = 180, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(step)
