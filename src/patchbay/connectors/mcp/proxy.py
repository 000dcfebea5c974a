"""One proxied request: credentials for the caller, the pooled upstream session, and everything passed through.

Progress (the session's own token upstream, the client's downstream), logs, cancellation (the dispatcher cancels
the handler; the session cancels upstream with its own request id) and the upstream's requests to the client
(sampling, elicitation, roots): asked over the 2025 session, or bridged to ``input_required`` for 2026-07-28
clients (:mod:`patchbay.connectors.mcp.bridge`). A 2026-07-28 upstream's own ``input_required`` passes through to
a 2026-07-28 client unchanged (its keys and requests; its ``requestState`` sealed inside ours), and is asked of a
2025-era client over its session, the request then sent again with the answers. A 2026-07-28 upstream is told the
caller's own client capabilities, so it decides what it may ask as it would for that client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from patchbay.connectors.mcp.bridge import Bridge, Parked
from patchbay.context import Context
from patchbay.errors import RpcError, ToolError
from patchbay.links import Credentials, LinkRequired, LinkUnavailable
from patchbay.links.answer import link_answer
from patchbay.protocol.jsonrpc import METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY
from patchbay.protocol.scope import InputRequired
from patchbay.protocol.versions import META_CLIENT_CAPS, META_LOG_LEVEL
from patchbay.upstream import (
    InputNeeded,
    UpstreamError,
    UpstreamPool,
    UpstreamSession,
    UpstreamTimeout,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)

MAX_INPUT_ROUNDS = 8  # a 2026-07-28 upstream that keeps asking is stopped, not followed forever
UPSTREAM_STATE = "upstream"  # where the upstream's requestState is kept inside ours (InputRequired.carry)
# What an upstream may ask a client, and the client capability each needs (MCP 2025-11-25 client features).
ASKABLE = {"sampling/createMessage": "sampling", "elicitation/create": "elicitation", "roots/list": "roots"}
ANSWERS = frozenset(ASKABLE.values())

OnRequest = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class Unlinked(Exception):
    """The caller must link their account first; ``answer`` is the tool result that says so."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("link required")
        self.answer = answer


@dataclass(slots=True)
class Proxy:
    """Sends requests to one upstream on behalf of callers (one per mcp connector)."""

    name: str
    pool: UpstreamPool
    credentials: Credentials
    bridge: Bridge
    in_flight: asyncio.Semaphore
    timeout: float
    stateful: bool = False
    # Calls running now. A stdio upstream's log messages carry no request id: while exactly one call runs they
    # are that call's (see log_unclaimed), otherwise they go to the server log only.
    active: set[Context] = field(default_factory=set)

    async def request(self, method: str, params: dict[str, Any], ctx: Context) -> dict[str, Any]:
        """The upstream's result for ``method``.

        Raises:
            Unlinked: the caller has no linked account (its ``answer`` is the result to give).
            RpcError: -32042 URL elicitation of the link for a 2025-11-25 client that declared it.
            InputRequired: a 2026-07-28 client must answer the upstream (or open the link) first.
            ToolError: the upstream failed, timed out or could not be reached; the message says which.
            UpstreamError: the upstream answered a JSON-RPC error.
        """
        identity, headers = await self._credentials(ctx)
        if self.stateful and ctx.session_id is not None:
            identity = f"{identity}|session:{ctx.session_id}"
        async with self.in_flight:
            self.active.add(ctx)
            try:
                # Looked up once: its era picks the path, and the request goes out on it.
                session = await self.pool.session(identity, headers)
                if ctx.era == "modern":
                    if session.modern:
                        return await self._passed_through(method, params, ctx, identity, headers, session)
                    if _can_answer(ctx):
                        return await self._bridged(method, params, ctx, identity, headers, session)
                    # It could not answer a parked question: the call runs inline, and a question is refused
                    # as Context.ask refuses one.
                    return await self._rounds(method, params, ctx, identity, headers, _cannot_ask, session=session)
                caps = ctx.client_capabilities if session.modern else None
                ask = partial(_ask, ctx)
                return await self._rounds(method, params, ctx, identity, headers, ask, caps=caps, session=session)
            except UpstreamTimeout:
                raise ToolError(
                    f"The upstream server '{self.name}' did not answer within {self.timeout:g} seconds; "
                    "the request was cancelled there."
                ) from None
            except UpstreamUnavailable as exc:
                if isinstance(exc, UpstreamUnauthorized):
                    self.credentials.invalidate(identity)
                raise ToolError(f"The upstream server '{self.name}' is unavailable: {exc}") from None
            finally:
                self.active.discard(ctx)

    async def log_unclaimed(self, params: dict[str, Any]) -> bool:
        """Pass a log message no request claimed to the one running call; False when not exactly one runs."""
        if len(self.active) != 1:
            return False
        await _message(next(iter(self.active)), params)
        return True

    async def credentials_of(self, ctx: Context) -> tuple[str, dict[str, str]]:
        """The caller's upstream identity and headers.

        Raises:
            Unlinked: the caller has no linked account (its ``answer`` is the result to give).
            RpcError, InputRequired: the link offered by URL elicitation (``patchbay.links.answer.link_answer``).
            ToolError: the upstream's authorization server cannot be reached.
        """
        return await self._credentials(ctx)

    async def _credentials(self, ctx: Context) -> tuple[str, dict[str, str]]:
        try:
            return await self.credentials.headers_for(ctx.principal)
        except LinkRequired as needed:
            raise Unlinked(link_answer(needed, ctx)) from None
        except LinkUnavailable as exc:
            raise ToolError(f"Cannot sign in to the upstream server '{self.name}': {exc}") from None

    async def _rounds(
        self,
        method: str,
        params: dict[str, Any],
        ctx: Context,
        identity: str,
        headers: dict[str, str],
        on_request: OnRequest,
        sink: dict[str, Any] | None = None,
        *,
        caps: dict[str, Any] | None = None,
        session: UpstreamSession | None = None,
    ) -> dict[str, Any]:
        """Send the request; while a 2026-07-28 upstream answers ``input_required``, ask the client and resend.
        ``caps``: the client capabilities to declare to a 2026-07-28 upstream (None: Patchbay's own). ``sink``:
        where a parked call's progress and logs go (the client's current round); without one, ``ctx``.
        ``session``: the upstream session to send on while it lives."""
        params = {**params, "_meta": _meta(caps)}
        sent = params
        # The upstream is asked for progress only when someone may want it: the client asked on this request,
        # or a parked call's later round may ask (MCP 2025-11-25 basic/utilities/progress: the token is optional).
        relay = sink is not None or ctx.progress_requested
        for _ in range(MAX_INPUT_ROUNDS):
            try:
                return await self.pool.call(
                    method,
                    sent,
                    identity=identity,
                    headers=headers,
                    timeout=self.timeout,
                    on_progress=(lambda p: _progress(sink["ctx"] if sink else ctx, p)) if relay else None,
                    on_message=lambda m, p: _message(sink["ctx"] if sink else ctx, p),
                    on_request=on_request,
                    session=session,
                )
            except InputNeeded as need:
                answers = {
                    key: await on_request(r["method"], r.get("params") or {}) for key, r in need.requests.items()
                }
                sent = {**params, "inputResponses": answers}
                if need.request_state is not None:
                    sent["requestState"] = need.request_state
        raise ToolError(f"The upstream server '{self.name}' kept asking for input; the call was stopped.")

    async def _passed_through(
        self,
        method: str,
        params: dict[str, Any],
        ctx: Context,
        identity: str,
        headers: dict[str, str],
        session: UpstreamSession,
    ) -> dict[str, Any]:
        """A 2026-07-28 client of a 2026-07-28 upstream (MCP 2026-07-28 basic/patterns/mrtr), transparently: the
        client's capabilities and this round's ``inputResponses`` go upstream as sent, with the upstream's
        ``requestState`` from the previous round; the upstream's ``input_required`` comes back with its own keys
        and requests, its ``requestState`` carried inside the dispatcher's signed one, so a client can neither
        alter it nor use it for another call, another caller or twice.

        Raises:
            InputRequired: the upstream needs input from the client first.
        """
        sent = {**params, "_meta": _meta(ctx.client_capabilities)}
        if ctx.round_responses:
            sent["inputResponses"] = ctx.round_responses
        carried = ctx.carried
        if isinstance(carried, dict) and isinstance(carried.get(UPSTREAM_STATE), str):
            sent["requestState"] = carried[UPSTREAM_STATE]
        try:
            return await self.pool.call(
                method,
                sent,
                identity=identity,
                headers=headers,
                timeout=self.timeout,
                on_progress=(lambda p: _progress(ctx, p)) if ctx.progress_requested else None,
                on_message=lambda m, p: _message(ctx, p),
                session=session,
            )
        except InputNeeded as need:
            state = need.request_state
            raise InputRequired(need.requests, {UPSTREAM_STATE: state} if isinstance(state, str) else None) from None

    async def _bridged(
        self,
        method: str,
        params: dict[str, Any],
        ctx: Context,
        identity: str,
        headers: dict[str, str],
        session: UpstreamSession,
    ) -> dict[str, Any]:
        """A 2026-07-28 client that can answer (:func:`_can_answer`): run the upstream call in the background;
        park it when it asks the client."""
        principal = str(ctx.principal or "")
        entry = self.bridge.resume(ctx.input_answers, principal)
        if entry is None:
            sink: dict[str, Any] = {"ctx": ctx}

            def run(on_request: OnRequest) -> Awaitable[dict[str, Any]]:
                return self._rounds(method, params, ctx, identity, headers, on_request, sink, session=session)

            entry = self.bridge.start(principal, run)
            entry.sink = sink
        entry.sink["ctx"] = ctx
        return await self._step(entry)

    async def _step(self, entry: Parked) -> dict[str, Any]:
        step = await self.bridge.next_step(entry)
        if isinstance(step, dict):
            return step
        key, request = step
        raise InputRequired({key: request})


def _can_answer(ctx: Context) -> bool:
    """A 2026-07-28 client declared a capability an upstream can ask for, or is answering a parked question."""
    return not ctx.client_capabilities.keys().isdisjoint(ANSWERS) or bool(ctx.input_answers)


def _meta(caps: dict[str, Any] | None) -> dict[str, Any]:
    # MCP 2026-07-28: an upstream sends log messages only when the request names a level; every message is asked
    # for and the client's own level filters them (Context.log). A 2025-era upstream ignores both keys.
    meta: dict[str, Any] = {META_LOG_LEVEL: "debug"}
    if caps is not None:
        meta[META_CLIENT_CAPS] = caps
    return meta


async def _cannot_ask(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """An upstream's question to a 2026-07-28 client that declared no capability to answer it."""
    needed = ASKABLE.get(method)
    if needed is None:
        raise UpstreamError(METHOD_NOT_FOUND, f"Method not found: {method}")
    # MCP 2026-07-28: the same error a server gets for a request needing a capability the client lacks.
    raise UpstreamError(
        MISSING_CLIENT_CAPABILITY,
        f"This request needs the client capability '{needed}'",
        {"requiredCapabilities": {needed: {}}},
    )


async def _ask(ctx: Context, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """An upstream's question to a 2025-era client, over its session; a refusal is a JSON-RPC error upstream."""
    try:
        return await ctx.ask_one(method, params)
    except (ToolError, RpcError) as exc:
        raise UpstreamError(-32603 if isinstance(exc, ToolError) else exc.code, str(exc)) from None


async def _progress(ctx: Context, params: dict[str, Any]) -> None:
    progress = params.get("progress")
    if not isinstance(progress, int | float):
        return
    total = params.get("total")
    message = params.get("message")
    with contextlib.suppress(Exception):  # the client's stream may have ended (an earlier MRTR round)
        await ctx.report_progress(
            progress, total if isinstance(total, int | float) else None, message if isinstance(message, str) else None
        )


async def _message(ctx: Context, params: dict[str, Any]) -> None:
    level = params.get("level")
    logger = params.get("logger")
    with contextlib.suppress(Exception):
        await ctx.log(
            level if isinstance(level, str) else "info", params.get("data"), logger if isinstance(logger, str) else None
        )
