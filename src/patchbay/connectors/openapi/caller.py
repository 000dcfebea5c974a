"""One tool call to the API: build the request, add the credentials, send it over the pooled client, shape the answer.

Every operation's route (request builder, credentials, answer shaper, client, timeout, retry rule) is made once, at
open. A call holds one of ``max_in_flight`` slots per attempt, never while waiting to retry. Retries (RFC 9110
§9.2.2): only idempotent methods, or a POST/PATCH that carries the operation's idempotency key, on 429, 502, 503,
504 or a connection lost before an answer, after a jittered exponential backoff or the ``Retry-After`` the API
asked for (§10.2.3), never past ``MAX_WAIT`` or the operation's timeout. An OAuth token the API refuses (401) is
dropped and the call tried once more with a fresh one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from patchbay.connectors.openapi.auth import ApiCredentials, OperationAuth
from patchbay.connectors.openapi.models import Plan
from patchbay.connectors.openapi.options import OpenApiOptions, OperationOverride
from patchbay.connectors.openapi.request import ArgumentError, HttpRequest, RequestBuilder, compile_request
from patchbay.connectors.openapi.responses import Shaper, retry_after
from patchbay.context import Context
from patchbay.definitions import ToolResult
from patchbay.links import Credentials, LinkRequired, LinkUnavailable
from patchbay.outbound.origin import OriginClient, TooLarge
from patchbay.outbound.transport import FetchError, Refused

log = logging.getLogger("patchbay.connectors.openapi")

RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})  # RFC 9110 §9.2.2 (TRACE is never sent)
MAX_WAIT = 30.0  # the longest wait before a retry; an API asking for more gets its answer passed on
BASE_DELAY = 0.25
READ_FACTOR = 20  # an answer may be this many times the tool's cap before projection and cutting
MAX_READ = 64 * 1024 * 1024
_PAGING = frozenset(
    {"limit", "perpage", "pagesize", "size", "maxresults", "maxitems", "count", "top", "first", "max", "pagelen"}
)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class Route:
    """Everything one operation's calls need, made at open."""

    plan: Plan
    builder: RequestBuilder
    auth: OperationAuth
    shaper: Shaper
    client: OriginClient
    timeout: float
    idempotent: bool
    idempotency_header: str | None
    read_cap: int


@dataclass(slots=True)
class Outcome:
    """The last call's outcome, for health(): when, what went wrong ("" when it went through), and whether the API
    could not be reached at all."""

    at: float = 0.0
    problem: str = ""
    down: bool = False


class Caller:
    """Sends the calls of one connector's tools; ``invoke`` is the ``Invoke`` the tools are built with."""

    def __init__(
        self,
        label: str,
        options: OpenApiOptions,
        credentials: ApiCredentials,
        headers: dict[str, str],
        *,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.label = label
        self.options = options
        self.credentials = credentials
        self.headers = headers  # the configured extra headers, secrets already read
        self.sleep = sleep
        self.jitter = jitter
        self.last = Outcome()
        self._routes: dict[int, Route] = {}
        self._in_flight = asyncio.Semaphore(options.max_in_flight)

    def add_routes(
        self,
        plans: Iterable[Plan],
        route_to: Callable[[Plan], tuple[OriginClient, str]],
        output_schemas: dict[str, dict[str, Any] | None],
        defs: dict[str, Any],
    ) -> None:
        """Make a route for each plan: ``route_to(plan)`` gives its pooled client and base path."""
        overrides = overrides_by_key(self.options)
        for plan in plans:
            if id(plan) in self._routes:
                continue
            operation = plan.operation
            override = overrides.get(operation.key) or overrides.get(operation.operation_id or "")
            client, base_path = route_to(plan)
            cap = (override.max_response_bytes if override else None) or self.options.max_response_bytes
            shaper = Shaper(
                self.label,
                plan.tool_name,
                cap,
                output_schemas.get(plan.tool_name),
                tuple(override.fields) if override and override.fields else None,
                self.options.strict_output,
                paging_arguments(plan),
                self.credentials.secrets,
                f"{client.scheme}://{client.host_header}",
            )
            self._routes[id(plan)] = Route(
                plan,
                compile_request(plan, base_path=base_path, defs=defs),
                self.credentials.for_operation(operation),
                shaper,
                client,
                (override.timeout if override else None) or self.options.timeout,
                operation.method in IDEMPOTENT,
                operation.idempotency_header,
                min(max(cap * READ_FACTOR, 8 * 1024 * 1024), MAX_READ),
            )

    async def invoke(self, plan: Plan, arguments: dict[str, Any], ctx: Context) -> ToolResult:
        """The tool result of calling ``plan``'s operation with ``arguments``; every failure is a tool error.

        Raises:
            RpcError, InputRequired: the caller must link their account first and their client takes the link by
                URL elicitation (as :mod:`patchbay.connectors.mcp.proxy` offers it).
        """
        route = self._routes.get(id(plan))
        if route is None or route.plan is not plan:
            return ToolResult.error(f"The operation {plan.operation.key} is not available right now.")
        try:
            request = route.builder.build(arguments)
        except ArgumentError as exc:
            return ToolResult.error(f"Invalid arguments: {exc}")
        for name, value in self.headers.items():
            request.headers.setdefault(name, value)
        try:
            async with asyncio.timeout(route.timeout):
                result = await self._attempts(route, request, ctx)
        except TimeoutError:
            result = self._failed(f"The API did not answer within {route.timeout:g} seconds.", down=True)
        except LinkRequired as needed:
            from patchbay.links.answer import link_answer

            answer = link_answer(needed, ctx)
            return ToolResult(answer["content"], is_error=bool(answer["isError"]), meta=answer["_meta"])
        except LinkUnavailable as exc:
            result = self._failed(f"Patchbay cannot sign in to the API of '{self.label}': {exc}")
        return result

    def _failed(self, message: str, *, down: bool = False) -> ToolResult:
        self.last = Outcome(time.time(), message, down)
        return ToolResult.error(message)

    async def _attempts(self, route: Route, base: HttpRequest, ctx: Context) -> ToolResult:
        retryable = route.idempotent or (
            route.idempotency_header is not None and route.idempotency_header in base.headers
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + route.timeout
        request, used = await self._authorised(route, base, ctx)
        attempt, renewed = 0, False
        while True:
            try:
                async with self._in_flight:
                    response, body = await route.client.fetch(
                        request.method, request.headers, request.body, route.read_cap, target=request.target
                    )
            except TooLarge:
                return self._failed(
                    f"The API's answer is larger than {route.read_cap:,} bytes, too large to use; ask for less "
                    "(fewer items, a narrower filter)."
                )
            except Refused as exc:
                return self._failed(f"Patchbay refused to send the request: {exc}")
            except FetchError as exc:
                wait = self._backoff(attempt)
                if retryable and attempt < self.options.retries and loop.time() + wait < deadline:
                    attempt += 1
                    await self.sleep(wait)
                    continue
                return self._failed(f"Could not reach the API of '{self.label}': {exc}", down=True)
            status = response.status_code
            if status == 401 and used and not renewed:
                renewed = True  # the token may have been revoked or expired early: one more try with a fresh one
                for source, identity in used:
                    source.invalidate(identity)
                request, used = await self._authorised(route, base, ctx)
                continue
            if status in RETRY_STATUSES and retryable and attempt < self.options.retries:
                asked = retry_after(response.headers)
                wait = asked if asked is not None else self._backoff(attempt)
                if wait <= MAX_WAIT and loop.time() + wait < deadline:
                    attempt += 1
                    await self.sleep(wait)
                    continue
            path = request.target.partition("?")[0]
            result = route.shaper.result(
                status, response.headers, body, method=request.method, path=path, target=base.target
            )
            self.last = Outcome(time.time(), f"the API answered {status}" if status >= 500 else "")
            return result

    async def _authorised(
        self, route: Route, base: HttpRequest, ctx: Context
    ) -> tuple[HttpRequest, list[tuple[Credentials, str]]]:
        """A copy of ``base`` with the operation's credentials (a copy, so a retry after a 401 starts clean)."""
        request = HttpRequest(base.method, base.target, dict(base.headers), base.body)
        used = await route.auth.apply(request, ctx.principal)
        return request, used

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: half the step fixed, half random (so retries from many calls spread)."""
        step = min(MAX_WAIT, BASE_DELAY * 2.0**attempt)
        return step / 2 + step / 2 * self.jitter()


def overrides_by_key(options: OpenApiOptions) -> dict[str, OperationOverride]:
    """The configured overrides by operationId and by ``"METHOD /path"`` (method upper-cased)."""
    found: dict[str, OperationOverride] = {}
    for key, override in options.operations.items():
        method, _, path = key.strip().partition(" ")
        found[f"{method.upper()} {path.strip()}" if path else key] = override
    return found


def paging_arguments(plan: Plan) -> tuple[str, ...]:
    """The query arguments that look like page sizes (``limit``, ``per_page``, ``pageSize`` ...), for cut notes."""
    return tuple(
        arg
        for arg, target in plan.args.items()
        if target.location == "query" and target.name.lower().replace("_", "").replace("-", "") in _PAGING
    )
