"""One upstream MCP session: our own request ids, the in-flight table, routing of what the upstream sends, and the
handshake (``initialize`` in the 2025 era, ``server/discover`` in 2026-07-28).

Rules followed (MCP 2025-11-25 basic/lifecycle, basic/utilities/{progress,cancellation,ping}; MCP 2026-07-28
basic/index, basic/patterns/{mrtr,cancellation}):

* Ids are the session's own integers, never a downstream id, so two downstream callers cannot collide and a cancel
  always names the request the upstream knows.
* A progress token is the session's own (the request id); ``on_progress`` gets the upstream's params and the
  caller maps them back to its downstream token.
* A timeout or the cancellation of the awaiting task sends ``notifications/cancelled`` with the upstream id
  (2025 era, stdio in both eras); a 2026-07-28 HTTP request is cancelled by closing its response stream.
* A server→client request is answered by the call it belongs to (it arrived on that call's response stream), else,
  on a shared stream, by the single in-flight call that accepts requests, else by the pool's handler, else with
  ``-32601``; ``ping`` is answered directly.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from patchbay.protocol.versions import (
    HANDSHAKE_VERSIONS,
    META_CLIENT_CAPS,
    META_CLIENT_INFO,
    META_SERVER_INFO,
    META_VERSION,
    MODERN,
)
from patchbay.upstream.errors import (
    InputNeeded,
    SessionLost,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from patchbay.upstream.target import NotificationHandler, ProgressHandler, ServerRequestHandler

log = logging.getLogger("patchbay.upstream")

METHOD_NOT_FOUND = -32601
MAX_IN_FLIGHT = 4096
CANCEL_SEND_TIMEOUT = 5.0
ALARM_SLACK = 0.001  # a loop timer may fire up to its clock resolution early


@dataclass(slots=True, eq=False)
class Call:
    """One request in flight; transports mark ``delivered`` once its bytes may have reached the upstream."""

    id: int
    method: str
    future: asyncio.Future[dict[str, Any]]
    on_progress: ProgressHandler | None = None
    on_message: NotificationHandler | None = None
    on_request: ServerRequestHandler | None = None
    delivered: bool = False
    # A long-lived request (``subscriptions/listen``): it does not keep the session or its process in use.
    background: bool = False
    # The loop time by which it must be answered, and the task awaiting it (None: no deadline).
    deadline: float = 0.0
    task: asyncio.Task[Any] | None = None
    expired: bool = False


class Channel(Protocol):
    """What a transport does for a session."""

    async def send(self, message: dict[str, Any], call: Call | None) -> None:
        """Send one message. For a request (``call`` given) an HTTP transport reads the answer inline and feeds it
        to the session; a stream transport returns once it is written.

        Raises:
            SessionLost: the session ended (``delivered`` says whether the upstream may have seen it).
            UpstreamUnavailable: it cannot be reached.
        """
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class Handlers:
    """Pool-level handlers: unsolicited notifications, server→client requests no call claims, session loss."""

    on_notification: NotificationHandler
    on_request: ServerRequestHandler | None = None
    on_lost: Callable[[UpstreamSession], None] = field(default=lambda session: None)


class UpstreamSession:
    """One initialised upstream session (2025 era) or one discovered endpoint (2026-07-28).

    Attributes after the handshake: ``protocol_version``, ``server_info``, ``capabilities``, ``instructions``.
    """

    def __init__(self, channel: Channel, handlers: Handlers, *, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self.channel = channel
        self.handlers = handlers
        self.max_in_flight = max_in_flight
        self.protocol_version = ""
        self.server_info: dict[str, Any] = {}
        self.capabilities: dict[str, Any] = {}
        self.instructions: str | None = None
        self.modern = False
        self.client_envelope: dict[str, Any] = {}
        self.lost: str | None = None
        self.pending: dict[int, Call] = {}
        self._progress: dict[int, Call] = {}
        self._next_id = 1
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving: dict[Any, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # One timer for every deadline in flight, set for the nearest (see _watch).
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = math.inf

    @property
    def alive(self) -> bool:
        return self.lost is None

    @property
    def busy(self) -> bool:
        """A call other than a background one (a listen stream) awaits its answer."""
        return any(not call.background for call in self.pending.values())

    # -- requests ------------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        timeout: float | None,  # noqa: ASYNC109 - the contract: the deadline of this one request
        on_progress: ProgressHandler | None = None,
        on_message: NotificationHandler | None = None,
        on_request: ServerRequestHandler | None = None,
        background: bool = False,
    ) -> dict[str, Any]:
        """Send ``method`` and wait at most ``timeout`` seconds (None: no limit) for its result. A
        ``background`` request (a listen stream) does not count as the session being in use.

        Raises:
            UpstreamError: the upstream answered a JSON-RPC error.
            UpstreamTimeout: no answer in time (the request was cancelled upstream).
            UpstreamUnavailable: unreachable, or the session ended (``SessionLost``).
            InputNeeded: a 2026-07-28 upstream answered ``input_required``.
        """
        if self.lost is not None:
            raise SessionLost(self.lost, delivered=False)
        if len(self.pending) >= self.max_in_flight:
            raise UpstreamUnavailable(f"more than {self.max_in_flight} requests are in flight to this upstream")
        loop = self._loop
        if loop is None:  # the session lives on one loop; asking for it costs a getpid() on Python 3.11
            loop = self._loop = asyncio.get_running_loop()
        rid = self._next_id
        self._next_id += 1
        call = Call(rid, method, loop.create_future(), on_progress, on_message, on_request)
        call.background = background
        message = {"jsonrpc": "2.0", "id": rid, "method": method, "params": self._params(rid, params, on_progress)}
        self.pending[rid] = call
        if on_progress is not None:
            self._progress[rid] = call
        cancelling = 0
        if timeout is not None:
            task = call.task = asyncio.current_task(loop)
            assert task is not None
            cancelling = task.cancelling()
            self._watch(call, loop.time() + timeout)
        try:
            await self.channel.send(message, call)
            result = await call.future
        except asyncio.CancelledError:
            if _disarm(call, cancelling):
                self._cancel_upstream(call, "timed out")
                raise UpstreamTimeout(f"the upstream did not answer {method} within {timeout:g} s") from None
            self._cancel_upstream(call, "cancelled by the client")
            raise
        finally:
            _disarm(call, cancelling)  # the deadline passed as the request ended otherwise: take its cancel back
            self.pending.pop(rid, None)
            self._progress.pop(rid, None)
            if call.future.done() and not call.future.cancelled():
                call.future.exception()  # retrieved: the send's own error may have won
        if self.modern and result.get("resultType") == "input_required":
            # MCP 2026-07-28 basic/patterns/mrtr: the caller answers and sends the request again.
            raise InputNeeded(result.get("inputRequests") or {}, result.get("requestState"))
        return result

    def _watch(self, call: Call, deadline: float) -> None:
        """Give ``call`` a deadline. asyncio.timeout would start and stop a loop timer per request (and ask
        for the loop thrice); deadlines of one session are nearly always later than those before them, so one timer
        set for the nearest serves them all and is rarely moved."""
        call.deadline = deadline
        if deadline < self._alarm_at:
            if self._alarm is not None:
                self._alarm.cancel()
            assert self._loop is not None
            self._alarm, self._alarm_at = self._loop.call_at(deadline, self._expire), deadline

    def _expire(self) -> None:
        """Cancel the requests whose deadline passed; set the timer for the nearest one left."""
        self._alarm, self._alarm_at = None, math.inf
        assert self._loop is not None
        now = self._loop.time() + ALARM_SLACK
        nearest = math.inf
        for call in self.pending.values():
            if call.task is None or call.expired:
                continue
            if call.deadline <= now:
                call.expired = True
                call.task.cancel()
            elif call.deadline < nearest:
                nearest = call.deadline
        if nearest < math.inf:  # a lost session's HTTP requests still run, and keep their deadlines
            self._alarm, self._alarm_at = self._loop.call_at(nearest, self._expire), nearest

    def _params(self, rid: int, params: dict[str, Any] | None, on_progress: ProgressHandler | None) -> dict[str, Any]:
        out = dict(params) if params else {}
        meta = out.get("_meta")
        if not (self.modern or on_progress is not None or (isinstance(meta, dict) and "progressToken" in meta)):
            return out
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta.pop("progressToken", None)  # the downstream's token means nothing upstream
        if on_progress is not None:
            meta["progressToken"] = rid
        if self.modern:  # what the caller put in the envelope (a proxied client's capabilities) wins
            meta = {**self.client_envelope, **meta}
        out["_meta"] = meta
        return out

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification.

        Raises:
            UpstreamUnavailable: the session ended or the upstream cannot be reached.
        """
        if self.lost is not None:
            raise SessionLost(self.lost, delivered=False)
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self.channel.send(message, None)

    def _cancel_upstream(self, call: Call, reason: str) -> None:
        # MCP 2025-11-25 basic/utilities/cancellation. A 2026-07-28 HTTP request was cancelled by closing its
        # stream when the send was interrupted; the channel says so by not being a stream channel.
        if not call.delivered or self.lost is not None or getattr(self.channel, "cancels_by_closing", False):
            return
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": call.id, "reason": reason},
        }
        self.spawn(self._send_quietly(note))

    async def _send_quietly(self, message: dict[str, Any]) -> None:
        try:
            async with asyncio.timeout(CANCEL_SEND_TIMEOUT):
                await self.channel.send(message, None)
        except (UpstreamUnavailable, TimeoutError) as exc:
            log.debug("could not send %s upstream: %s", message.get("method", "a response"), exc)

    def spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- what the upstream sends ---------------------------------------------------------------------------

    async def receive(self, message: Any, call: Call | None) -> None:
        """Route one message from the upstream; ``call`` is the request whose response stream carried it."""
        if not isinstance(message, dict):
            log.warning("upstream sent a JSON value that is not a JSON-RPC message; ignored")
            return
        method = message.get("method")
        if not isinstance(method, str):
            self.resolve(message)
        elif "id" in message:
            self._serve(message, method, call)
        else:
            await self._notification(method, message.get("params") or {}, call)

    def resolve(self, message: dict[str, Any]) -> None:
        """Settle the request ``message`` (a JSON-RPC response) answers; an unknown or settled id is ignored."""
        pending = self.pending.get(message.get("id"))  # type: ignore[arg-type]
        if pending is None or pending.future.done():
            log.debug("upstream answered an id with no request in flight; ignored")
            return
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            text = error.get("message")
            pending.future.set_exception(
                UpstreamError(code if isinstance(code, int) else -32603, str(text or "error"), error.get("data"))
            )
        elif isinstance(message.get("result"), dict):
            pending.future.set_result(message["result"])
        else:
            pending.future.set_exception(UpstreamError(-32603, "the upstream answered without a result object"))

    async def _notification(self, method: str, params: Any, call: Call | None) -> None:
        if not isinstance(params, dict):
            params = {}
        try:
            if method == "notifications/progress":
                token = params.get("progressToken")
                owner = self._progress.get(token) if isinstance(token, int) else None
                if owner is not None and owner.on_progress is not None:
                    await owner.on_progress(params)
            elif method == "notifications/cancelled":
                serving = self._serving.get(params.get("requestId"))
                if serving is not None:
                    serving.cancel()
            elif method == "notifications/message" and call is not None and call.on_message is not None:
                await call.on_message(method, params)
            else:
                await self.handlers.on_notification(method, params)
        except Exception:  # a handler's bug must not stop the reader
            log.exception("handling %s from the upstream failed", method)

    def _serve(self, message: dict[str, Any], method: str, call: Call | None) -> None:
        handler = self._handler_for(method, call)
        rid = message["id"]
        params = message.get("params")
        task = self.spawn(self._answer(rid, method, params if isinstance(params, dict) else {}, handler))
        self._serving[rid] = task
        task.add_done_callback(lambda _: self._serving.pop(rid, None))

    def _handler_for(self, method: str, call: Call | None) -> ServerRequestHandler | None:
        if call is not None and call.on_request is not None:
            return call.on_request
        if call is None:
            takers = [c for c in self.pending.values() if c.on_request is not None]
            if len(takers) == 1:
                return takers[0].on_request
        return self.handlers.on_request

    async def _answer(
        self, rid: Any, method: str, params: dict[str, Any], handler: ServerRequestHandler | None
    ) -> None:
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": rid}
        if method == "ping":
            reply["result"] = {}
        elif handler is None:
            reply["error"] = {"code": METHOD_NOT_FOUND, "message": f"Method not found: {method}"}
        else:
            try:
                reply["result"] = await handler(method, params)
            except UpstreamError as exc:
                reply["error"] = {"code": exc.code, "message": exc.message}
                if exc.data is not None:
                    reply["error"]["data"] = exc.data
            except Exception:
                log.exception("answering %s from the upstream failed", method)
                reply["error"] = {"code": -32603, "message": "the client could not answer the request"}
        await self._send_quietly(reply)

    # -- handshake -----------------------------------------------------------------------------------------

    async def initialize(
        self,
        version: str,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - the handshake's own deadline
    ) -> None:
        """The 2025-era handshake (MCP 2025-11-25 basic/lifecycle): offer ``version``, accept any handshake
        version Patchbay speaks, then send ``notifications/initialized``.

        Raises:
            UpstreamUnavailable: no answer in time, an error, or a version Patchbay does not speak.
        """
        params = {"protocolVersion": version, "capabilities": capabilities, "clientInfo": client_info}
        try:
            result = await self.request("initialize", params, timeout=timeout)
        except UpstreamError as exc:
            raise UpstreamUnavailable(f"the upstream refused initialize: {exc.message}") from None
        except UpstreamTimeout:
            raise UpstreamUnavailable(f"the upstream did not answer initialize within {timeout:g} s") from None
        answered = result.get("protocolVersion")
        if answered not in HANDSHAKE_VERSIONS:
            raise UpstreamUnavailable(
                f"the upstream answered protocol version {str(answered)[:40]!r}; Patchbay speaks "
                + ", ".join(HANDSHAKE_VERSIONS)
            )
        self.protocol_version = str(answered)
        self._identity(result)
        await self.notify("notifications/initialized")

    async def discover(
        self,
        client_info: dict[str, Any],
        capabilities: dict[str, Any],
        *,
        timeout: float,  # noqa: ASYNC109 - the probe's own deadline
    ) -> None:
        """``server/discover`` (MCP 2026-07-28 server/discover): become a 2026-07-28 session.

        Raises:
            UpstreamError: the upstream answered an error (a 2025-only server: fall back to ``initialize``).
            UpstreamTimeout, UpstreamUnavailable: as :meth:`request`.
            NotModern: it answered, but without 2026-07-28 among its ``supportedVersions``.
        """
        self.modern = True
        self.protocol_version = MODERN
        self.client_envelope = {META_VERSION: MODERN, META_CLIENT_CAPS: capabilities, META_CLIENT_INFO: client_info}
        try:
            result = await self.request("server/discover", None, timeout=timeout)
        except BaseException:
            self.modern = False
            raise
        versions = result.get("supportedVersions")
        if not isinstance(versions, list) or MODERN not in versions:
            self.modern = False
            raise NotModern(versions if isinstance(versions, list) else [])
        self.adopt(result)

    def adopt(self, discovered: dict[str, Any]) -> None:
        """Take a cached ``server/discover`` result (the era is detected once per upstream)."""
        self.modern = True
        self.protocol_version = MODERN
        self._identity(discovered)
        self.discovered = discovered

    def set_envelope(self, client_info: dict[str, Any], capabilities: dict[str, Any]) -> None:
        self.client_envelope = {META_VERSION: MODERN, META_CLIENT_CAPS: capabilities, META_CLIENT_INFO: client_info}

    def _identity(self, result: dict[str, Any]) -> None:
        info = result.get("serverInfo")
        meta = result.get("_meta")
        if not isinstance(info, dict) and isinstance(meta, dict):
            info = meta.get(META_SERVER_INFO)
        self.server_info = info if isinstance(info, dict) else {}
        caps = result.get("capabilities")
        self.capabilities = caps if isinstance(caps, dict) else {}
        text = result.get("instructions")
        self.instructions = text if isinstance(text, str) else None

    # -- end -----------------------------------------------------------------------------------------------

    def lose(self, reason: str) -> None:
        """The session ended under us: fail every call in flight (``SessionLost``; delivered ones are not
        retried) and tell the pool."""
        if self.lost is not None:
            return
        self.lost = reason
        # An HTTP request is answered on its own POST, which ends by itself; stream transports lose their calls.
        inline = getattr(self.channel, "answers_inline", False)
        for call in [] if inline else list(self.pending.values()):
            if not call.future.done():
                call.future.set_exception(SessionLost(reason, delivered=call.delivered))
        self.handlers.on_lost(self)

    async def close(self) -> None:
        """End the session (DELETE for HTTP sessions, stop the process for stdio) and its background tasks."""
        self.lose("the session was closed")
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await self.channel.close()


def _disarm(call: Call, cancelling: int) -> bool:
    """Take back the cancellation ``call``'s deadline sent its task, if it did; True when nothing else cancelled
    the task meanwhile, so the cancellation is a timeout (as asyncio.timeout decides)."""
    if not call.expired or call.task is None:
        return False
    call.expired = False
    return call.task.uncancel() <= cancelling


class NotModern(Exception):
    """``server/discover`` answered without 2026-07-28 among the supported versions."""

    def __init__(self, versions: list[Any]) -> None:
        super().__init__(f"the upstream supports {versions}")
        self.versions = versions
