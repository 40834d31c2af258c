"""Tables of the contact sync.

- `contact_sync_settings`: one row per workspace; the settings (direction, mappings,
  constants, policies), the state, the settings `version`, the outbound cursor into the users
  change feed (`cursor_seq`), and a short lease so one pusher at a time reads the feed.
- `contact_links`: one row per synced (or failed) user: the HubSpot contact id once known,
  and the last synced snapshot of both sides. The snapshots are what echo suppression and
  conflict detection compare against; `state` is the per-record health.
- `hubspot_webhook_batches`: each verified webhook delivery, stored before it is answered;
  the inbound job applies and marks them; one that keeps failing is parked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import Base, BigIntPK, JSONType
from spoke.core.leases import Leased


class ContactSyncSettings(Base):
    __tablename__ = "contact_sync_settings"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(default=1)
    state: Mapped[str] = mapped_column(sa.String(16), default="active")  # active | paused
    direction: Mapped[str] = mapped_column(sa.String(16), default="two_way")
    # [{"spoke": "first_name", "hubspot": "firstname", "locked": true}, ...]
    mappings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # {"to_hubspot": {property: value}, "to_spoke": {field: value}}
    constants: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    send_list_ids: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    receive_list_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    # A HubSpot MANUAL list that contacts the sync sends are added to (once each).
    hubspot_list_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    lead_status: Mapped[str | None] = mapped_column(sa.String(64), default="CONNECTED")
    delete_policy: Mapped[str] = mapped_column(sa.String(16), default="never")
    conflict_winner: Mapped[str] = mapped_column(sa.String(16), default="hubspot")
    cursor_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # Reconcile: contacts modified in HubSpot since this time (epoch ms) are re-read.
    reconcile_from_ms: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    push_owner: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    push_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ContactLink(Base):
    __tablename__ = "contact_links"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "user_id"),
        sa.UniqueConstraint("workspace_id", "hubspot_id"),
        sa.Index("ix_contact_links_state", "workspace_id", "state", "id"),
        sa.Index("ix_contact_links_due", "workspace_id", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    hubspot_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    matched_by: Mapped[str] = mapped_column(sa.String(16), default="email")
    # HubSpot property values as both sides last agreed on them (by HubSpot property name).
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), default="in_sync")
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    failures: Mapped[int] = mapped_column(default=0)
    # When a failing record is retried next (backoff); null: not scheduled.
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # Values that lost a conflict: [{"field", "value", "side", "at"}], newest last, capped.
    conflicts: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    settings_version: Mapped[int] = mapped_column(default=0)
    # The HubSpot note that carries the user's tags, and a hash of the body last written.
    note_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    note_hash: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    # The HubSpot list (settings `hubspot_list_id`) this contact was added to.
    hubspot_list_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    # Deleted in Spoke under the `soft` policy: the contact carries `spoke_deleted=true`.
    marked_deleted: Mapped[bool] = mapped_column(default=False)
    last_synced_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class HubSpotWebhookBatch(Base):
    __tablename__ = "hubspot_webhook_batches"
    __table_args__ = (
        sa.Index("ix_hubspot_webhook_batches_pending", "workspace_id", "processed_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    portal_id: Mapped[int] = mapped_column(sa.BigInteger)
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    # Failed applications; at `webhooks.PARK_AFTER` the batch is parked (set aside, with
    # its error) so that it no longer holds anything up.
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    parked_at: Mapped[datetime | None] = mapped_column(default=None)


class ContactSyncRun(Leased, Base):
    """A manual sync (backfill) in one direction, processed one page per transaction.

    `checkpoint` is where the next page starts (a user id going to HubSpot, HubSpot's paging
    cursor coming to Spoke); it commits together with that page's results and the lease
    renewal, so a killed worker's successor resumes exactly after the last committed page.
    """

    __tablename__ = "contact_sync_runs"
    __table_args__ = (sa.Index("ix_contact_sync_runs_workspace", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(sa.String(16))  # to_hubspot | to_spoke
    source_app: Mapped[str] = mapped_column(sa.String(16))  # spoke | hubspot: wins conflicts
    dry_run: Mapped[bool] = mapped_column(default=False)
    requested_by: Mapped[str] = mapped_column(sa.String(64), default="")
    total: Mapped[int | None] = mapped_column(default=None)
    done: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    duplicates: Mapped[int] = mapped_column(default=0)
    conflicts: Mapped[int] = mapped_column(default=0)
    excluded: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    # Contacts added to the settings' HubSpot list (a dry run: that would be added).
    list_adds: Mapped[int] = mapped_column(default=0)
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Capped samples: conflicts field by field, errors with their record.
    samples: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
