"""The gate: every tools/list and tools/call passes here (policy, writes, approvals, manifest review).

`Decision` is what the gate answers for one call; the dispatcher refuses, asks for approval or runs on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Decision", "Effect"]

Effect = Literal["allow", "deny", "approve"]


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer for one call.

    `rule` names what decided, for people and the audit trail: "policy[2]" (the index in [[policy]], or the rule's
    `id` when given), "writes (connector crm)", "writes (global)", "scopes" or "default". `reason` is one sentence a
    user can read, naming the rule, e.g. "denied by policy[2] (nobody writes to files_*)".
    """

    effect: Effect
    rule: str
    reason: str
