"""Process control and measurement: start servers pinned to a CPU, wait for readiness, sample /proc, run wrk.

Every process started here is registered and stopped by `stop_all()` (called from `finally` and `atexit`),
so an interrupted run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVER_CPU = 0
LOAD_CPU = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_running: list[subprocess.Popen[bytes]] = []


def can_pin() -> bool:
    """taskset present and at least two CPUs (server and load generator each get their own)."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(argv: Sequence[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if can_pin() else list(argv)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """A started server process; `pid` is the server itself (taskset execs it)."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float
    cpu: int = SERVER_CPU
    """The CPU it is pinned to (when pinning is possible)."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def log_tail(self, limit: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-limit:]
        return ""


def spawn(name: str, argv: Sequence[str], port: int, log: Path, cwd: Path, cpu: int = SERVER_CPU) -> Server:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        started_at = time.perf_counter()
        proc = subprocess.Popen(
            pinned(argv, cpu),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches only the harness, which then stops the server itself
        )
    _running.append(proc)
    return Server(name, port, proc, log, started_at, cpu)


def stop(server: Server, grace: float = 5.0) -> None:
    proc = server.proc
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
    if proc in _running:
        _running.remove(proc)


def stop_all() -> None:
    for proc in list(_running):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        _running.remove(proc)


atexit.register(stop_all)


def http_get_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_ready(server: Server, path: str = "/healthz", deadline_s: float = 30.0) -> float:
    """Poll GET `path` until 200; returns seconds since spawn. Raises if the process dies or time runs out."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        if http_get_status(server.port, path) == 200:
            return time.perf_counter() - server.started_at
        time.sleep(0.02)
    raise RuntimeError(f"{server.name} not ready after {deadline_s:.0f} s:\n{server.log_tail()}")


@contextlib.contextmanager
def running(name: str, argv: Sequence[str], port: int, log: Path, cwd: Path) -> Iterator[Server]:
    server = spawn(name, argv, port, log, cwd)
    try:
        wait_ready(server)
        yield server
    finally:
        stop(server)


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (a server may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree, from /proc/PID/stat (fields 14 and 15)."""
    ticks = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _CLK_TCK


def rss_bytes(pid: int) -> int:
    """VmRSS of the process tree, from /proc/PID/status."""
    total = 0
    for member in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_busy_seconds() -> dict[int, float]:
    """Busy time (all but idle and iowait) of every CPU since boot, from /proc/stat."""
    busy: dict[int, float] = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(x) for x in fields[:8]]
            busy[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4]) / _CLK_TCK
    return busy


def children_cpu_seconds() -> float:
    """CPU time of this process and its finished children (wrk): our own share of the load CPU."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class WrkRun:
    connections: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    detail: dict[str, Any]


def run_wrk(port: int, lua: Path, env: dict[str, str], connections: int, duration_s: float) -> WrkRun:
    """One wrk run (1 thread, N connections) pinned to the load CPU; parses the script's BENCH_RESULT line."""
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "5s",
        "-s",
        str(lua),
        f"http://127.0.0.1:{port}/mcp",
    ]
    done = subprocess.run(
        pinned(argv, LOAD_CPU),
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-1500:]}{done.stderr[-1500:]}")
    detail: dict[str, Any] = json.loads(line.removeprefix("BENCH_RESULT "))
    socket_errors = sum(detail["socket_errors"].values())
    errors = detail["bad_status"] + detail["bad_body"] + socket_errors
    seconds = detail["duration_us"] / 1e6
    return WrkRun(
        connections=connections,
        requests=detail["requests"],
        duration_s=seconds,
        rps=detail["requests"] / seconds if seconds else 0.0,
        p50_ms=detail["latency_us"]["p50"] / 1000,
        p99_ms=detail["latency_us"]["p99"] / 1000,
        errors=errors,
        detail=detail,
    )
