"""A throwaway PostgreSQL cluster for tests: initdb into a temp dir, pg_ctl on a free loopback port, stopped at exit.

Uses the server binaries of Debian's ``postgresql`` package (``make test`` installs it). When the tests run as
root the cluster runs as the ``postgres`` system user (PostgreSQL refuses to run as root). Password
authentication (scram-sha-256) is on, so tests can check that the password never leaks.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import LOOPBACK, free_port

__all__ = ["PostgresMissing", "PostgresServer", "postgres_cluster"]

SUPERUSER = "postgres"
PASSWORD = "s3cret-Pa55:w/rd@x"  # URL-special characters, so masking of quoted passwords is exercised
START_TIMEOUT = 60


class PostgresMissing(RuntimeError):
    """initdb/pg_ctl are not installed."""


@dataclass
class PostgresServer:
    datadir: Path
    port: int
    bindir: Path
    run_as: list[str]
    log: Path
    password: str = PASSWORD
    user: str = SUPERUSER

    def url(self, database: str = "postgres", *, with_password: bool = True) -> str:
        from urllib.parse import quote

        secret = f":{quote(self.password, safe='')}" if with_password else ""
        return f"postgresql+psycopg://{self.user}{secret}@{LOOPBACK}:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        cmd = [*self.run_as, str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT + 10, check=False)
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed: {done.stderr or done.stdout}\n{tail}")

    def start(self) -> None:
        options = (
            f"-c port={self.port} -c listen_addresses={LOOPBACK} -c unix_socket_directories='{self.datadir.parent}' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        self._ctl("-w", "-t", str(START_TIMEOUT), "-o", options, "start")

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run ``sql`` as the superuser, autocommit (for setup: CREATE DATABASE, roles, tables)."""
        import psycopg

        with psycopg.connect(self.url(database).replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(sql.encode())

    def fetch(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url(database).replace("+psycopg", "")) as conn:
            return list(conn.execute(sql.encode()).fetchall())


def _bindir() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise PostgresMissing(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install Debian's postgresql package "
        "(`make test` does: apt-get install -y postgresql)"
    )


@contextlib.contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """A running cluster (superuser ``postgres`` with :data:`PASSWORD`); stopped and deleted on exit.

    Raises:
        PostgresMissing: the binaries are not installed.
    """
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="pb-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    datadir = root / "data"
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD)
    if run_as:
        shutil.chown(pwfile, "postgres")
    init = [*run_as, str(bindir / "initdb"), "-D", str(datadir), "-U", SUPERUSER, f"--pwfile={pwfile}"]
    init += ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]
    done = subprocess.run(init, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
    server = PostgresServer(datadir, free_port(), bindir, run_as, root / "server.log")
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
