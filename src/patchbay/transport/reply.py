"""The answer to one POSTed request: plain JSON if the handler sends nothing first, otherwise an SSE stream."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import orjson

from patchbay.protocol.scope import CallScope
from patchbay.transport import http
from patchbay.transport.http import Send
from patchbay.transport.sse import KEEPALIVE, SSE_HEADERS, EventLog, frame, priming

_WRITES: set[asyncio.Future[None]] = set()
Headers = list[tuple[bytes, bytes]]


def retry_after(scope: CallScope) -> Headers | None:
    """``Retry-After`` (RFC 9110 §10.2.3, whole seconds, rounded up) for a call a limit refused, else None."""
    if scope.retry_after_ms is None:
        return None
    return [(b"retry-after", str(max(1, math.ceil(scope.retry_after_ms / 1000))).encode())]


class Reply:
    """Opens the SSE stream lazily, on the first message sent before the result.

    Events are buffered and written once the handler yields to the event loop, so a call that reports progress
    and returns at once goes out in one write (the headers, every event and the end), not one per event; an
    event the client must act on (a request to it) leaves as soon as the handler starts waiting.

    With ``log`` (2025-era sessions) every event gets an id and is kept, so a client can resume the stream with
    ``GET`` + ``Last-Event-ID`` after the connection drops or after the server ends it early (SSE polling).
    """

    __slots__ = (
        "_alive",
        "_flush_due",
        "_head_sent",
        "_keepalive",
        "_lock",
        "_log",
        "_new_log",
        "_pending",
        "_priming_retry",
        "_send",
        "_started",
        "_timer",
        "json_ok",
        "sse_ok",
    )

    def __init__(
        self,
        send: Send,
        sse_ok: bool,
        json_ok: bool,
        *,
        log: Callable[[], EventLog] | None,
        priming_retry: int | None,
        keepalive: float,
    ) -> None:
        self._send = send
        self.sse_ok = sse_ok
        self.json_ok = json_ok
        self._new_log = log
        self._log: EventLog | None = None
        self._priming_retry = priming_retry
        self._keepalive = keepalive
        self._started = False
        self._alive = True
        self._head_sent = False
        self._flush_due = False
        self._pending: list[bytes] = []
        self._lock: asyncio.Lock | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def emit(self, message: dict[str, Any]) -> None:
        """Send a notification or a request to the client on this request's stream."""
        if not self.sse_ok:
            return
        if not self._started:
            self._start()
        self._event(orjson.dumps(message))

    async def finish(self, response: dict[str, Any], status: int = 200, extra: Headers | None = None) -> None:
        """Send the response; ``extra`` headers go out only when the headers have not (an SSE stream under way)."""
        if not self._started:
            if self.json_ok or status != 200:
                await http.send_json(self._send, status, response, extra)
            else:
                await http.send_sse_once(self._send, response, extra)
            return
        self._event(orjson.dumps(response))
        await self._close()

    async def close_early(self) -> None:
        """End the HTTP response now; later events are kept for the client to resume (SSE polling)."""
        if not self._started:
            self._start()
        if self._log is None or not self._alive:
            return
        self._queue(f"retry: {self._priming_retry or 1000}\n\n".encode())
        self._alive = False
        self._stop_ticker()
        await self._flush(more=False)

    async def abandon(self) -> None:
        """End the exchange of a cancelled request without a JSON-RPC response."""
        if self._started:
            await self._close()
        else:
            await http.send_empty(self._send, 202)

    def _start(self) -> None:
        self._started = True
        self._lock = asyncio.Lock()
        if self._new_log is not None:
            self._log = self._new_log()
            if self._priming_retry is not None:
                event_id = self._log.next_id()
                self._log.append(b"")  # the priming event holds a place in the numbering
                self._queue(priming(event_id, self._priming_retry))
        self._arm()

    def _event(self, data: bytes) -> None:
        if self._log is not None:
            framed = frame(data, self._log.next_id())
            self._log.append(framed)
        else:
            framed = frame(data)
        self._queue(framed)

    def _queue(self, data: bytes) -> None:
        if not self._alive:
            return
        self._pending.append(data)
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        # Runs once the handler has yielded: if it finished first, finish() already sent everything.
        self._flush_due = False
        if self._pending and self._alive:
            _track(asyncio.ensure_future(self._flush(more=True)))

    async def _flush(self, *, more: bool) -> None:
        assert self._lock is not None
        async with self._lock:
            body = b"".join(self._pending)
            self._pending.clear()
            try:
                if not self._head_sent:
                    self._head_sent = True
                    await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
                if body or not more:
                    await self._send({"type": "http.response.body", "body": body, "more_body": more})
            except (OSError, RuntimeError):
                self._alive = False

    def _arm(self) -> None:
        # A timer, not a task: most streams end long before a keep-alive is due, and a timer costs far less.
        self._timer = asyncio.get_running_loop().call_later(self._keepalive, self._due)

    def _due(self) -> None:
        if self._alive:
            self._queue(KEEPALIVE)
            self._arm()

    def _stop_ticker(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _close(self) -> None:
        self._stop_ticker()
        if self._log is not None:
            self._log.finish()
        if self._alive:
            self._alive = False
            await self._flush(more=False)


def _track(task: asyncio.Future[None]) -> None:
    _WRITES.add(task)  # hold a reference until it is done (the loop keeps only weak ones)
    task.add_done_callback(_WRITES.discard)
