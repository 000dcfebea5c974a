"""Long-lived SSE streams: a 2025 session's GET stream, resuming a stream with ``Last-Event-ID``, and the
2026-07-28 ``subscriptions/listen`` stream. Each sends keep-alive comments so idle proxies keep them open.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson

from patchbay.protocol import jsonrpc
from patchbay.protocol.hub import CLOSE, Hub
from patchbay.transport import http, subscriptions
from patchbay.transport.http import Receive, Send
from patchbay.transport.sessions import Session
from patchbay.transport.sse import KEEPALIVE, SSE_HEADERS, EventLog, frame, priming


@dataclass(slots=True)
class Streams:
    hub: Hub | None
    keepalive: float
    retry_ms: int

    async def standalone(self, session: Session, send: Send, receive: Receive | None = None) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        session.standalone = queue
        remove = self.hub.add(_session_listener(session, queue)) if self.hub is not None else None
        # A client that drops the connection ends the stream here too, so its reconnect is not refused with 409.
        gone = asyncio.ensure_future(_disconnected(receive)) if receive is not None else None
        if gone is not None:
            gone.add_done_callback(lambda done: None if done.cancelled() else end_queue(queue))
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        try:
            if session.version >= "2025-11-25":
                await http.chunk(send, priming(f"get-{session.id[:8]}_0", self.retry_ms))
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), self.keepalive)
                except TimeoutError:
                    item = KEEPALIVE
                if not item:
                    break
                await http.chunk(send, item)
        except OSError:
            pass
        finally:
            if gone is not None:
                gone.cancel()
            if remove is not None:
                remove()
            if session.standalone is queue:
                session.standalone = None
            await http.end(send)

    async def resume(self, session: Session, last_event: str, send: Send) -> None:
        parsed = EventLog.parse_id(last_event)
        stream = session.streams.get(parsed[0]) if parsed and session.streams else None
        if stream is None or parsed is None:
            await http.rpc_error(
                send,
                404,
                None,
                jsonrpc.INVALID_REQUEST,
                f"Unknown Last-Event-ID {last_event!r}: nothing to resume",
            )
            return
        position = parsed[1] + 1
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        while True:
            while position < len(stream.events):
                await http.chunk(send, stream.events[position])
                position += 1
            if stream.done:
                break
            await stream.wait_change(self.keepalive)
            if position >= len(stream.events) and not stream.done:
                await http.chunk(send, KEEPALIVE)
        await http.end(send)

    async def listen(self, request_id: Any, params: dict[str, Any], send: Send, receive: Receive) -> None:
        wanted = subscriptions.listen_filter(params)
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        # The subscription id is the listen request's id as sent (a number stays a number).
        listener = _listen_filter(wanted, request_id, queue)
        remove = self.hub.add(listener) if self.hub is not None else (lambda: None)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        ack = subscriptions.acknowledgement(wanted, request_id)
        gone = asyncio.ensure_future(receive())
        try:
            await http.chunk(send, frame(orjson.dumps(ack)))
            while not gone.done():
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    {getter, gone}, timeout=self.keepalive, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    item = getter.result()
                    if not item:
                        break
                    await http.chunk(send, item)
                else:
                    getter.cancel()
                    if not done:
                        await http.chunk(send, KEEPALIVE)
        except OSError:
            pass
        finally:
            remove()
            gone.cancel()
            await http.end(send)


async def _disconnected(receive: Receive) -> None:
    """Returns once the client has gone (the GET's empty request body comes first)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def end_queue(queue: asyncio.Queue[Any], sentinel: Any = b"") -> None:
    """Put the end-of-stream sentinel, dropping the oldest item if the queue is full."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(sentinel)


def _session_listener(session: Session, queue: asyncio.Queue[bytes]) -> Any:
    def listener(method: str, params: dict[str, Any]) -> None:
        if method == CLOSE:
            end_queue(queue)
            return
        if method == "notifications/resources/updated" and params.get("uri") not in (session.subscriptions or ()):
            return
        message = {"jsonrpc": "2.0", "method": method, "params": params}
        if not queue.full():
            queue.put_nowait(frame(orjson.dumps(message)))

    return listener


def _listen_filter(wanted: dict[str, Any], subscription_id: Any, queue: asyncio.Queue[bytes]) -> Any:
    def listener(method: str, params: dict[str, Any]) -> None:
        if method == CLOSE:
            end_queue(queue)
            return
        message = subscriptions.for_subscription(wanted, subscription_id, method, params)
        if message is not None and not queue.full():
            queue.put_nowait(frame(orjson.dumps(message)))

    return listener
