"""The MCP *client* side: how Patchbay talks to upstream MCP servers (the ``mcp`` connector's engine).

``UpstreamPool`` keeps one long-lived, initialised :class:`UpstreamSession` per credential identity over one of
three transports (``stdio``: newline-delimited JSON-RPC on a supervised process's pipes; ``http``: Streamable HTTP
in the 2025 handshake era or the stateless 2026-07-28 era; ``sse``: the 2024-11-05 HTTP+SSE transport), detects
the upstream's era once, re-initialises a lost session and retries a call only when the upstream never saw it.
HTTP goes through ``patchbay.outbound`` (one pooled client per pool, the configured host pinned).
"""

from patchbay.upstream.errors import (
    InputNeeded,
    SessionLost,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from patchbay.upstream.pool import UpstreamPool
from patchbay.upstream.session import UpstreamSession
from patchbay.upstream.target import NotificationHandler, ProgressHandler, ServerRequestHandler, Target

__all__ = [
    "InputNeeded",
    "NotificationHandler",
    "ProgressHandler",
    "ServerRequestHandler",
    "SessionLost",
    "Target",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamSession",
    "UpstreamTimeout",
    "UpstreamUnauthorized",
    "UpstreamUnavailable",
]
