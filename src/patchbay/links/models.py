"""The tables of the upstream credential store (migration ``links_0001``, branch ``links``).

Tokens and client secrets are stored sealed by ``patchbay.vault``, each bound to its row's purpose (connector,
person, kind of secret), so a value copied into another row does not open. Times are epoch seconds (float), like
the auth tables.
"""

from __future__ import annotations

from sqlalchemy import Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patchbay.store.models import Base


class LinkAccount(Base):
    """One person's linked account at one connector's upstream: their tokens there."""

    __tablename__ = "links_accounts"
    __table_args__ = (
        UniqueConstraint("connector", "subject", name="uq_links_accounts_connector_subject"),
        Index("ix_links_accounts_subject", "subject"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(1024))  # user:<name>
    issuer: Mapped[str] = mapped_column(String(2048))
    access_token: Mapped[str] = mapped_column(Text)  # sealed: link:<connector>:<subject>:access
    refresh_token: Mapped[str | None] = mapped_column(Text)  # sealed: link:<connector>:<subject>:refresh
    token_type: Mapped[str] = mapped_column(String(40), default="Bearer")
    expires_at: Mapped[float | None]
    scopes: Mapped[str] = mapped_column(Text, default="")  # space-separated, as granted
    created_at: Mapped[float]
    updated_at: Mapped[float]


class LinkClient(Base):
    """Patchbay's client identity at one upstream authorization server, per connector."""

    __tablename__ = "links_clients"
    __table_args__ = (UniqueConstraint("connector", "issuer", name="uq_links_clients_connector_issuer"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(2048))
    client_id: Mapped[str] = mapped_column(String(2048))
    client_secret: Mapped[str | None] = mapped_column(Text)  # sealed: link-client:<connector>:<issuer>
    method: Mapped[str] = mapped_column(String(20))  # cimd | dcr | configured
    created_at: Mapped[float]


class LinkPending(Base):
    """An authorization in progress: the state sent to the upstream, bound to the person who started it."""

    __tablename__ = "links_pending"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    connector: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(1024))
    issuer: Mapped[str] = mapped_column(String(2048))
    verifier: Mapped[str] = mapped_column(Text)  # sealed: link-state:<state_hash>
    expires_at: Mapped[float]
