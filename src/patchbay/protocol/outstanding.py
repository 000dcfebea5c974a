"""Requests this server sent to a client and still awaits answers for (2025 era: sampling, elicitation, roots).

Every transport that carries them (Streamable HTTP sessions, legacy SSE, stdio) keeps one of these; it numbers
the requests, routes the client's JSON-RPC responses back to the waiting call, and turns a refusal into a tool
error the person can read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from patchbay.errors import ToolError

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Outstanding:
    __slots__ = ("_futures", "_next", "_prefix")

    def __init__(self, prefix: str = "srv-") -> None:
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._prefix = prefix  # a fleet's replicas each use their own, so ids to one client never collide

    async def ask(self, send: Send, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send ``method`` to the client through ``send`` and return its result.

        Raises:
            ToolError: the client answered with an error (declined, or cannot do it).
        """
        self._next += 1
        request_id = f"{self._prefix}{self._next}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[request_id] = future
        try:
            await send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            answer = await future
        finally:
            self._futures.pop(request_id, None)
        if "error" in answer:
            message = (answer.get("error") or {}).get("message", "no reason given")
            raise ToolError(f"The client declined {method}: {message}")
        result = answer.get("result")
        return result if isinstance(result, dict) else {}

    def answer(self, message: dict[str, Any]) -> bool:
        """Hand a client's JSON-RPC response to the call waiting for it; False when nobody waits for that id."""
        future = self._futures.get(str(message.get("id")))
        if future is None or future.done():
            return False
        future.set_result(message)
        return True

    def __len__(self) -> int:
        """How many requests await an answer."""
        return len(self._futures)

    def cancel_all(self) -> None:
        for future in self._futures.values():
            future.cancel()
