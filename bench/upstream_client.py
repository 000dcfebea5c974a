"""The upstream MCP client's own cost: CPU per call and latency against a trivial loopback upstream.

Run: python -m bench.upstream_client [--calls N] [--concurrency C]

The upstream (a bare ASGI JSON-RPC answerer in a child process, or the stdio fixture server) runs apart from the
client, so the client process's CPU time is the client's alone (the pool, the session, httpx and the event loop).
A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import orjson

from patchbay.upstream import Target, UpstreamPool
from patchbay.upstream.process import ProcessSpec

Message = MutableMapping[str, Any]
_JSON = [(b"content-type", b"application/json")]
REPO = Path(__file__).resolve().parents[1]


async def upstream_app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Answers initialize (a session), server/discover (2026-07-28 when MODERN is set) and tools/call."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 405 if scope["method"] == "GET" else 200})
        await send({"type": "http.response.body", "body": b""})
        return
    request = orjson.loads(body)
    method = request.get("method")
    headers = list(_JSON)
    if "id" not in request:
        await send({"type": "http.response.start", "status": 202})
        await send({"type": "http.response.body", "body": b""})
        return
    if method == "server/discover" and os.environ.get("MODERN"):
        result: dict[str, Any] = {"supportedVersions": ["2026-07-28"], "capabilities": {"tools": {}}}
    elif method == "server/discover":
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600}}'})
        return
    elif method == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "bench"}}
        headers.append((b"mcp-session-id", b"bench-session"))
    else:
        result = {"content": [{"type": "text", "text": "3"}], "isError": False, "resultType": "complete"}
    payload = orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result})
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(upstream_app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _measure(pool: UpstreamPool, calls: int, concurrency: int) -> tuple[float, float, float, float]:
    params = {"name": "echo", "arguments": {"text": "3"}}
    for _ in range(50):  # warm-up: the session is opened here
        await pool.call("tools/call", params, timeout=10)
    latencies: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await pool.call("tools/call", params, timeout=10)
            latencies.append(time.perf_counter() - started)

    before = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_SELF)
    done = len(latencies)
    # User time is the client's Python work; system time includes the kernel's loopback delivery of each packet.
    user = (after.ru_utime - before.ru_utime) / done * 1e6
    system = (after.ru_stime - before.ru_stime) / done * 1e6
    return user, system, statistics.median(latencies) * 1e3, done / wall


async def _run(kind: str, calls: int, concurrency: int) -> None:
    async def ignore(method: str, params: dict[str, Any]) -> None:
        pass

    child: subprocess.Popen[bytes] | None = None
    if kind == "stdio":
        script = REPO / "tests" / "fixtures" / "upstream_stdio_server.py"
        target = Target("stdio", process=ProcessSpec(argv=(sys.executable, str(script), "legacy")))
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, **({"MODERN": "1"} if kind == "http-2026" else {})}
        code = f"from bench.upstream_client import _serve; _serve({port})"
        argv = ["taskset", "-c", "0", sys.executable, "-c", code]
        child = subprocess.Popen(argv, env=env, cwd=REPO)  # noqa: ASYNC220 - started once, before measuring
        await _wait_port(port)
        target = Target("http", url=f"http://127.0.0.1:{port}/mcp")
    info = {"name": "bench", "version": "0"}
    pool = UpstreamPool("bench", target, client_info=info, capabilities={}, on_notification=ignore)
    try:
        user, system, p50_ms, rate = await _measure(pool, calls, concurrency)
        print(
            f"{kind:10} c={concurrency:<3} client CPU user {user:6.0f} + system {system:6.0f} µs/call"
            f"  p50 {p50_ms:6.2f} ms  {rate:7.0f} calls/s  sessions opened {pool.opened}"
        )
    finally:
        await pool.close()
        if child is not None:
            child.terminate()
            child.wait(10)


async def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise RuntimeError("the upstream did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    with __import__("contextlib").suppress(OSError):
        os.sched_setaffinity(0, {1})
    for kind in ("http-2025", "http-2026", "stdio"):
        asyncio.run(_run(kind, args.calls, args.concurrency))


if __name__ == "__main__":
    main()
