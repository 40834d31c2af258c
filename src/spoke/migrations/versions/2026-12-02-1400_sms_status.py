"""SMS status callbacks find their delivery by the provider's message id

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.create_index("ix_deliveries_provider_message_id", ["provider_message_id"])


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_index("ix_deliveries_provider_message_id")
