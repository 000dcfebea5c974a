"""Where an upstream MCP server is, and the callback types the client side uses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from patchbay.upstream.process import ProcessSpec

# (method, params) -> result, for server→client requests (sampling/createMessage, elicitation/create, roots/list).
# Raise UpstreamError to answer with a JSON-RPC error.
ServerRequestHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
# (method, params) for notifications from the upstream.
NotificationHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
ProgressHandler = Callable[[dict[str, Any]], Awaitable[None]]

Protocol = Literal["auto", "2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]


@dataclass(frozen=True, slots=True)
class Target:
    """An upstream: a stdio command (``process``), a Streamable HTTP endpoint (``kind="http"``, ``url``) or a
    legacy HTTP+SSE endpoint (``kind="sse"``, ``url`` of the GET stream).

    ``headers`` are static headers sent on every HTTP request (never logged); per-identity auth headers are given
    to :meth:`UpstreamPool.session`. ``protocol="auto"`` probes ``server/discover`` once and falls back to
    ``initialize``; a dated version pins the era (and, for the handshake era, the version offered).
    """

    kind: Literal["stdio", "http", "sse"]
    url: str | None = None
    process: ProcessSpec | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    protocol: Protocol = "auto"
    # A message line (stdio) or SSE event (HTTP) larger than this ends the session with a clear error.
    max_message_bytes: int = 16 * 1024 * 1024
