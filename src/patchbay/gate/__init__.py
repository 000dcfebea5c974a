"""The gate: every tools/list and tools/call passes here (policy, writes, approvals, manifest review).

`Decision` is what the gate answers for one call; the dispatcher refuses, asks for approval or runs on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from patchbay.settings import Settings

__all__ = ["Decision", "Effect", "approvals_wanted"]

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


def approvals_wanted(settings: Settings) -> bool:
    """Whether any call can be held: a [[policy]] rule or a writes switch says ``approve``. (Here, not in
    ``gate.approvals``: a server that holds nothing never imports the approval store, its vault or SQLAlchemy.)"""
    return (
        settings.gate.writes == "approve"
        or any(rule.effect == "approve" for rule in settings.policy)
        or any(connector.writes == "approve" for connector in settings.connectors)
    )
