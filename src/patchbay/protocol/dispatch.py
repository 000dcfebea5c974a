"""Method → handler, for both eras. Handlers take ``(params, scope)`` and return a result dict or raise RpcError.

Transport concerns (sessions, headers, streams) stay in ``patchbay.transport``; era differences that show in
results (``resultType``, cache hints, server identity in ``_meta``) are applied once, in :meth:`finish`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from patchbay.catalog import Catalog
from patchbay.context import Context
from patchbay.definitions import ToolResult
from patchbay.errors import RpcError, ToolError
from patchbay.gate.calls import Call
from patchbay.protocol import jsonrpc, versions
from patchbay.protocol.mrtr import StateSigner, request_digest
from patchbay.protocol.scope import LOG_RANK, CallScope, InputRequired

log = logging.getLogger("patchbay.protocol")

T = TypeVar("T")
Handler = Callable[[dict[str, Any], CallScope], Awaitable[dict[str, Any]]]
# MCP 2026-07-28 server/utilities/caching: these results carry ttlMs and cacheScope.
CACHEABLE = {
    "server/discover",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
}
MRTR_METHODS = {"tools/call", "resources/read", "prompts/get"}
# Methods the 2026-07-28 revision removed; a modern request for them gets 404 + -32601.
LEGACY_ONLY = {"initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"}
MODERN_ONLY = {"server/discover", "subscriptions/listen"}
# Where a held call's result names its approval (patchbay.gate.approvals.META_KEY; not imported: gate → protocol).
APPROVAL_META = "patchbay/approval"


@dataclass(slots=True)
class ServerInfo:
    name: str
    version: str
    title: str | None = None
    description: str | None = None
    website_url: str | None = None
    instructions: str | None = None
    list_ttl_ms: int = 60_000

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"name": self.name, "version": self.version}
        if self.title:
            wire["title"] = self.title
        if self.description:
            wire["description"] = self.description
        if self.website_url:
            wire["websiteUrl"] = self.website_url
        return wire


CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "prompts": {"listChanged": True},
    "logging": {},
    "completions": {},
}
MODERN_CAPABILITIES: dict[str, Any] = {
    "tools": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "prompts": {"listChanged": True},
    "logging": {},
    "completions": {},
}


@dataclass
class Dispatcher:
    catalog: Catalog
    info: ServerInfo
    state_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # The gate every list and call passes (patchbay.gate.policy.Gate): listed(principal) and decide(name,
    # principal, arguments). None (programmatic use): every tool is listed and callable.
    gate: Any = None
    # Human approval of calls the gate marks "approve" (patchbay.gate.approvals); None: such calls are refused.
    approvals: Any = None
    # The call pipeline's hooks (patchbay.gate.calls.Call describes the call to each); None skips the step.
    # audit: intent(call) before a write runs, finish(call) for every call (patchbay.gate.audit.AuditRecorder).
    audit: Any = None
    # limits: admit(call), slot(call), timeout(call), cap(call, wire) (patchbay.gate.limits).
    limits: Any = None
    # metrics: observe(call), after the audit record (patchbay.observe).
    metrics: Any = None
    # Passes a client's resources/subscribe to the resource's source (an upstream MCP server); None: kept here only.
    on_subscribe: Callable[[str], Awaitable[None]] | None = None
    handlers: dict[str, Handler] = field(init=False)
    signer: StateSigner = field(init=False)
    _server_meta: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.signer = StateSigner(self.state_key)
        self._server_meta = {versions.META_SERVER_INFO: self.info.to_wire()}
        self.handlers = {
            "ping": self.ping,
            "server/discover": self.discover,
            "tools/list": self.tools_list,
            "tools/call": self.tools_call,
            "resources/list": self.resources_list,
            "resources/templates/list": self.templates_list,
            "resources/read": self.resources_read,
            "prompts/list": self.prompts_list,
            "prompts/get": self.prompts_get,
            "completion/complete": self.complete,
            "logging/setLevel": self.set_level,
            "resources/subscribe": self.subscribe,
            "resources/unsubscribe": self.unsubscribe,
        }

    def knows(self, method: str, era: str) -> bool:
        if era == "modern":
            return method in self.handlers and method not in LEGACY_ONLY
        return method in self.handlers and method not in MODERN_ONLY

    async def dispatch(self, method: str, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        """Run one request and return its finished result.

        Raises:
            RpcError: the request fails as a whole (unknown method, bad params, missing capability).
        """
        if not self.knows(method, scope.era):
            raise jsonrpc.method_not_found(method, status=404 if scope.era == "modern" else 200)
        if scope.era == "modern" and method in MRTR_METHODS:
            return await self._with_mrtr(method, params, scope)
        return self.finish(method, await self.handlers[method](params, scope), scope)

    def finish(self, method: str, result: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        if scope.era != "modern":
            return result
        result["resultType"] = "complete"
        meta = result.get("_meta")
        result["_meta"] = {**meta, **self._server_meta} if meta else self._server_meta
        if method in CACHEABLE:
            result["ttlMs"] = 0 if method == "resources/read" else self.info.list_ttl_ms
            private = method == "resources/read" or (
                method == "tools/list" and self.gate is not None and self.gate.per_caller
            )
            result["cacheScope"] = "private" if private else "public"
        return result

    async def _with_mrtr(self, method: str, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        def digest() -> str:  # computed only when a round trip is involved: the plain call never pays for it
            target = params.get("name", params.get("uri", ""))
            return request_digest(method, str(target), params.get("arguments"), str(scope.principal or ""))

        answers: dict[str, Any] = {}
        if "requestState" in params:
            opened, scope.carried = await self.signer.open_once(params["requestState"], digest())
            answers.update(opened)
        responses = params.get("inputResponses")
        if responses is not None:
            if not isinstance(responses, dict) or not all(isinstance(v, dict) for v in responses.values()):
                raise jsonrpc.invalid_params(
                    "inputResponses must be an object mapping each input request key to the client's result object"
                )
            answers.update(responses)
            scope.round_responses = responses
        scope.input_responses = answers
        try:
            return self.finish(method, await self.handlers[method](params, scope), scope)
        except InputRequired as asked:
            return {
                "resultType": "input_required",
                "inputRequests": asked.requests,
                "requestState": self.signer.seal(digest(), answers, asked.carry),
                "_meta": self._server_meta,
            }

    # -- handlers --------------------------------------------------------------------------------------------

    async def ping(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        return {}

    def initialize_result(self, version: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": CAPABILITIES,
            "serverInfo": self.info.to_wire(),
        }
        if self.info.instructions:
            result["instructions"] = self.info.instructions
        return result

    async def discover(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        result: dict[str, Any] = {
            "supportedVersions": list(versions.DISCOVER_VERSIONS),
            "capabilities": MODERN_CAPABILITIES,
            "serverInfo": self.info.to_wire(),
        }
        if self.info.instructions:
            result["instructions"] = self.info.instructions
        return result

    async def tools_list(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        _no_cursor(params)
        if self.gate is not None:
            return {"tools": self.gate.listed(scope.principal)}
        return {"tools": self.catalog.tools_wire}

    async def tools_call(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        name = params.get("name")
        if not isinstance(name, str):
            raise jsonrpc.invalid_params("tools/call needs params.name, a string")
        tool = self.catalog.tools.get(name)
        if tool is None:
            raise jsonrpc.invalid_params(f"Unknown tool: {name}")
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        elif not isinstance(arguments, dict):
            raise jsonrpc.invalid_params("tools/call params.arguments must be an object")
        call = Call(
            "tools/call",
            name,
            scope,
            arguments,
            time.perf_counter(),
            time.time(),
            write=not tool.annotations.read_only,
            tool_digest=self.catalog.digests.get(name, ""),
        )
        refusal = await self._admit(call)
        if refusal is not None:
            return await self._done(call, refusal)
        if tool.requires:
            _require_capabilities(tool.requires, scope)
        return await self._run(call, lambda: self._tool(call, tool))

    async def _admit(self, call: Call) -> dict[str, Any] | None:
        """The gate, approvals, limits and the audit intent, in that order: the first that refuses the call
        answers it (and ``call.outcome`` says which); None lets it run."""
        if self.gate is not None and call.method == "tools/call":
            decision = call.decision = self.gate.decide(call.name, call.scope.principal, call.arguments)
            if decision.effect == "deny" or (decision.effect == "approve" and self.approvals is None):
                # An "approve" nobody can give fails closed: the call must not run.
                call.outcome, call.detail = "denied", decision.rule
                return self.gate.refuse(call.name, call.scope.principal, decision)  # type: ignore[no-any-return]
            if decision.effect == "approve":
                held = await self.approvals.admit(call.name, call.tool_digest, call.arguments, call.scope, decision)
                if held is not None:
                    call.outcome, call.detail = "approval_pending", decision.rule
                    call.approval_id = (held.get("_meta") or {}).get(APPROVAL_META, {}).get("approval_id")
                    return held  # type: ignore[no-any-return]
                # Exactly what the approver saw runs, whatever this request carries.
                if call.scope.approved_arguments is not None:
                    call.arguments = call.scope.approved_arguments
        if self.limits is not None:
            refused = await self.limits.admit(call)
            if refused is not None:
                call.outcome = "rate_limited"
                return refused  # type: ignore[no-any-return]
        if self.audit is not None:
            return await self.audit.intent(call)  # type: ignore[no-any-return]
        return None

    async def _run(self, call: Call, work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run an admitted call inside its connector's concurrency slot and its timeout, then finish it."""
        try:
            if self.limits is None:
                wire = await work()
            else:
                wire = await self._limited(call, work)
        except asyncio.CancelledError:
            call.outcome = "cancelled"
            await asyncio.shield(self._finish(call))
            raise
        except InputRequired:
            call.detail = "input_required"
            await self._finish(call)
            raise
        except RpcError as exc:
            call.outcome, call.detail = "error", f"JSON-RPC error {exc.code}"
            await self._finish(call)
            raise
        return await self._done(call, wire)

    async def _limited(self, call: Call, work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        seconds = self.limits.timeout(call)
        async with self.limits.slot(call):
            if seconds is None:
                return await work()
            try:
                return await _within(seconds, work)
            except TimeoutError:  # handlers turn their own exceptions into results: this is the deadline
                call.outcome, call.detail = "timed_out", f"{seconds:g} s"
        text = f"'{call.name}' did not finish within {seconds:g} seconds and was stopped."
        if call.method != "tools/call":
            raise RpcError(jsonrpc.INTERNAL_ERROR, text)
        return ToolResult.error(text).to_wire()

    async def _done(self, call: Call, wire: dict[str, Any]) -> dict[str, Any]:
        if call.method == "tools/call" and "structuredContent" not in wire and not wire.get("isError"):
            wire = self._unstructured(call.name, wire)
        if call.outcome == "ok" and wire.get("isError"):
            call.outcome = "tool_error"
        if self.limits is not None:
            wire = self.limits.cap(call, wire)
        if self.audit is not None or self.metrics is not None:
            call.result_bytes = len(orjson.dumps(wire, default=str, option=orjson.OPT_NON_STR_KEYS))
        replaced = await self._finish(call)
        return wire if replaced is None else replaced

    def _unstructured(self, name: str, wire: dict[str, Any]) -> dict[str, Any]:
        """``wire`` marked ``isError`` when the tool declares an output schema: MCP 2025-06-18 server/tools
        (structured content) says such a tool MUST return ``structuredContent`` unless the result is an error, and
        SDK clients refuse the result otherwise. A held call's approval link, an account-link request or an
        upstream that left it out have none, so they are answered as errors (the text still reaches the model)."""
        tool = self.catalog.tools.get(name)
        if tool is None or tool.output_schema is None:
            return wire
        return {**wire, "isError": True}

    async def _finish(self, call: Call) -> dict[str, Any] | None:
        replaced = None
        if self.audit is not None:
            replaced = await self.audit.finish(call)
        if self.metrics is not None:
            self.metrics.observe(call)
        return replaced

    async def _tool(self, call: Call, tool: Any) -> dict[str, Any]:
        try:
            result = await tool.handler(call.arguments, Context(call.scope))
        except ToolError as exc:
            result = ToolResult.error(exc.message)
        except (RpcError, InputRequired):
            raise
        except Exception:
            reference = secrets.token_hex(4)
            log.exception("tool %s failed (reference %s)", call.name, reference)
            call.outcome, call.detail = "error", f"reference {reference}"
            result = ToolResult.error(
                f"Tool '{call.name}' failed unexpectedly. The server log has the details (reference {reference})."
            )
        return result.to_wire()  # type: ignore[no-any-return]

    async def resources_list(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        _no_cursor(params)
        return {"resources": self.catalog.resources_wire}

    async def templates_list(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        _no_cursor(params)
        return {"resourceTemplates": self.catalog.templates_wire}

    async def resources_read(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        uri = params.get("uri")
        if not isinstance(uri, str):
            raise jsonrpc.invalid_params("resources/read needs params.uri, a string")
        ctx = Context(scope)
        fixed = self.catalog.resources.get(uri)
        if fixed is not None:
            work = functools.partial(fixed.handler, uri, {}, ctx)
        else:
            found = self.catalog.find_template(uri)
            if found is None:
                raise _resource_not_found(uri, scope)
            work = functools.partial(found[0].handler, uri, found[1], ctx)
        call = Call("resources/read", uri, scope, {}, time.perf_counter(), time.time())
        refusal = await self._admit(call)
        if refusal is not None:
            raise _refused(refusal)

        async def read() -> dict[str, Any]:
            return {"contents": await _guarded(work(), f"reading {uri}")}

        return await self._run(call, read)

    async def prompts_list(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        _no_cursor(params)
        return {"prompts": self.catalog.prompts_wire}

    async def prompts_get(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        name = params.get("name")
        prompt = self.catalog.prompts.get(name) if isinstance(name, str) else None
        if prompt is None:
            raise jsonrpc.invalid_params(f"Unknown prompt: {name}")
        arguments = params.get("arguments") or {}
        if not isinstance(arguments, dict):
            raise jsonrpc.invalid_params("prompts/get params.arguments must be an object")
        missing = [a.name for a in prompt.arguments if a.required and a.name not in arguments]
        if missing:
            raise jsonrpc.invalid_params(f"Prompt '{name}' is missing required arguments: {', '.join(missing)}")
        call = Call("prompts/get", str(name), scope, arguments, time.perf_counter(), time.time())
        refusal = await self._admit(call)
        if refusal is not None:
            raise _refused(refusal)

        async def render() -> dict[str, Any]:
            result = await _guarded(prompt.handler(arguments, Context(scope)), f"rendering prompt '{name}'")
            return result.to_wire()

        return await self._run(call, render)

    async def complete(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        ref = params.get("ref") or {}
        argument = params.get("argument") or {}
        if not isinstance(ref, dict) or not isinstance(argument, dict):
            raise jsonrpc.invalid_params("completion/complete needs params.ref and params.argument objects")
        completers: dict[str, Any] = {}
        if ref.get("type") == "ref/prompt":
            prompt = self.catalog.prompts.get(str(ref.get("name")))
            if prompt is None:
                raise jsonrpc.invalid_params(f"Unknown prompt: {ref.get('name')}")
            completers = prompt.completions
        elif ref.get("type") == "ref/resource":
            uri = str(ref.get("uri"))
            template = next((t for t in self.catalog.templates if t.uri_template == uri), None)
            if template is None and uri not in self.catalog.resources:
                raise jsonrpc.invalid_params(f"Unknown resource or template: {uri}")
            completers = template.completions if template else {}
        else:
            raise jsonrpc.invalid_params("params.ref.type must be 'ref/prompt' or 'ref/resource'")
        completer = completers.get(str(argument.get("name")))
        context = params.get("context") or {}
        context = context.get("arguments") if isinstance(context, dict) else None
        if not isinstance(context, dict):
            context = {}
        values = await completer(str(argument.get("value", "")), context) if completer else []
        return {"completion": {"values": values[:100], "total": len(values), "hasMore": len(values) > 100}}

    async def set_level(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        level = params.get("level")
        if not isinstance(level, str) or level not in LOG_RANK:
            raise jsonrpc.invalid_params(f"Unknown log level {level!r}; use one of {', '.join(LOG_RANK)}")
        if scope.session is not None:
            await scope.session.set_level(level)
        return {}

    async def subscribe(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        uri = _uri(params)
        if self.on_subscribe is not None:
            await _guarded(self.on_subscribe(uri), f"subscribing to {uri}")
        if scope.session is not None:
            await scope.session.subscribe(uri)
        return {}

    async def unsubscribe(self, params: dict[str, Any], scope: CallScope) -> dict[str, Any]:
        uri = _uri(params)
        if scope.session is not None:
            await scope.session.unsubscribe(uri)
        return {}


async def _within(seconds: float, work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``, cancelled after ``seconds`` and then raising TimeoutError: the contract of
    ``asyncio.timeout`` (Python 3.11 asyncio/timeouts.py: a cancellation from elsewhere stays a CancelledError, the
    timer's own cancel is taken back with ``uncancel``), as one loop timer. The gate arms one per call, and the
    context manager's object, states and second running-loop lookup cost about as much as the timer itself.

    Raises:
        TimeoutError: ``work`` did not finish within ``seconds``.
    """
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("a deadline needs a running task")
    cancelling = task.cancelling()
    fired: list[bool] = []
    handle = task.get_loop().call_later(seconds, _expire, task, fired)
    try:
        result = await work()
    except BaseException as exc:
        handle.cancel()
        if fired and task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
            raise TimeoutError from exc
        raise
    handle.cancel()
    if fired:
        task.uncancel()
    return result


def _expire(task: asyncio.Task[Any], fired: list[bool]) -> None:
    fired.append(True)
    task.cancel()


async def _guarded(work: Awaitable[T], what: str) -> T:
    """Run a resource or prompt handler: its ToolError is the client's mistake (-32602); anything else is ours,
    logged with a reference and answered without its text, which may hold secrets."""
    try:
        return await work
    except ToolError as exc:
        raise jsonrpc.invalid_params(exc.message) from None
    except (RpcError, InputRequired):
        raise
    except Exception:
        reference = secrets.token_hex(4)
        log.exception("%s failed (reference %s)", what, reference)
        raise RpcError(
            jsonrpc.INTERNAL_ERROR, f"{what[:1].upper()}{what[1:]} failed unexpectedly (reference {reference})"
        ) from None


def _refused(result: dict[str, Any]) -> RpcError:
    """A refusal of a resources/read or prompts/get (limits, audit) as the JSON-RPC error those methods use."""
    content = result.get("content") or [{}]
    text = content[0].get("text", "Refused") if isinstance(content[0], dict) else "Refused"
    return RpcError(jsonrpc.INTERNAL_ERROR, str(text), result.get("_meta"))


def _uri(params: dict[str, Any]) -> str:
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise jsonrpc.invalid_params("params.uri must be a string")
    return uri


def _no_cursor(params: dict[str, Any]) -> None:
    # Every list fits one page today, so no cursor was ever handed out.
    if params.get("cursor") is not None:
        raise jsonrpc.invalid_params("Invalid cursor")


def _resource_not_found(uri: str, scope: CallScope) -> RpcError:
    if scope.era == "modern":  # SEP-2164: -32602 replaces -32002
        return jsonrpc.invalid_params(f"Resource not found: {uri}", {"uri": uri})
    return RpcError(jsonrpc.RESOURCE_NOT_FOUND_LEGACY, f"Resource not found: {uri}", {"uri": uri})


def _require_capabilities(required: dict[str, Any], scope: CallScope) -> None:
    missing = {k: v for k, v in required.items() if k not in scope.client_caps}
    if not missing:
        return
    if scope.era == "modern":
        raise RpcError(
            jsonrpc.MISSING_CLIENT_CAPABILITY,
            f"This tool needs the client capabilities: {', '.join(missing)}",
            {"requiredCapabilities": missing},
            status=400,
        )
    raise RpcError(jsonrpc.INVALID_PARAMS, f"This tool needs the client capabilities: {', '.join(missing)}")
