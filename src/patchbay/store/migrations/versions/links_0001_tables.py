"""links: linked accounts, client registrations and pending authorizations of the upstream credential store

Revision ID: links_0001
Revises:
Create Date: 2026-12-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "links_0001"
down_revision: str | Sequence[str] | None = None
# Its own branch: `upgrade(engine, "links@head")` migrates only these tables.
branch_labels: str | Sequence[str] | None = ("links",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "links_accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("issuer", sa.String(2048), nullable=False),
        sa.Column("access_token", sa.Text(), nullable=False),
        sa.Column("refresh_token", sa.Text(), nullable=True),
        sa.Column("token_type", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links_accounts")),
        sa.UniqueConstraint("connector", "subject", name="uq_links_accounts_connector_subject"),
    )
    op.create_index("ix_links_accounts_subject", "links_accounts", ["subject"])
    op.create_table(
        "links_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("issuer", sa.String(2048), nullable=False),
        sa.Column("client_id", sa.String(2048), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=True),
        sa.Column("method", sa.String(20), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_links_clients")),
        sa.UniqueConstraint("connector", "issuer", name="uq_links_clients_connector_issuer"),
    )
    op.create_table(
        "links_pending",
        sa.Column("state_hash", sa.String(64), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("issuer", sa.String(2048), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_links_pending")),
    )


def downgrade() -> None:
    op.drop_table("links_pending")
    op.drop_table("links_clients")
    op.drop_index("ix_links_accounts_subject", table_name="links_accounts")
    op.drop_table("links_accounts")
