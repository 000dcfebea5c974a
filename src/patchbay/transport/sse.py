"""Server-sent events: framing, and replayable event logs for resumable streams (MCP 2025-11-25 SSE polling)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Final

SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    # MCP 2026-07-28 streamable-http: proxies must not buffer the stream.
    (b"x-accel-buffering", b"no"),
]
KEEPALIVE: Final = b": keep-alive\n\n"


def frame(data: bytes, event_id: str | None = None) -> bytes:
    if event_id is None:
        return b"event: message\ndata: " + data + b"\n\n"
    return b"id: " + event_id.encode() + b"\nevent: message\ndata: " + data + b"\n\n"


def priming(event_id: str, retry_ms: int) -> bytes:
    # An event with an id and empty data lets the client resume from here; retry tells it how soon.
    return f"id: {event_id}\nretry: {retry_ms}\ndata: \n\n".encode()


class EventLog:
    """The events of one SSE stream of a session, kept so a client can resume with ``Last-Event-ID``."""

    __slots__ = ("_changed", "done", "events", "id", "limit")

    def __init__(self, limit: int = 1000) -> None:
        self.id = secrets.token_hex(6)
        self.events: list[bytes] = []  # framed events; event N has id f"{self.id}_{N}"
        self.done = False
        self.limit = limit
        self._changed: asyncio.Event | None = None

    def next_id(self) -> str:
        return f"{self.id}_{len(self.events)}"

    def append(self, framed: bytes) -> None:
        if len(self.events) < self.limit:
            self.events.append(framed)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_change(self, seconds: float) -> None:
        """Wait until an event is added or the stream ends, for at most ``seconds``."""
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), seconds)

    @staticmethod
    def parse_id(event_id: str) -> tuple[str, int] | None:
        stream, _, seq = event_id.rpartition("_")
        return (stream, int(seq)) if stream and seq.isdigit() else None
