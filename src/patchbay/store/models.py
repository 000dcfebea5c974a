"""The store's tables as SQLAlchemy 2.0 typed declarative models, all on one ``Base``.

Each feature owns a group of tables whose names start with its own prefix (``kanban_``, later ``auth_``,
``audit_`` …), so the store can share a database with other software, and its schema changes live on its own
Alembic branch (see ``patchbay.store.migrate``). Adding a feature: add its models here (or in a sibling
module imported below), then a migration under ``migrations/versions`` with a new ``branch_labels``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Index, MetaData, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so later migrations can drop or alter them on every backend (SQLite batch
# mode needs names to find them).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now, server_default=func.now()
    )


# -- kanban (the demo connector) -------------------------------------------------------------------------------


class KanbanBoard(Timestamps, Base):
    __tablename__ = "kanban_boards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    columns: Mapped[list[KanbanColumn]] = relationship(
        back_populates="board", order_by="KanbanColumn.position", cascade="all, delete-orphan"
    )


class KanbanColumn(Base):
    __tablename__ = "kanban_columns"
    __table_args__ = (UniqueConstraint("board_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("kanban_boards.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int]
    board: Mapped[KanbanBoard] = relationship(back_populates="columns")


class KanbanCard(Timestamps, Base):
    __tablename__ = "kanban_cards"
    __table_args__ = (Index("ix_kanban_cards_column_position", "column_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    column_id: Mapped[int] = mapped_column(ForeignKey("kanban_columns.id", ondelete="CASCADE"))
    # 0-based order within the column; kept contiguous by every write.
    position: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    assignee: Mapped[str | None] = mapped_column(String(100))
    due_date: Mapped[dt.date | None]
    column: Mapped[KanbanColumn] = relationship()
    labels: Mapped[list[KanbanCardLabel]] = relationship(
        order_by="KanbanCardLabel.label", cascade="all, delete-orphan", lazy="selectin"
    )


class KanbanCardLabel(Base):
    """One label on one card: a table rather than a JSON list so filtering by label is plain, indexed SQL."""

    __tablename__ = "kanban_card_labels"

    card_id: Mapped[int] = mapped_column(ForeignKey("kanban_cards.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)


# -- auth (authorization server, API keys) ---------------------------------------------------------------------
# Times are epoch seconds (float): compared on every token check, and free of SQLite's naive-datetime pitfalls.
# Secrets (tokens, codes, keys, client secrets, browser sessions) are stored only as SHA-256 hex digests;
# passwords as argon2id hashes.


class AuthUser(Base):
    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(200), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(320))
    # Space-separated Patchbay roles.
    roles: Mapped[str] = mapped_column(Text, default="")
    # "issuer sub" for people who sign in through an upstream OpenID provider.
    subject: Mapped[str | None] = mapped_column(String(1024), unique=True)
    disabled: Mapped[bool] = mapped_column(default=False)
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[float | None]
    created_at: Mapped[float]


class AuthClient(Base):
    __tablename__ = "auth_clients"

    # An opaque id (dynamic registration, config) or an HTTPS URL (client ID metadata document).
    client_id: Mapped[str] = mapped_column(String(2048), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # "dcr" | "cimd" | "config"
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    auth_method: Mapped[str] = mapped_column(String(40))
    redirect_uris: Mapped[str] = mapped_column(Text)  # JSON list
    scope: Mapped[str | None] = mapped_column(Text)
    # The registration as the client sent it (RFC 7591 §3.2.1 echoes it back), JSON.
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[float]
    last_used_at: Mapped[float | None]
    revoked_at: Mapped[float | None]


class AuthRequest(Base):
    """An authorization request waiting for sign-in and consent (RFC 6749 §4.1.1)."""

    __tablename__ = "auth_requests"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(2048))
    redirect_uri: Mapped[str] = mapped_column(Text)
    state: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    resource: Mapped[str] = mapped_column(Text)
    csrf_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    # Upstream OpenID sign-in in progress: the state we sent (hashed), our PKCE verifier and nonce for it.
    upstream_state: Mapped[str | None] = mapped_column(String(64), index=True)
    upstream_verifier: Mapped[str | None] = mapped_column(String(128))
    upstream_nonce: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[float]


class AuthCode(Base):
    __tablename__ = "auth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    grant_id: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(2048))
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(Text)
    resource: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[float]
    used_at: Mapped[float | None]


class AuthToken(Base):
    """An access or refresh token. Tokens of one grant (one authorization code and its refreshes) share a
    grant_id, so a replayed code or refresh token revokes the whole family."""

    __tablename__ = "auth_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # "access" | "refresh"
    grant_id: Mapped[str] = mapped_column(String(32), index=True)
    client_id: Mapped[str] = mapped_column(String(2048), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    resource: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float]
    expires_at: Mapped[float]
    used_at: Mapped[float | None]  # a refresh token that was rotated
    revoked_at: Mapped[float | None]


class AuthConsent(Base):
    __tablename__ = "auth_consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float]


class AuthApiKey(Base):
    __tablename__ = "auth_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key, shown in listings so people can tell keys apart.
    hint: Mapped[str] = mapped_column(String(20))
    scopes: Mapped[str] = mapped_column(Text, default="")
    roles: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float]
    expires_at: Mapped[float | None]
    last_used_at: Mapped[float | None]
    revoked_at: Mapped[float | None]


class AuthRevocationEpoch(Base):
    """One row whose ``generation`` database triggers raise whenever a token, grant, API key, client or user is
    revoked, disabled, deleted or has its scopes or roles changed, whoever does it (the server, the CLI in another
    process, SQL by hand). A server trusts its verified-token cache only while the generation it read is current
    (migration ``auth_0002``)."""

    __tablename__ = "auth_revocation_epoch"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(default=0)


class AuthBrowserSession(Base):
    """A signed-in browser on the login pages (cookie), so a second authorization skips the password."""

    __tablename__ = "auth_browser_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("auth_users.id", ondelete="CASCADE"))
    expires_at: Mapped[float]


# -- sibling modules with tables of their own (imported so that Base.metadata holds every table) ---------------

from patchbay.gate import approval_models as _gate_approval_models  # noqa: E402, F401
from patchbay.gate import audit_models as _gate_audit_models  # noqa: E402, F401
from patchbay.gate import audit_retention_models as _gate_audit_retention  # noqa: E402, F401
from patchbay.gate import manifest_models as _gate_manifest_models  # noqa: E402, F401
from patchbay.links import models as _links_models  # noqa: E402, F401
