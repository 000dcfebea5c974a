"""One call through the gate pipeline (tools/call, resources/read, prompts/get), as the audit trail, the limits
and the metrics see it.

The dispatcher builds a :class:`Call` when a call enters dispatch and fills it in as the call moves through the
pipeline (gate decision, approval, limits, handler, result); every hook reads the same object, so the audit record,
the limit counters and the metrics describe one and the same call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

from patchbay.gate import Decision
from patchbay.protocol.scope import CallScope

__all__ = ["OUTCOMES", "Call", "Outcome"]

Outcome = Literal[
    "ok",
    "tool_error",
    "denied",
    "approval_pending",
    "rate_limited",
    "timed_out",
    "cancelled",
    "error",
    "unrecorded",
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)


@dataclass(slots=True)
class Call:
    method: str  # "tools/call" | "resources/read" | "prompts/get"
    name: str  # the tool or prompt public name, or the resource URI
    scope: CallScope
    arguments: dict[str, Any]
    started: float  # time.perf_counter() when the call entered dispatch
    at: float  # time.time() then
    # A tool without readOnlyHint: its intent is recorded (durably) BEFORE it runs.
    write: bool = False
    tool_digest: str = ""  # Catalog.digests[name]
    decision: Decision | None = None
    outcome: Outcome = "ok"
    # The deciding rule, the retry time, the error reference ... for people reading the trail; never a secret.
    detail: str | None = None
    result_bytes: int = 0
    approval_id: str | None = None
    # The seq of a write's intent record once it is committed; its completion record names it.
    intent_seq: int | None = None
