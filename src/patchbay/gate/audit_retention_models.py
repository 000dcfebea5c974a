"""The retention anchor's table (migration ``audit_0002``): where pruning cut the audit chain.

Kept apart from ``patchbay.gate.audit_retention`` so that ``patchbay.store.models`` can import every table without
importing the pruning code (which itself needs the store).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Double, String
from sqlalchemy.orm import Mapped, mapped_column

from patchbay.store.models import Base

__all__ = ["AuditAnchor"]


class AuditAnchor(Base):
    """Record ``seq`` (deleted, with everything before it) had hash ``hash``; one row, id 1."""

    __tablename__ = "audit_anchor"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    cutoff: Mapped[float] = mapped_column(Double)  # records were pruned when older than this (epoch seconds)
    pruned_at: Mapped[float] = mapped_column(Double)
