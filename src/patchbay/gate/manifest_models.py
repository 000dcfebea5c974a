"""Tables of the reviewed tool manifest (migration ``gate_0001``): approved versions, their entries, and what the
server observes but nobody approved yet.

A version is the whole approved manifest at that point (every entry copied): reading "what is approved" is one
query for one version, and history is never rewritten. Proposed entries are written by the serving process
and read by ``patchbay manifest`` in another process, which so never needs to open a connector. Times are epoch
seconds, as in the auth tables.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from patchbay.store.models import Base


class ManifestVersion(Base):
    __tablename__ = "gate_manifest_versions"

    # Monotonic: a new approval is the previous number + 1; the primary key makes two racing approvals fail
    # rather than both win.
    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    digest: Mapped[str] = mapped_column(String(64))
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[float]
    # "review" (an operator approved), "open" (recorded as it went live), "first start" (review mode's baseline).
    mode: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")


class ManifestEntry(Base):
    __tablename__ = "gate_manifest_entries"

    version: Mapped[int] = mapped_column(
        ForeignKey("gate_manifest_versions.version", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # "tool" | "prompt" | "template"
    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    connector: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64))
    # The definition as digested, RFC 8785 JSON: what clients are served while a change to it is pending.
    definition: Mapped[str] = mapped_column(Text)


class ManifestProposed(Base):
    """A difference between the latest approved version and what the connectors publish now."""

    __tablename__ = "gate_manifest_proposed"

    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024), primary_key=True)
    connector: Mapped[str] = mapped_column(String(100))
    # The observed definition's digest and JSON; both empty for a removal.
    digest: Mapped[str] = mapped_column(String(64))
    definition: Mapped[str | None] = mapped_column(Text)
    # "proposed", or "rejected": kept so the same definition is not proposed again; a new one replaces it.
    state: Mapped[str] = mapped_column(String(10), default="proposed")
    observed_at: Mapped[float]
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[float | None]
