"""auth: a revocation generation raised by triggers on every revoking change

Revision ID: auth_0002
Revises: auth_0001
Create Date: 2026-12-02

A server caches verified tokens in memory; it must notice a revocation made anywhere (its own endpoints, the
``patchbay`` CLI in another process, another replica, an operator's SQL) on the very next request. Triggers, not
application code, raise the generation, so no revoking path can forget to.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "auth_0002"
down_revision: str | Sequence[str] | None = "auth_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EPOCH = "auth_revocation_epoch"
BUMP = "UPDATE auth_revocation_epoch SET generation = generation + 1 WHERE id = 1"
BUMP_FUNCTION = "auth_bump_revocation_epoch"

# (trigger name, table, columns whose update may revoke (None: a DELETE), condition on OLD/NEW rows).
# "IS DISTINCT FROM" is null-safe on both SQLite (3.39+) and PostgreSQL.
TRIGGERS: tuple[tuple[str, str, tuple[str, ...] | None, str | None], ...] = (
    ("auth_tokens_revoked", "auth_tokens", ("revoked_at",), "NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL"),
    ("auth_tokens_deleted", "auth_tokens", None, None),
    (
        "auth_api_keys_changed",
        "auth_api_keys",
        ("revoked_at", "expires_at", "scopes", "roles"),
        "OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at"
        " OR OLD.scopes IS DISTINCT FROM NEW.scopes OR OLD.roles IS DISTINCT FROM NEW.roles",
    ),
    ("auth_api_keys_deleted", "auth_api_keys", None, None),
    (
        "auth_users_changed",
        "auth_users",
        ("disabled", "roles", "username"),
        "OLD.disabled IS DISTINCT FROM NEW.disabled OR OLD.roles IS DISTINCT FROM NEW.roles"
        " OR OLD.username IS DISTINCT FROM NEW.username",
    ),
    ("auth_users_deleted", "auth_users", None, None),
    ("auth_clients_revoked", "auth_clients", ("revoked_at",), "NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL"),
    ("auth_clients_deleted", "auth_clients", None, None),
)


def _event(columns: tuple[str, ...] | None) -> str:
    return f"UPDATE OF {', '.join(columns)}" if columns else "DELETE"


def _sqlite_trigger(name: str, table: str, columns: tuple[str, ...] | None, when: str | None) -> str:
    condition = f" WHEN {when}" if when else ""
    return f"CREATE TRIGGER {name} AFTER {_event(columns)} ON {table} FOR EACH ROW{condition} BEGIN {BUMP}; END"


def _postgres_trigger(name: str, table: str, columns: tuple[str, ...] | None, when: str | None) -> str:
    # Row-level, like SQLite's: a statement that changes no row (a prune with nothing due) raises nothing.
    condition = f" WHEN ({when})" if when else ""
    return (
        f"CREATE TRIGGER {name} AFTER {_event(columns)} ON {table} FOR EACH ROW{condition} "
        f"EXECUTE FUNCTION {BUMP_FUNCTION}()"
    )


def upgrade() -> None:
    op.create_table(
        EPOCH,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_revocation_epoch")),
    )
    op.execute("INSERT INTO auth_revocation_epoch (id, generation) VALUES (1, 0)")
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute(
            f"CREATE FUNCTION {BUMP_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"{BUMP}; RETURN NULL; END $$"
        )
    for trigger in TRIGGERS:
        op.execute(_postgres_trigger(*trigger) if postgres else _sqlite_trigger(*trigger))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, _, _ in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}" if postgres else f"DROP TRIGGER IF EXISTS {name}")
    if postgres:
        op.execute(f"DROP FUNCTION IF EXISTS {BUMP_FUNCTION}()")
    op.drop_table(EPOCH)
