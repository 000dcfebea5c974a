"""Run a real Patchbay server (`python -m patchbay serve`) in a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunningServer", "ServerStartError", "free_port", "run_patchbay", "wait_healthz"]

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
_POLL_INTERVAL = 0.05
# A port picked by free_port() can be taken by someone else before the server binds it.
_BIND_ATTEMPTS = 3
_ADDRESS_IN_USE = ("address already in use", "errno 98")

# Loopback requests must never go through a proxy configured in the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerStartError(RuntimeError):
    """The server exited or did not become healthy in time; the message carries the tail of its log."""


@dataclass(frozen=True)
class RunningServer:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The MCP endpoint."""
        return f"{self.base_url}/mcp"

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def run_patchbay(
    config_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    log_dir: Path | None = None,
    start_timeout: float = START_TIMEOUT,
) -> Iterator[RunningServer]:
    """Start `patchbay serve --config config_path` on a free loopback port and stop it on exit.

    The server runs with `log_dir` (a new temporary directory by default) as its working directory, so anything it
    writes relative to the cwd lands there and not in the repository; its stdout and stderr go to
    `log_dir/patchbay-<port>.log`. `env` is added to the current environment.

    Raises:
        ServerStartError: the process exited before answering GET /healthz with 200, or did not within
            `start_timeout` seconds.
    """
    config_path = config_path.resolve()
    log_dir = Path(tempfile.mkdtemp(prefix="patchbay-")) if log_dir is None else log_dir
    log_dir.mkdir(parents=True, exist_ok=True)
    child_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}

    for attempt in range(1, _BIND_ATTEMPTS + 1):
        server = _start(config_path, child_env, extra_args, log_dir)
        try:
            _wait_healthy(server, start_timeout)
        except ServerStartError as exc:
            _stop(server)
            port_taken = any(marker in server.log_tail().lower() for marker in _ADDRESS_IN_USE)
            if port_taken and attempt < _BIND_ATTEMPTS:
                continue
            raise ServerStartError(f"{exc}\n--- {server.log_path} (tail) ---\n{server.log_tail()}") from None
        break

    try:
        yield server
    finally:
        _stop(server)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here, not between fork and exec


def _die_with_parent() -> None:
    # Runs in the child before exec: a test run that is killed (a CI timeout, ^C twice) must not leave servers
    # behind; the kernel sends SIGTERM when the process that started this one ends.
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _start(config_path: Path, env: Mapping[str, str], extra_args: Sequence[str], log_dir: Path) -> RunningServer:
    port = free_port()
    log_path = log_dir / f"patchbay-{port}.log"
    cmd = [
        sys.executable, "-m", "patchbay", "serve",
        "--config", str(config_path),
        "--host", LOOPBACK,
        "--port", str(port),
        *extra_args,
    ]  # fmt: skip
    with log_path.open("wb") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        # Own session: stopping the server can also reach anything it spawned (stdio upstreams).
        proc = subprocess.Popen(
            cmd,
            cwd=log_dir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    return RunningServer(proc=proc, host=LOOPBACK, port=port, log_path=log_path)


def _wait_healthy(server: RunningServer, timeout: float) -> None:
    wait_healthz(server.proc, server.base_url, timeout)


def wait_healthz(proc: subprocess.Popen[bytes] | None, base_url: str, timeout: float) -> None:
    """Return once ``GET base_url/healthz`` answers 200.

    Raises:
        ServerStartError: the process exited (or was never started) first, or no 200 came within ``timeout``
            seconds. The message does not carry the log: callers add the tail they have.
    """
    health_url = f"{base_url}/healthz"
    deadline = time.monotonic() + timeout
    while True:
        if proc is None:
            raise ServerStartError("patchbay was not started")
        if (code := proc.poll()) is not None:
            raise ServerStartError(f"patchbay exited with code {code} before it was healthy")
        with contextlib.suppress(urllib.error.URLError, OSError), _opener.open(health_url, timeout=1.0) as resp:
            if resp.status == 200:
                return
        if time.monotonic() >= deadline:
            raise ServerStartError(f"GET {health_url} did not answer 200 within {timeout:g} s")
        time.sleep(_POLL_INTERVAL)


def _stop(server: RunningServer) -> None:
    stop_process(server.proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful stop), then SIGKILL after STOP_TIMEOUT; also reap anything left in its session."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
