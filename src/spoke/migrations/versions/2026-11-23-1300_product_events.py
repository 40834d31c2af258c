"""product events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 11:50:17.041843
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import spoke.core.db

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "known_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_core", sa.Boolean(), nullable=False),
        sa.Column("volume", sa.BigInteger(), nullable=False),
        sa.Column("first_seen_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_known_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_events")),
        sa.UniqueConstraint(
            "workspace_id", "type", "name", name=op.f("uq_known_events_workspace_id_type_name")
        ),
    )
    op.create_table(
        "product_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("occurred_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("received_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_product_events_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_events")),
    )
    with op.batch_alter_table("product_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_product_events_user", ["workspace_id", "external_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_product_events_workspace_id_id", ["workspace_id", "id"], unique=False
        )
        batch_op.create_index(
            "uq_product_events_key",
            ["workspace_id", "event_key"],
            unique=True,
            sqlite_where=sa.text("event_key IS NOT NULL"),
            postgresql_where=sa.text("event_key IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("product_events", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_product_events_key",
            sqlite_where=sa.text("event_key IS NOT NULL"),
            postgresql_where=sa.text("event_key IS NOT NULL"),
        )
        batch_op.drop_index("ix_product_events_workspace_id_id")
        batch_op.drop_index("ix_product_events_user")

    op.drop_table("product_events")
    op.drop_table("known_events")
