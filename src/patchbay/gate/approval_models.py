"""The table of human approvals (migration ``gate_0002``): one row per held call, bound to the caller, the tool's
definition digest and the RFC 8785 digest of its arguments.

The arguments are sealed at rest with ``patchbay.vault`` (migration ``gate_0003``); approvers see a redacted copy.

Times are epoch seconds (float), like the auth tables. ``status`` moves pending → approved → used, or pending →
denied; ``void`` marks an approval whose tool changed or disappeared before it ran. Expiry is not a stored status:
a row is expired when ``expires_at`` has passed (see ``patchbay.gate.approval_store.effective_status``).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from patchbay.store.models import Base


class GateApproval(Base):
    __tablename__ = "gate_approvals"
    __table_args__ = (Index("ix_gate_approvals_call", "subject", "tool", "args_digest"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    status: Mapped[str] = mapped_column(String(10))  # pending | approved | denied | used | void
    subject: Mapped[str] = mapped_column(String(1024))
    username: Mapped[str | None] = mapped_column(String(200))
    client_id: Mapped[str] = mapped_column(String(2048), default="")
    client_name: Mapped[str | None] = mapped_column(String(200))
    tool: Mapped[str] = mapped_column(String(200))
    tool_digest: Mapped[str] = mapped_column(String(64))
    args_digest: Mapped[str] = mapped_column(String(64))
    # The arguments as the caller sent them, JSON: exactly these run once approved. Sealed with the vault (context
    # "approval:<id>") when ``sealed``; rows held before migration gate_0003 are in clear.
    arguments: Mapped[str] = mapped_column(Text)
    sealed: Mapped[bool] = mapped_column(Boolean, default=False)
    # What an approver is shown: the arguments redacted as the audit trail redacts them (JSON), and how many fields
    # that hides. NULL for rows held before gate_0003.
    shown: Mapped[str | None] = mapped_column(Text)
    hidden: Mapped[int] = mapped_column(Integer, default=0)
    # The rule that asked for approval and its sentence (patchbay.gate.Decision), shown to the approver.
    rule: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text, default="")
    # Space-separated usernames of the people who approved so far (two with required_approvals = 2).
    approved_by: Mapped[str] = mapped_column(Text, default="")
    decided_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[float]
    expires_at: Mapped[float]
    decided_at: Mapped[float | None]
    used_at: Mapped[float | None]
