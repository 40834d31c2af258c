"""contact sync runs: how many contacts a run added to the settings' HubSpot list

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("contact_sync_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("list_adds", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    with op.batch_alter_table("contact_sync_runs", schema=None) as batch_op:
        batch_op.drop_column("list_adds")
