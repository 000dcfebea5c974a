"""The upstream MCP client's own cost: CPU per call and latency against a trivial loopback upstream.

Run: python -m bench.upstream_client [--calls N] [--rounds R] [--concurrency C] [--no-doc]; `make bench` runs it
as the item ``upstream-client`` and writes its section of docs/performance.md.

The upstream (a bare ASGI JSON-RPC answerer in a child process on CPU 0, or the stdio fixture server) runs apart
from the client, so the client process's CPU time (getrusage) is the client's alone: the pool, the session, the
HTTP client and the event loop. Besides the pool in both HTTP eras and over stdio, it measures one bare POST
through httpx and through Patchbay's own HTTP/1.1 client (``OriginClient``) against the same upstream: the
transport's share. Kinds run interleaved, round after round (a busy machine skews them alike), and the median
round is reported. A benchmark, never a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from patchbay.outbound.origin import OriginClient
from patchbay.upstream import Target, UpstreamPool
from patchbay.upstream.process import ProcessSpec

Message = MutableMapping[str, Any]
_JSON = [(b"content-type", b"application/json")]
REPO = Path(__file__).resolve().parents[1]
HEADING = "## Upstream MCP client"
KINDS = ("http-2025", "http-2026", "stdio", "bare-httpx", "bare-origin")
Row = tuple[float, float, float, float]  # user µs/call, system µs/call, p50 ms, calls/s


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


async def _timed(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> Row:
    for _ in range(50):  # warm-up: the session and the connections are opened here
        await call()
    latencies: list[float] = []

    async def worker(count: int) -> None:
        for _ in range(count):
            started = time.perf_counter()
            await call()
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


async def _bare(kind: str, url: str, calls: int, concurrency: int) -> Row:
    """One POST of a tools/call through the HTTP client alone (no session): the transport's own cost."""
    import httpx

    body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo"}})
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if kind == "bare-httpx":
        async with httpx.AsyncClient(trust_env=False) as client:

            async def post() -> bytes:
                return (await client.post(url, content=body, headers=headers)).content

            return await _timed(post, calls, concurrency)
    origin = OriginClient(url)
    try:

        async def fetch() -> bytes:
            return (await origin.fetch("POST", headers, body, 1 << 20))[1]

        return await _timed(fetch, calls, concurrency)
    finally:
        await origin.aclose()


async def _run(kind: str, calls: int, concurrency: int) -> Row:
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
    try:
        if kind.startswith("bare-"):
            return await _bare(kind, target.url or "", calls, concurrency)
        info = {"name": "bench", "version": "0"}
        pool = UpstreamPool("bench", target, client_info=info, capabilities={}, on_notification=ignore)
        params = {"name": "echo", "arguments": {"text": "3"}}
        try:
            row = await _timed(lambda: pool.call("tools/call", params, timeout=10), calls, concurrency)
            if pool.opened != 1:
                raise RuntimeError(f"{kind}: {pool.opened} upstream sessions opened, 1 expected")
            return row
        finally:
            await pool.close()
    finally:
        if child is not None:
            child.terminate()
            child.wait(10)


def run(
    quick: bool = False, *, calls: int | None = None, rounds: int | None = None, concurrency: int = 1
) -> dict[str, Row]:
    """Each kind's median round (by user CPU per call); the kinds run interleaved, round after round."""
    calls = calls or (500 if quick else 3000)
    samples: dict[str, list[Row]] = {kind: [] for kind in KINDS}
    for _ in range(rounds or (1 if quick else 3)):
        for kind in KINDS:
            samples[kind].append(asyncio.run(_run(kind, calls, concurrency)))
    return {kind: sorted(rows)[len(rows) // 2] for kind, rows in samples.items()}


def markdown(results: dict[str, Row], concurrency: int = 1) -> str:
    lines = [
        f"{HEADING}\n",
        "The upstream MCP client's own CPU per call (getrusage of the client process; the upstream runs in another",
        "process on CPU 0) and its latency, one call at a time against a trivial loopback upstream "
        "(`python -m bench.upstream_client`).",
        "`bare-*` rows are one POST through the HTTP client alone, no session: the transport's share. Before",
        "Patchbay's own HTTP/1.1 client (httpx under the pool), this bench measured 1,468 (2025 era) and 1,314",
        "(2026-07-28) µs of user CPU per HTTP call, p50 1.5 to 1.6 ms (2026-12-06, busy machine).\n",
        "| kind | user CPU µs/call | system CPU µs/call | p50 ms | calls/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, (user, system, p50, rate) in results.items():
        lines.append(f"| {kind} (c={concurrency}) | {user:,.0f} | {system:,.0f} | {p50:.2f} | {rate:,.0f} |")
    return "\n".join(lines) + "\n"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_client", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})
    results = run(calls=args.calls, rounds=args.rounds, concurrency=args.concurrency)
    section = markdown(results, args.concurrency)
    print(section)
    if not args.no_doc:
        from bench.sql import write_doc

        write_doc(section, HEADING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
