"""Trying a tool from the console: one ``tools/call`` as a chosen local user, through the dispatcher's real path.

The call runs exactly as a client's would for that person (policy, write switches, approvals, limits, the audit
record): the principal is the one a token of the console's own client would carry, with the user's roles and the
scopes such a client is granted (``[auth] default_scopes``) plus those the tool itself needs, as a person signing
in to a client for this tool would consent to. The audit trail records the call as that user's through the client
``patchbay-console``; the console page adds an event naming the operator who tried it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from patchbay.auth.principal import Principal
from patchbay.catalog.hidden import escaped
from patchbay.errors import RpcError
from patchbay.gate import Decision

CLIENT_ID = "patchbay-console"
CLIENT_NAME = "Patchbay console"
ANONYMOUS = ""  # the form's value for "no user" when sign-in is off: every MCP caller is anonymous then
APPROVAL_META = "patchbay/approval"  # patchbay.gate.approvals.META_KEY


class TryRefused(Exception):
    """The try cannot run as asked; ``str(error)`` says why, for the operator."""


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a result, as text: ``label`` says what it is (text, structured content, an image ...)."""

    label: str
    text: str


@dataclass(slots=True)
class Tried:
    """What a try came to: the gate's decision for this caller and arguments, and the result as text parts."""

    tool: str
    caller: str
    decision: Decision | None
    is_error: bool
    parts: list[Part] = field(default_factory=list)
    approval_id: str | None = None
    request_ref: str = ""


def parse_arguments(text: str) -> dict[str, Any]:
    """The arguments a person typed, as a JSON object.

    Raises:
        TryRefused: not JSON (with the line and column), or JSON that is not an object.
    """
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise TryRefused(
            f"The arguments are not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from None
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("NoneType", "null").replace("dict", "object").replace("list", "array")
        raise TryRefused(f'The arguments must be a JSON object such as {{"id": 3}}, not {kind}.')
    return value


async def principal_for(runtime: Any, username: str, tool: str) -> Principal | None:
    """The caller to run as: a local user's principal, or None (anonymous) when sign-in is off.

    Raises:
        TryRefused: sign-in is on and ``username`` names no local account, or a disabled one.
    """
    auth = runtime.auth
    if auth is None:
        if username != ANONYMOUS:
            raise TryRefused('Sign-in is off ([auth] mode = "none"): every caller is anonymous; choose anonymous.')
        return None
    if not username:
        raise TryRefused("Choose the user to try the tool as.")
    user = await auth.core.run(auth.core.users.by_name, username)
    if user is None:
        raise TryRefused(f"There is no local user named {username!r}.")
    if user.disabled:
        raise TryRefused(f"The user {username!r} is disabled: their calls are refused before any tool runs.")
    access = runtime.catalog.access.get(tool)
    scopes = frozenset((*runtime.settings.auth.default_scopes, *(access.scopes if access is not None else ())))
    return Principal(
        f"user:{user.username}",
        "user",
        scopes,
        user.roles,
        user.username,
        CLIENT_ID,
        client_name=CLIENT_NAME,
    )


async def try_tool(runtime: Any, tool: str, arguments: dict[str, Any], principal: Principal | None) -> Tried:
    """Run ``tool`` with ``arguments`` as ``principal`` through the dispatcher, as a client's tools/call."""
    from patchbay.observe.request_ref import new_ref
    from patchbay.protocol.scope import CallScope

    gate = runtime.dispatcher.gate
    decision = gate.decide(tool, principal, arguments) if gate is not None else None
    ref = new_ref()
    scope = CallScope(
        era="legacy",
        version="2025-11-25",
        request_id=f"console-{ref}",
        method="tools/call",
        client_caps={},
        client_info={"name": CLIENT_NAME},
        principal=principal,
        runtime=runtime,
        transport="in_process",
        request_ref=ref,
    )
    caller = principal.subject if principal is not None else "anonymous"
    try:
        result = await runtime.dispatcher.dispatch("tools/call", {"name": tool, "arguments": arguments}, scope)
    except RpcError as exc:
        return Tried(tool, caller, decision, True, [Part("error", exc.message)], request_ref=ref)
    held = (result.get("_meta") or {}).get(APPROVAL_META) or {}
    tried = Tried(tool, caller, decision, bool(result.get("isError")), result_parts(result), request_ref=ref)
    tried.approval_id = held.get("approval_id") if isinstance(held, dict) else None
    return tried


def result_parts(result: dict[str, Any]) -> list[Part]:
    """A tools/call result as text a page can show: text content in full, other content described, and the
    structured content as JSON. Hidden characters are escaped: the operator sees what the model would read."""
    parts: list[Part] = []
    for item in result.get("content") or ():
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            parts.append(Part("text", escaped(str(item.get("text", "")))))
        elif kind in ("image", "audio"):
            size = len(str(item.get("data", ""))) * 3 // 4
            parts.append(Part(kind, f"{item.get('mimeType', '?')}, about {size:,} bytes (not shown)"))
        elif kind == "resource_link":
            parts.append(Part("resource link", escaped(f"{item.get('name', '')} {item.get('uri', '')}".strip())))
        elif kind == "resource":
            resource = item.get("resource") or {}
            text = resource.get("text")
            body = text if isinstance(text, str) else "(binary, not shown)"
            parts.append(Part(f"resource {escaped(str(resource.get('uri', '')))}", escaped(body)))
        else:
            parts.append(Part(str(kind or "content"), escaped(orjson.dumps(item).decode())))
    if "structuredContent" in result:
        shown = orjson.dumps(result["structuredContent"], option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        parts.append(Part("structured content", escaped(shown.decode())))
    return parts
