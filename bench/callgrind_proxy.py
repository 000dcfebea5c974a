"""Instructions per proxied ``tools/call``, counted by valgrind's callgrind: a load-independent measure of Patchbay's
own CPU on the proxy path (issue 13), for finding and checking hot-path savings on a busy machine.

The ASGI app is driven in-process (no HTTP server in front of it) against bench/servers/
counted_upstream.py on loopback, the same upstream `make bench` uses, pinned to the 2025-11-25 era. Only the
Patchbay process runs under valgrind (the upstream is another process), and only the timed loop is instrumented
(``callgrind_control -i on/off``). Each path is counted twice, with a small and a large number of sequential calls:
the difference divided by the difference in calls is the cost of one call, start-up and toggling cancelled out.

Paths: ``proxy-modern`` (a 2026-07-28 client through the mcp connector), ``proxy-session`` (a 2025 session
client), ``stdio-modern`` and ``stdio-session`` (the same upstream as a stdio child, which valgrind does not
follow), ``direct-modern`` and ``direct-session`` (the same ``add`` served by a python connector: the hop is the
proxy count minus the direct one).

``--audit off`` (the default) sets ``PATCHBAY_AUDIT__ENABLED=false`` in the driven process; ``--audit on`` keeps the
trail on, as ``make bench`` runs it: the configs have no ``[store]`` and no sign-in, so records go to the in-memory
trail, and the audit writer's thread is counted with the event loop's (callgrind counts every thread).
``--audit off,on`` counts each path both ways. ``--concurrency 16`` sends the calls in waves of 16 at once, so the
audit writer's group commits hold about as many records as under ``make bench``'s c=16 (sequential calls under
valgrind's slowdown commit one record each, which overstates the per-commit share).

Run: python -m bench.callgrind_proxy [--paths proxy-modern,direct-modern] [--calls 200,800] [--audit off,on]
     [--out DIR]
Needs valgrind (callgrind_control on PATH). A benchmark aid, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import wire
from bench.configs import PATCHBAY_CONFIG, REPO

PATHS = ("proxy-modern", "proxy-session", "stdio-modern", "stdio-session", "direct-modern", "direct-session")
WARM_CALLS = 300
READY_S = 30.0

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


# -- the driven process (runs under valgrind) ------------------------------------------------------------------


class Driver:
    """Posts JSON-RPC bodies straight into the ASGI app, as a server would after parsing HTTP."""

    def __init__(self, app: Any, era: str) -> None:
        self.app = app
        self.era = era
        self.base = [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"accept", wire.ACCEPT_BOTH.encode()),
        ]
        self.extra: list[tuple[bytes, bytes]] = []
        self.template = ""

    async def post(self, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/mcp",
            "raw_path": b"/mcp",
            "query_string": b"",
            "root_path": "",
            "headers": self.base + self.extra,
            "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 8000),
        }
        given = False
        out: dict[str, Any] = {"status": 0, "headers": [], "body": b""}

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"], out["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                out["body"] += message.get("body", b"")

        await self.app(scope, receive, send)
        return out["status"], out["headers"], out["body"]

    async def setup(self) -> None:
        if self.era == "session":
            _, headers, _ = await self.post(wire.INITIALIZE.encode())
            sid = dict(headers)[b"mcp-session-id"]
            self.extra = [(b"mcp-session-id", sid), (b"mcp-protocol-version", wire.SESSION_VERSION.encode())]
            await self.post(wire.INITIALIZED.encode())
            self.template = wire.session_call_template("add", False)
        else:
            self.extra = [(k.lower().encode(), v.encode()) for k, v in wire.modern_headers("add").items()]
            self.template = wire.modern_call_template("add")

    async def call(self, request_id: int) -> None:
        status, _, body = await self.post(wire.fill(self.template, request_id).encode())
        if status != 200 or wire.EXPECT.encode() not in body:
            raise SystemExit(f"call {request_id}: unexpected answer {status} {body[:300]!r}")


async def _lifespan(app: Any, body: Callable[[], Awaitable[None]]) -> None:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"the app did not start: {started}")
    try:
        await body()
    finally:
        inbox.put_nowait({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


async def _instrument(state: str) -> None:
    toggle = await asyncio.create_subprocess_exec(
        "callgrind_control", "-i", state, str(os.getpid()), stdout=subprocess.DEVNULL
    )
    await toggle.wait()


async def _drive(path: str, calls: int, config: Path, concurrency: int) -> None:
    from patchbay.app import create_app
    from patchbay.settings import load

    app = create_app(load(config))
    driver = Driver(app, path.split("-")[1])

    async def body() -> None:
        await driver.setup()
        for i in range(WARM_CALLS):
            await driver.call(i)
        await _instrument("on")
        for first in range(0, calls, concurrency):
            wave = range(WARM_CALLS + first, WARM_CALLS + min(first + concurrency, calls))
            await asyncio.gather(*(driver.call(i) for i in wave))
        await _instrument("off")

    await _lifespan(app, body)


# -- the counting process ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_upstream(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    argv = [sys.executable, "-m", "bench.servers.counted_upstream", "--handshakes", str(workdir / "handshakes.json")]
    process = subprocess.Popen(
        [*argv, "--port", str(port)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=(workdir / "upstream.log").open("w")
    )
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return process, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.terminate()
    raise SystemExit(f"the upstream did not start; see {workdir / 'upstream.log'}")


def _proxy_config(workdir: Path, url: str, kind: str) -> Path:
    """The front's config: the upstream at ``url``, or (``kind`` "stdio") the same server as a child process."""
    if kind == "stdio":
        argv = [sys.executable, "-m", "bench.servers.counted_upstream", "--stdio"]
        argv += ["--handshakes", str(workdir / "stdio-handshakes.json")]
        where = f"command = {json.dumps(argv)}\ncwd = {json.dumps(str(REPO))}"
    else:
        where = f'url = "{url}"'
    config = workdir / f"{kind}.toml"
    config.write_text(
        '[server]\nname = "callgrind"\n\n[[connectors]]\nname = "up"\ntype = "mcp"\nprefix = ""\n'
        f'protocol = "2025-11-25"\n{where}\n'
    )
    return config


def _count(path: str, calls: int, config: Path, workdir: Path, audit: str, concurrency: int) -> int:
    """Instructions executed by ``calls`` calls, ``concurrency`` at a time (plus the toggling, which cancels out)."""
    out = workdir / f"{path}-audit-{audit}-c{concurrency}-{calls}.callgrind"
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    argv += [sys.executable, "-m", "bench.callgrind_proxy", "--drive", path, "--n", str(calls), "--config", str(config)]
    argv += ["--concurrency", str(concurrency)]
    env = {**os.environ, "PATCHBAY_AUDIT__ENABLED": "false" if audit == "off" else "true"}
    log = workdir / f"{path}-audit-{audit}-c{concurrency}-{calls}.log"
    with log.open("w") as sink:
        done = subprocess.run(argv, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{path}: the driven process failed; see {log}")
    found = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"{path}: no totals in {out}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind_proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated, of: " + ", ".join(PATHS))
    parser.add_argument("--calls", default="200,800", help="the two call counts whose difference is measured")
    parser.add_argument("--audit", default="off", help="the audit trail in the driven process: off, on or off,on")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="calls in flight at once (waves of this many; default 1)"
    )
    parser.add_argument("--out", type=Path, help="where callgrind's files are kept (default: a temporary folder)")
    parser.add_argument("--drive", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        import uvloop

        uvloop.run(_drive(args.drive, args.n, args.config, args.concurrency))
        return
    paths = [p for p in args.paths.split(",") if p]
    if unknown := [p for p in paths if p not in PATHS]:
        parser.error(f"unknown paths {unknown}; choose from {', '.join(PATHS)}")
    audits = [a for a in args.audit.split(",") if a]
    if not audits or any(a not in ("off", "on") for a in audits):
        parser.error(f"--audit takes off, on or off,on, not {args.audit!r}")
    low, high = sorted(int(n) for n in args.calls.split(","))
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind (with callgrind_control) is not installed: apt-get install valgrind")
    workdir = args.out or Path(tempfile.mkdtemp(prefix="patchbay-callgrind-"))
    workdir.mkdir(parents=True, exist_ok=True)
    upstream, url = _start_upstream(workdir) if any(p.startswith("proxy") for p in paths) else (None, "")
    try:
        for path in paths:
            kind = path.split("-")[0]
            used = PATCHBAY_CONFIG if kind == "direct" else _proxy_config(workdir, url, kind)
            for audit in audits:
                few = _count(path, low, used, workdir, audit, args.concurrency)
                many = _count(path, high, used, workdir, audit, args.concurrency)
                per_call = (many - few) // (high - low)
                print(f"{path:15} audit {audit:3} {per_call:>9,} instructions per call", flush=True)
    finally:
        if upstream is not None:
            upstream.terminate()
            upstream.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
