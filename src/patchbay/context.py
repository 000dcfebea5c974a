"""The context a tool, resource or prompt handler may ask for, by annotating a parameter with ``Context``."""

from __future__ import annotations

from typing import Any

from patchbay.errors import RpcError, ToolError
from patchbay.protocol import jsonrpc
from patchbay.protocol.scope import CallScope, InputRequired


class Context:
    """Progress, logging, elicitation, sampling and roots for the running call, the same in every protocol era.

    In the 2025 era, requests to the client travel over the session's stream and are awaited. In the 2026-07-28
    era they become a multi round-trip result: the call ends with ``input_required``, the client answers and
    retries, and the handler runs again from the start; this time the same ``ask`` returns the answer. Handlers
    should therefore ask before they change anything.
    """

    __slots__ = ("_asked", "_scope")

    def __init__(self, scope: CallScope) -> None:
        self._scope = scope
        self._asked = 0

    @property
    def request_id(self) -> Any:
        return self._scope.request_id

    @property
    def protocol_version(self) -> str:
        return self._scope.version

    @property
    def client_capabilities(self) -> dict[str, Any]:
        return self._scope.client_caps

    @property
    def client_info(self) -> dict[str, Any] | None:
        return self._scope.client_info

    @property
    def principal(self) -> Any:
        """Who is calling; ``None`` until sign-in is configured."""
        return self._scope.principal

    @property
    def era(self) -> str:
        """``"modern"`` for a 2026-07-28 request, ``"legacy"`` for the 2025 handshake era."""
        return self._scope.era

    @property
    def session_id(self) -> str | None:
        """The 2025-era session this call belongs to; None for 2026-07-28 requests and sessionless transports."""
        session = self._scope.session
        return session.id if session is not None else None

    @property
    def input_answers(self) -> dict[str, Any]:
        """The answers the client gave to earlier ``input_required`` rounds of this call (2026-07-28), by key."""
        return dict(self._scope.input_responses)

    @property
    def round_responses(self) -> dict[str, Any]:
        """This round's ``inputResponses`` exactly as the client sent them (2026-07-28; earlier rounds excluded)."""
        return dict(self._scope.round_responses)

    @property
    def carried(self) -> Any:
        """What this call asked to carry through the client (``InputRequired.carry``), back from its
        ``requestState``; None on a first round."""
        return self._scope.carried

    @property
    def progress_requested(self) -> bool:
        """Whether :meth:`report_progress` reaches the client (it sent a progress token and can be sent to)."""
        scope = self._scope
        return scope.progress_token is not None and scope.send is not None

    async def report_progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        """Send ``notifications/progress`` if the client asked for progress on this request; else do nothing."""
        scope = self._scope
        if scope.progress_token is None or scope.send is None:
            return
        params: dict[str, Any] = {"progressToken": scope.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await scope.send({"jsonrpc": "2.0", "method": "notifications/progress", "params": params})

    async def log(self, level: str, data: Any, logger: str | None = None) -> None:
        """Send ``notifications/message`` at ``level`` when the client's chosen level lets it through."""
        scope = self._scope
        if not scope.wants_log(level):
            return
        params: dict[str, Any] = {"level": level, "data": data}
        if logger:
            params["logger"] = logger
        assert scope.send is not None
        await scope.send({"jsonrpc": "2.0", "method": "notifications/message", "params": params})

    async def debug(self, data: Any) -> None:
        await self.log("debug", data)

    async def info(self, data: Any) -> None:
        await self.log("info", data)

    async def warning(self, data: Any) -> None:
        await self.log("warning", data)

    async def error(self, data: Any) -> None:
        await self.log("error", data)

    async def close_stream(self) -> None:
        """End this request's SSE response now; the client resumes it with ``Last-Event-ID`` (2025-11-25 polling).

        Use it in long calls so no connection is held open; a no-op where the era or transport has no resumption.
        """
        if self._scope.close_stream is not None and self._scope.session is not None:
            await self._scope.close_stream()

    def lists_changed(self) -> None:
        """Say that the tool, prompt or resource lists changed: they are rebuilt and open streams are told."""
        runtime = self._scope.runtime
        if runtime is not None:
            runtime.lists_changed()

    def resource_updated(self, uri: str) -> None:
        """Tell clients subscribed to ``uri`` that it changed."""
        runtime = self._scope.runtime
        if runtime is not None:
            runtime.resource_updated(uri)

    async def elicit(self, message: str, schema: dict[str, Any], *, key: str | None = None) -> dict[str, Any]:
        """Ask the person for structured input (form mode). Returns ``{"action": ..., "content"?: {...}}``."""
        params = {"mode": "form", "message": message, "requestedSchema": schema}
        if self._scope.era == "legacy" and self._scope.version < "2025-11-25":
            params.pop("mode")
        return await self.ask_one("elicitation/create", params, key=key)

    async def sample(
        self,
        prompt: str | list[dict[str, Any]],
        *,
        max_tokens: int = 1000,
        system_prompt: str | None = None,
        key: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Ask the client's model for a completion (``sampling/createMessage``); returns the client's result."""
        messages = (
            [{"role": "user", "content": {"type": "text", "text": prompt}}] if isinstance(prompt, str) else prompt
        )
        params: dict[str, Any] = {"messages": messages, "maxTokens": max_tokens, **extra}
        if system_prompt is not None:
            params["systemPrompt"] = system_prompt
        return await self.ask_one("sampling/createMessage", params, key=key)

    async def list_roots(self, *, key: str | None = None) -> list[dict[str, Any]]:
        """The client's roots (``roots/list``)."""
        result = await self.ask_one("roots/list", {}, key=key)
        roots = result.get("roots", [])
        return roots if isinstance(roots, list) else []

    async def ask_one(self, method: str, params: dict[str, Any], *, key: str | None = None) -> dict[str, Any]:
        self._asked += 1
        name = key or f"{method.split('/')[0]}_{self._asked}"
        return (await self.ask({name: {"method": method, "params": params}}))[name]

    async def ask(self, requests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Send several requests to the client at once: ``{key: {"method": ..., "params": ...}}`` → answers by key.

        Raises:
            RpcError: -32021 when the client did not declare a capability a request needs (2026-07-28).
            ToolError: when the 2025-era client cannot take requests (no capability, no session stream).
        """
        scope = self._scope
        for request in requests.values():
            self._check_capability(request["method"])
        if scope.era == "modern":
            missing = {k: r for k, r in requests.items() if k not in scope.input_responses}
            if missing:
                raise InputRequired(missing)
            return {k: scope.input_responses[k] for k in requests}
        if scope.ask_client is None:
            raise ToolError("This call cannot ask the client for input: it has no session stream.")
        return {k: await scope.ask_client(r["method"], r["params"]) for k, r in requests.items()}

    def _check_capability(self, method: str) -> None:
        needed = _CAPABILITY_FOR.get(method)
        if needed is None or needed in self._scope.client_caps:
            return
        if self._scope.era == "modern":
            raise RpcError(
                jsonrpc.MISSING_CLIENT_CAPABILITY,
                f"This request needs the client capability '{needed}'",
                {"requiredCapabilities": {needed: {}}},
                status=400,
            )
        raise ToolError(f"The client did not declare the '{needed}' capability this tool needs.")


_CAPABILITY_FOR = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
