"""Long-lived SSE streams: a 2025 session's GET stream, resuming a stream with ``Last-Event-ID``, and the
2026-07-28 ``subscriptions/listen`` stream. Each sends keep-alive comments so idle proxies keep them open.

In a fleet (``shared``: patchbay.fleet.events) a session's events are kept in Redis, so a stream resumes on any
replica, and the GET stream's events carry ids that continue across reconnects to any replica.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from patchbay.errors import RpcError
from patchbay.protocol import jsonrpc
from patchbay.protocol.hub import CLOSE, Hub
from patchbay.transport import http, subscriptions
from patchbay.transport.http import Receive, Send
from patchbay.transport.sessions import Session
from patchbay.transport.sse import KEEPALIVE, SSE_HEADERS, EventLog, frame, priming

GET_STREAM = "get"  # in a fleet, the standalone GET stream's event ids are get_<n>
# A client resuming its GET stream has lost the old connection, but the replica that served it may not have seen
# the disconnect yet: the resume waits this long for that replica to let go before answering 409.
RESUME_WAIT_SECONDS = 3.0
RESUME_POLL_SECONDS = 0.05


class SharedEvents(Protocol):
    """A fleet's event store (patchbay.fleet.events.FleetEvents). Both raise RpcError before anything is sent."""

    async def replay(self, session: Session, last_event: str, send: Send) -> None: ...

    async def open_get(self, session: Session, after: int | None) -> tuple[EventLog, list[bytes]]: ...


@dataclass(slots=True)
class Streams:
    hub: Hub | None
    keepalive: float
    retry_ms: int
    shared: SharedEvents | None = None

    async def standalone(
        self, session: Session, send: Send, receive: Receive | None = None, after: int | None = None
    ) -> None:
        """The session's GET stream; ``after``: the reconnect's Last-Event-ID number (a fleet replays what followed)."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)
        session.standalone = queue
        # Listening starts before the shared log is read, so no notification falls between replay and live.
        remove = self.hub.add(_session_listener(session, queue)) if self.hub is not None else None
        # A client that drops the connection ends the stream here too, so its reconnect is not refused with 409.
        gone = asyncio.ensure_future(_disconnected(receive)) if receive is not None else None
        if gone is not None:
            gone.add_done_callback(lambda done: None if done.cancelled() else end_queue(queue))
        started = False
        try:
            log: EventLog | None = None
            missed: list[bytes] = []
            if self.shared is not None and session.shared is not None:
                try:
                    log, missed = await self.shared.open_get(session, after)
                except RpcError as exc:
                    if after is not None:  # a resume that cannot replay says so; a new stream goes on live
                        await http.rpc_error(send, exc.status, None, exc.code, exc.message)
                        return
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            started = True
            await self._pump(session, send, queue, log, missed)
        except OSError:
            pass
        finally:
            if gone is not None:
                gone.cancel()
            if remove is not None:
                remove()
            if session.standalone is queue:
                session.standalone = None
            if started:
                await http.end(send)

    async def _pump(
        self, session: Session, send: Send, queue: asyncio.Queue[bytes], log: EventLog | None, missed: list[bytes]
    ) -> None:
        if session.version >= "2025-11-25":
            last = f"{GET_STREAM}_{int(log.next_id().rpartition('_')[2]) - 1}" if log else f"get-{session.id[:8]}_0"
            await http.chunk(send, priming(last, self.retry_ms))
        for framed in missed:
            await http.chunk(send, framed)
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self.keepalive)
            except TimeoutError:
                await http.chunk(send, KEEPALIVE)
                if session.shared is not None:
                    with contextlib.suppress(RpcError):  # the GET lock's holder stays known across the fleet
                        await session.shared.keep_stream(session)
                continue
            if not item:
                break
            if log is not None:  # the same event with an id: "id: <id>" may lead the event's lines
                item = b"id: " + log.next_id().encode() + b"\n" + item
                log.append(item)
            await http.chunk(send, item)

    async def resume(self, session: Session, last_event: str, send: Send, receive: Receive | None = None) -> None:
        if self.shared is not None and session.shared is not None:
            await self._resume_shared(session, last_event, send, receive)
            return
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

    async def _resume_shared(self, session: Session, last_event: str, send: Send, receive: Receive | None) -> None:
        parsed = EventLog.parse_id(last_event)
        if parsed is None or parsed[0] != GET_STREAM:
            try:
                await self.shared.replay(session, last_event, send)  # type: ignore[union-attr]
            except RpcError as exc:
                await http.rpc_error(send, exc.status, None, exc.code, exc.message)
            return
        shared = session.shared
        assert shared is not None
        try:
            claimed = await self._claim_for_resume(session)
        except RpcError as exc:
            await http.rpc_error(send, exc.status, None, exc.code, exc.message)
            return
        if not claimed:
            await http.rpc_error(
                send, 409, None, jsonrpc.INVALID_REQUEST, "Conflict: this session already has an open GET stream"
            )
            return
        try:
            await self.standalone(session, send, receive, after=parsed[1])
        finally:
            with contextlib.suppress(RpcError):
                await shared.release_stream(session)

    async def _claim_for_resume(self, session: Session) -> bool:
        """Claim the session's GET stream, waiting up to ``RESUME_WAIT_SECONDS`` for its old connection to end."""
        shared = session.shared
        assert shared is not None
        deadline = asyncio.get_running_loop().time() + RESUME_WAIT_SECONDS
        while True:
            if session.standalone is None and await shared.claim_stream(session):
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(RESUME_POLL_SECONDS)

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
