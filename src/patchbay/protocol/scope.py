"""The per-request scope: what one request's handlers may know about the caller and how to talk back to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Era = Literal["legacy", "modern"]
# How the request reached the server, as the audit trail records it (docs/audit.md).
Transport = Literal["streamable_http", "legacy_sse", "stdio", "in_process"]
TRANSPORTS: tuple[Transport, ...] = ("streamable_http", "legacy_sse", "stdio", "in_process")
# Sends one JSON-RPC message back on the request's stream (opening it as SSE on first use).
Send = Callable[[dict[str, Any]], Awaitable[None]]
# Sends a server-to-client request and waits for the client's answer (2025 era, over the session).
AskClient = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LOG_RANK = {name: rank for rank, name in enumerate(LOG_LEVELS)}


class InputRequired(Exception):
    """Raised inside a handler in the 2026-07-28 era when it needs input the client has not given yet (MRTR)."""

    def __init__(self, requests: dict[str, dict[str, Any]], carry: Any = None) -> None:
        super().__init__("input required")
        self.requests = requests
        # Sealed into the requestState and handed back on the retry (CallScope.carried): e.g. the requestState of
        # an upstream server whose input_required a proxy passes through.
        self.carry = carry


@dataclass(slots=True)
class CallScope:
    era: Era
    version: str
    request_id: Any
    method: str
    client_caps: dict[str, Any]
    client_info: dict[str, Any] | None = None
    # None: do not send notifications/message (2026-07-28 without logLevel). 2025-era transports start at "info".
    log_level: str | None = None
    progress_token: Any = None
    send: Send | None = None
    ask_client: AskClient | None = None
    # MRTR: answers the client gave (this round, and earlier rounds carried in requestState).
    input_responses: dict[str, Any] = field(default_factory=dict)
    # MRTR: this round's inputResponses exactly as the client sent them (no earlier rounds), and what the handler
    # asked to carry (InputRequired.carry) in the requestState of the previous round; None when nothing was.
    round_responses: dict[str, Any] = field(default_factory=dict)
    carried: Any = None
    principal: Any = None
    session: Any = None
    runtime: Any = None
    # Ends the current SSE response early; the client resumes with GET + Last-Event-ID (SSE polling).
    close_stream: Callable[[], Awaitable[None]] | None = None
    # Set by the gate's approvals when a granted approval is redeemed: the stored, approved arguments, which run
    # instead of the ones in the request (patchbay.gate.approvals).
    approved_arguments: dict[str, Any] | None = None
    # The HTTP request's short id (a valid incoming X-Request-Id, else generated; patchbay.observe.request_ref):
    # the same value in the log lines, the audit record and the trace span. None in programmatic use.
    request_ref: str | None = None
    # The request's params._meta as sent (not copied): traces take their parent from its traceparent/tracestate
    # (SEP-414). None when the request had none.
    meta: dict[str, Any] | None = None
    # The transport the request came in on; "in_process" for calls made from Python or the CLI.
    transport: Transport = "in_process"
    # Set by the limits step when it refuses the call over a rate or concurrency limit: the milliseconds after
    # which a retry may pass. HTTP transports answer it with Retry-After (docs/limits.md).
    retry_after_ms: int | None = None

    def wants_log(self, level: str) -> bool:
        if self.log_level is None or self.send is None:
            return False
        return LOG_RANK.get(level, 0) >= LOG_RANK.get(self.log_level, 0)
