"""users: an index on (workspace_id, id) for paging a workspace's users in id order

Backfills, segment fan-outs and the users list walk a workspace's users by id, 100 to
1,000 at a time. Without this index PostgreSQL read every user of the workspace past the
cursor and sorted them, per page: 8-12 ms a page at 60,000 users, growing with the table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 04:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_users_workspace_id", "users", ["workspace_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_users_workspace_id", table_name="users")
