"""A throwaway redis-server for tests: a free loopback port, a temp dir, no persistence, stopped at exit.

Uses Debian's ``redis-server`` (``make redis`` installs it). The server requires a password, so every test that
talks to it also shows the password never leaks into logs, health reports or errors. ``stop()`` and ``start()``
restart it on the same port, for outage tests: an empty Redis comes back, as after a real restart without
persistence.

The pytest fixtures built on it (``redis_server``, ``redis_url``, ``redis_prefix``) are registered in
tests/conftest.py for the unit, integration and e2e suites alike.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.servers import LOOPBACK, _die_with_parent, free_port, stop_process

__all__ = ["PASSWORD", "TIMEOUT_MS", "RedisMissing", "RedisServer", "redis_server"]

PASSWORD = "fleet-Pa55-x7q"  # distinctive, so tests can look for it in logs and bodies
START_TIMEOUT = 20.0
# The ``[redis] timeout_ms`` test replicas use. Outage tests stop the server, and a stopped server refuses a
# connection at once, so this bounds nothing they measure; it only has to cover a connect to loopback on a loaded CI
# machine (300 ms once did not).
TIMEOUT_MS = 2000


class RedisMissing(RuntimeError):
    """redis-server is not installed."""


@dataclass
class RedisServer:
    folder: Path
    port: int = field(default_factory=free_port)
    password: str = PASSWORD
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://:password@127.0.0.1:port/0``."""
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.folder / "redis.log"

    def start(self) -> None:
        """Start (again) on the same port and return once it answers PING."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise RedisMissing("redis-server is not installed: run `make redis` (Debian package redis-server)")
        cmd = [
            binary, "--port", str(self.port), "--bind", LOOPBACK, "--dir", str(self.folder),
            "--save", "", "--appendonly", "no", "--requirepass", self.password,
            "--logfile", str(self.log), "--daemonize", "no",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not answer on port {self.port}:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a deadline); its data is gone."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def answers(self) -> bool:
        """Whether the server answers an authenticated PING right now."""
        try:
            return self.command("PING") == b"+PONG"
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command in RESP, authenticated; the first line of the answer (e.g. b"+PONG", b":3")."""
        frames = [("AUTH", self.password), args]
        payload = b"".join(
            f"*{len(frame)}\r\n".encode() + b"".join(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in frame)
            for frame in frames
        )
        with socket.create_connection((LOOPBACK, self.port), timeout=2) as sock:
            sock.sendall(payload)
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        lines = data.split(b"\r\n")
        return lines[1] if len(lines) > 1 else b""

    def flush(self) -> None:
        """Empty every database (between tests that share this server)."""
        self.command("FLUSHALL")


@contextlib.contextmanager
def redis_server(folder: Path | None = None) -> Iterator[RedisServer]:
    """A running redis-server keeping its files in ``folder`` (a temp dir when None), stopped on exit."""
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="patchbay-redis-")))
        folder.mkdir(parents=True, exist_ok=True)
        server = RedisServer(folder)
        stack.callback(server.stop)
        server.start()
        yield server


def unique_prefix() -> str:
    """A key prefix no other test uses, so tests share one server without seeing each other's keys."""
    return f"t{secrets.token_hex(4)}:"
