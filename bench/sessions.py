"""Memory per open 2025-era session: open N sessions (initialize + notifications/initialized), read RSS.

A raw asyncio HTTP/1.1 client (keep-alive, one connection per worker, bounded workers) talks to
127.0.0.1 only. It stops by itself: every request has a timeout, and the run gives up after too many
failures or when its deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import harness, wire
from bench.configs import REPO, ServerSpec

MB = 1024 * 1024
REQUEST_TIMEOUT_S = 10.0
MAX_FAILURES = 100


@dataclass
class SessionProbe:
    server: str
    wanted: int
    opened: int
    failures: int
    seconds: float
    rss_before_mb: float
    rss_after_mb: float
    still_served: bool
    first_failure: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def added_mb(self) -> float:
        return self.rss_after_mb - self.rss_before_mb

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "added_mb": self.added_mb}


class _Conn:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def post(self, body: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        payload = body.encode()
        lines = [
            "POST /mcp HTTP/1.1",
            f"Host: 127.0.0.1:{self.port}",
            "Content-Type: application/json",
            f"Accept: {wire.ACCEPT_BOTH}",
            f"Content-Length: {len(payload)}",
        ]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        status, reply_headers = await self._head()
        reply = await self._body(reply_headers)
        if reply_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, reply_headers, reply

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        first, *rest = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in rest:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return int(first.split()[1]), headers

    async def _body(self, headers: dict[str, str]) -> bytes:
        assert self.reader is not None
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() != "chunked":
            return b""
        chunks: list[bytes] = []
        while True:  # ends at the zero-size chunk; every read is under the caller's timeout
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return b"".join(chunks)
            chunks.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


async def _open_one(conn: _Conn) -> str:
    status, headers, body = await asyncio.wait_for(conn.post(wire.INITIALIZE, {}), REQUEST_TIMEOUT_S)
    session_id = headers.get("mcp-session-id", "")
    if status != 200 or not session_id or b'"result"' not in body:
        raise RuntimeError(f"initialize: {status} {body[:200]!r}")
    status, _, body = await asyncio.wait_for(
        conn.post(wire.INITIALIZED, wire.session_headers(session_id)), REQUEST_TIMEOUT_S
    )
    if status not in (200, 202):
        raise RuntimeError(f"notifications/initialized: {status} {body[:200]!r}")
    return session_id


async def open_sessions(port: int, count: int, workers: int, deadline_s: float) -> tuple[list[str], list[str]]:
    """Open `count` sessions with `workers` connections; returns (session ids, failure messages)."""
    ids: list[str] = []
    failures: list[str] = []
    remaining = iter(range(count))
    deadline = time.monotonic() + deadline_s

    async def worker() -> None:
        conn = _Conn(port)
        try:
            for _ in remaining:
                if len(failures) >= MAX_FAILURES or time.monotonic() > deadline:
                    return
                try:
                    ids.append(await _open_one(conn))
                except (TimeoutError, OSError, RuntimeError, ValueError, asyncio.IncompleteReadError) as exc:
                    failures.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return ids, failures


def _still_served(port: int, session_id: str) -> bool:
    body = wire.fill(wire.session_call_template("add", progress=False), 7)
    reply = wire.post(port, body, wire.session_headers(session_id))
    return wire.check_add_result(reply) is None


def _settled_rss(pid: int) -> float:
    """Median of a few readings a moment apart (the allocator may still be returning pages)."""
    readings = []
    for _ in range(5):
        time.sleep(0.2)
        readings.append(harness.rss_bytes(pid) / MB)
    return statistics.median(readings)


def probe(spec: ServerSpec, count: int, workers: int, logdir: Path) -> SessionProbe:
    port = harness.free_port()
    argv = spec.argv(port, max_sessions=count * 2)  # the SDK caps sessions at 10,000 by default
    with harness.running(spec.name, argv, port, logdir / f"sessions-{spec.name}.log", REPO) as server:
        time.sleep(0.5)
        before = _settled_rss(server.pid)
        started = time.perf_counter()
        ids, failures = asyncio.run(open_sessions(port, count, workers, deadline_s=600))
        seconds = time.perf_counter() - started
        after = _settled_rss(server.pid)
        served = bool(ids) and _still_served(port, ids[0]) and _still_served(port, ids[-1])
        result = SessionProbe(
            spec.name,
            count,
            len(ids),
            len(failures),
            seconds,
            before,
            after,
            served,
            failures[0] if failures else "",
        )
        if len(set(ids)) != len(ids):
            result.notes.append(f"only {len(set(ids))} distinct session ids")
        return result
