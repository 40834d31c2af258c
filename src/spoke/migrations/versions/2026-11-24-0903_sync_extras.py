"""contact sync: manual list membership and HubSpot list

Retry backoff and HubSpot list membership on contact links, soft-delete marks, the
optional HubSpot list in the settings, parking of webhook batches that keep failing, and
the previous scope grant of a connection.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import spoke.core.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("contact_links", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("next_attempt_at", spoke.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("hubspot_list_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("marked_deleted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.create_index(
            "ix_contact_links_due", ["workspace_id", "state", "next_attempt_at"], unique=False
        )
    # Records failing before this migration are retried at the next run.
    op.execute(
        sa.text(
            "UPDATE contact_links SET next_attempt_at = updated_at "
            "WHERE state = 'failing' AND failures < 10"
        )
    )
    with op.batch_alter_table("contact_sync_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hubspot_list_id", sa.String(length=32), nullable=True))
    with op.batch_alter_table("hubspot_webhook_batches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(
            sa.Column("next_attempt_at", spoke.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("parked_at", spoke.core.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("hubspot_connections", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("previous_scopes", JSON, nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("hubspot_connections", schema=None) as batch_op:
        batch_op.drop_column("previous_scopes")
    with op.batch_alter_table("hubspot_webhook_batches", schema=None) as batch_op:
        batch_op.drop_column("parked_at")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("attempts")
    with op.batch_alter_table("contact_sync_settings", schema=None) as batch_op:
        batch_op.drop_column("hubspot_list_id")
    with op.batch_alter_table("contact_links", schema=None) as batch_op:
        batch_op.drop_index("ix_contact_links_due")
        batch_op.drop_column("marked_deleted")
        batch_op.drop_column("hubspot_list_id")
        batch_op.drop_column("next_attempt_at")
