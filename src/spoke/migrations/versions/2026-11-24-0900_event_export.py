"""event export to HubSpot

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import spoke.core.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_export_usage",
        sa.Column("portal_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("portal_id", "month", name=op.f("pk_event_export_usage")),
    )
    op.create_table(
        "event_export_batches",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column(
            "item_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("from_waiting", sa.Boolean(), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("created_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_export_batches_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_export_batches")),
    )
    with op.batch_alter_table("event_export_batches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_export_batches_workspace", ["workspace_id", "id"], unique=False
        )

    op.create_table(
        "event_export_definitions",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("portal_id", sa.BigInteger(), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("event_name", sa.String(length=200), nullable=False),
        sa.Column("rollup", sa.Boolean(), nullable=False),
        sa.Column("hubspot_name", sa.String(length=64), nullable=False),
        sa.Column("fully_qualified_name", sa.String(length=100), nullable=True),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "dropped",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_export_definitions_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_export_definitions")),
        sa.UniqueConstraint(
            "workspace_id",
            "portal_id",
            "event_type",
            "event_name",
            "rollup",
            name="uq_event_export_definitions_event",
        ),
        sa.UniqueConstraint(
            "workspace_id", "portal_id", "hubspot_name", name="uq_event_export_definitions_name"
        ),
    )
    op.create_table(
        "event_export_identities",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("identity_key", sa.String(length=330), nullable=False),
        sa.Column("hubspot_id", sa.String(length=32), nullable=True),
        sa.Column("matched_by", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("checked_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_export_identities_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "workspace_id", "identity_key", name=op.f("pk_event_export_identities")
        ),
    )
    op.create_table(
        "event_export_marks",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("identity_key", sa.String(length=330), nullable=True),
        sa.Column("updated_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_export_marks_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "event_id", name=op.f("pk_event_export_marks")),
    )
    with op.batch_alter_table("event_export_marks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_export_marks_state", ["workspace_id", "state", "reason"], unique=False
        )

    op.create_table(
        "event_export_rollups",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("identity_key", sa.String(length=330), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("event_type", sa.String(length=16), nullable=False),
        sa.Column("event_name", sa.String(length=200), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_export_rollups_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_export_rollups")),
        sa.UniqueConstraint(
            "workspace_id",
            "identity_key",
            "event_type",
            "event_name",
            "day",
            "part",
            name="uq_event_export_rollups_group",
        ),
    )
    with op.batch_alter_table("event_export_rollups", schema=None) as batch_op:
        batch_op.create_index(
            "ix_event_export_rollups_state", ["workspace_id", "state", "day"], unique=False
        )

    op.create_table(
        "event_export_runs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sent", sa.BigInteger(), nullable=False),
        sa.Column("waiting", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("resolved", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", spoke.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", spoke.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_expires_at", spoke.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_export_runs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_event_export_runs")),
    )
    with op.batch_alter_table("event_export_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_event_export_runs_status"), ["status"], unique=False)
        batch_op.create_index(
            "ix_event_export_runs_workspace", ["workspace_id", "created_at"], unique=False
        )

    op.create_table(
        "event_export_settings",
        sa.Column("workspace_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("send", sa.String(length=16), nullable=False),
        sa.Column(
            "events",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("default_delivery", sa.String(length=16), nullable=False),
        sa.Column(
            "property_types",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("long_values", sa.String(length=16), nullable=False),
        sa.Column("create_contacts", sa.Boolean(), nullable=False),
        sa.Column("schedule", sa.String(length=16), nullable=False),
        sa.Column("nightly_hour", sa.Integer(), nullable=False),
        sa.Column("lookback_days", sa.Integer(), nullable=False),
        sa.Column("monthly_cap", sa.BigInteger(), nullable=False),
        sa.Column("export_from", spoke.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("cursor_event_id", sa.BigInteger(), nullable=False),
        sa.Column("sent_total", sa.BigInteger(), nullable=False),
        sa.Column("enabled_at", spoke.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_nightly_on", sa.String(length=10), nullable=True),
        sa.Column("created_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", spoke.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_event_export_settings_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_event_export_settings")),
    )


def downgrade() -> None:
    op.drop_table("event_export_settings")
    with op.batch_alter_table("event_export_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_event_export_runs_workspace")
        batch_op.drop_index(batch_op.f("ix_event_export_runs_status"))

    op.drop_table("event_export_runs")
    with op.batch_alter_table("event_export_rollups", schema=None) as batch_op:
        batch_op.drop_index("ix_event_export_rollups_state")

    op.drop_table("event_export_rollups")
    with op.batch_alter_table("event_export_marks", schema=None) as batch_op:
        batch_op.drop_index("ix_event_export_marks_state")

    op.drop_table("event_export_marks")
    op.drop_table("event_export_identities")
    op.drop_table("event_export_definitions")
    with op.batch_alter_table("event_export_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_event_export_batches_workspace")

    op.drop_table("event_export_batches")
    op.drop_table("event_export_usage")
