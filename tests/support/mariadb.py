"""A throwaway MariaDB server for tests: mariadb-install-db into a temp dir, mariadbd on a free loopback port.

Uses the binaries of Debian's ``mariadb-server`` package (``make test`` installs it with ``make mariadb``). The
server runs as the current user (``--user`` names it, which MariaDB requires when that user is root), keeps its
socket and files in the temp dir, and is shut down and deleted when the context exits. The ``root`` account gets
a password (TCP clients must give it), so tests can check that the password never leaks.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import LOOPBACK, free_port

__all__ = ["MariadbMissing", "MariadbServer", "mariadb_server"]

SUPERUSER = "root"
PASSWORD = "s3cret-Pa55:w/rd@x"  # URL-special characters, so masking of quoted passwords is exercised
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
_POLL = 0.1


class MariadbMissing(RuntimeError):
    """mariadb-install-db/mariadbd are not installed."""


@dataclass
class MariadbServer:
    root: Path
    port: int
    mariadbd: Path
    user: str
    log: Path
    password: str = PASSWORD
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "mysqld.sock"

    def url(self, database: str = "mysql", *, with_password: bool = True, scheme: str = "mysql") -> str:
        from urllib.parse import quote

        secret = f":{quote(self.password, safe='')}" if with_password else ""
        return f"{scheme}://{SUPERUSER}{secret}@{LOOPBACK}:{self.port}/{database}?charset=utf8mb4"

    def start(self) -> None:
        """Start mariadbd and wait until it accepts a login (fails with the log's tail otherwise)."""
        cmd = [
            str(self.mariadbd),
            "--no-defaults",
            f"--datadir={self.root / 'data'}",
            f"--socket={self.socket}",
            f"--pid-file={self.root / 'mysqld.pid'}",
            f"--log-error={self.log}",
            f"--user={self.user}",
            f"--bind-address={LOOPBACK}",
            f"--port={self.port}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--innodb-flush-log-at-trx-commit=0",
            "--max-connections=50",
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}:\n{self._log_tail()}")
            try:
                self.fetch("SELECT 1")
                return
            except Exception as exc:  # the server is still starting: refused connections, handshake errors
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mariadbd did not accept logins in {START_TIMEOUT:g} s: {exc}") from None
            time.sleep(_POLL)

    def stop(self) -> None:
        """Shut the server down (SIGTERM is MariaDB's clean shutdown); kill it if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def _connect(self, database: str | None) -> Any:
        import pymysql

        # The tests' own setup and snapshots go through the socket (as root@localhost); the connector uses TCP.
        return pymysql.connect(
            unix_socket=str(self.socket),
            user=SUPERUSER,
            password=self.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
            client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS,
        )

    def execute(self, sql: str, database: str | None = None) -> None:
        """Run ``sql`` (several statements allowed) as root, autocommit: for setup."""
        conn = self._connect(database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                while cursor.nextset():
                    pass
        finally:
            conn.close()

    def fetch(self, sql: str, database: str | None = None) -> list[tuple[object, ...]]:
        conn = self._connect(database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(sql)
                return list(cursor.fetchall())
        finally:
            conn.close()

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"


def _binary(name: str) -> Path:
    candidates = (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}")
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if found is None:
        raise MariadbMissing(
            f"MariaDB server binaries ({name}) not found: install Debian's mariadb-server package "
            "(`make test` does, through `make mariadb`)"
        )
    return Path(found)


@contextlib.contextmanager
def mariadb_server() -> Iterator[MariadbServer]:
    """A running server (``root`` with :data:`PASSWORD` over TCP); stopped and deleted on exit.

    Raises:
        MariadbMissing: the binaries are not installed.
    """
    install_db, mariadbd = _binary("mariadb-install-db"), _binary("mariadbd")
    root = Path(tempfile.mkdtemp(prefix="pb-maria-"))
    user = getpass.getuser()
    init = [
        str(install_db),
        "--no-defaults",
        f"--datadir={root / 'data'}",
        f"--user={user}",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
    ]
    done = subprocess.run(init, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"mariadb-install-db failed: {done.stderr or done.stdout}")
    server = MariadbServer(root, free_port(), mariadbd, user, root / "server.log", password="")
    try:
        server.start()
        # A fresh datadir's root has no password; set it, and drop the anonymous accounts.
        server.execute(
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{PASSWORD}';"
            f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';"
            "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
            "DELETE FROM mysql.global_priv WHERE User = '';"
            "FLUSH PRIVILEGES"
        )
        server.password = PASSWORD
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
