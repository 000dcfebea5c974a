"""The plumbing of one running call: asking the client something (2025 era) and noticing a disconnect (2026)."""

from __future__ import annotations

import asyncio
from typing import Any

from patchbay.transport.http import Receive
from patchbay.transport.reply import Reply
from patchbay.transport.sessions import Session


def asker(session: Session, reply: Reply) -> Any:
    """Requests to the client travel on this call's stream; the answers come back through the session."""
    shared = session.shared
    if shared is None:

        async def ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
            return await session.outstanding().ask(reply.emit, method, params)

        return ask

    async def ask_in_fleet(method: str, params: dict[str, Any]) -> dict[str, Any]:
        # The answer may be POSTed to any replica: say which one waits before the client can see the request.
        sent: list[str] = []

        async def send(message: dict[str, Any]) -> None:
            await shared.asking(session, message["id"])
            sent.append(message["id"])
            await reply.emit(message)

        try:
            return await session.outstanding().ask(send, method, params)
        finally:
            for request_id in sent:
                await shared.asked(session, request_id)

    return ask_in_fleet


class DisconnectWatch:
    """Cancels the request's task when the client disconnects, once started."""

    __slots__ = ("_receive", "fired", "task", "watcher")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.task = asyncio.current_task()
        self.watcher: asyncio.Future[Any] | None = None
        self.fired = False

    def start(self) -> None:
        self.watcher = asyncio.ensure_future(self._receive())
        self.watcher.add_done_callback(self._done)

    def _done(self, done: asyncio.Future[Any]) -> None:
        if done.cancelled() or done.exception() is not None or self.task is None:
            return
        if done.result().get("type") == "http.disconnect":
            self.fired = True
            self.task.cancel()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
