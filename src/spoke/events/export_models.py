"""Tables of the product events export to HubSpot custom events.

- `event_export_settings`: one row per workspace: what to send and how, plus the export
  cursor (`cursor_event_id`: every event at or below it has been dealt with) and totals.
- `event_export_runs`: one pass of the exporter, held under a lease and resumed by the sweeper.
- `event_export_batches`: a batch that was (or was about to be) sent and whose outcome is not
  yet recorded. It is written before the request and deleted in the transaction that records
  the outcome, so a row found at start-up is exactly a batch whose outcome is unknown.
- `event_export_marks`: events that are not simply "sent and behind the cursor": waiting
  (no contact yet, monthly cap), rejected (with the reason), or sent ahead of the cursor
  (found in HubSpot when an unknown outcome was resolved).
- `event_export_definitions`: the HubSpot event definitions Spoke created, with their
  properties, so nothing is created twice.
- `event_export_identities`: how an event's user maps to a HubSpot contact (by link, email
  or creation), or that it does not yet.
- `event_export_rollups`: daily counts per user and event for `daily_rollup` delivery.
- `event_export_usage`: completions sent per portal per month (the 30,000,000 cap).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import Base, BigIntPK, JSONType
from spoke.core.leases import Leased


class EventExportSettings(Base):
    __tablename__ = "event_export_settings"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(default=1)
    enabled: Mapped[bool] = mapped_column(default=False)
    send: Mapped[str] = mapped_column(sa.String(16), default="core")  # core | selected
    # [{"type": "track", "name": "Signed up", "delivery": "each" | "daily_rollup" | null}]
    events: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    default_delivery: Mapped[str] = mapped_column(sa.String(16), default="each")
    # {"plan": "string", "seats": "number", ...}: declared types win over inferred ones.
    property_types: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    long_values: Mapped[str] = mapped_column(sa.String(16), default="truncate")
    create_contacts: Mapped[bool] = mapped_column(default=False)
    schedule: Mapped[str] = mapped_column(sa.String(16), default="nightly")
    nightly_hour: Mapped[int] = mapped_column(default=2)
    lookback_days: Mapped[int] = mapped_column(default=7)
    monthly_cap: Mapped[int] = mapped_column(sa.BigInteger, default=30_000_000)
    export_from: Mapped[datetime | None] = mapped_column(default=None)
    cursor_event_id: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    sent_total: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    last_nightly_on: Mapped[str | None] = mapped_column(sa.String(10), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventExportRun(Leased, Base):
    __tablename__ = "event_export_runs"
    __table_args__ = (sa.Index("ix_event_export_runs_workspace", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))  # first | nightly | realtime | manual
    sent: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    waiting: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    resolved: Mapped[int] = mapped_column(default=0)  # unknown outcomes found already sent
    batches: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class EventExportBatch(Base):
    __tablename__ = "event_export_batches"
    __table_args__ = (sa.Index("ix_event_export_batches_workspace", "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    run_id: Mapped[str] = mapped_column(sa.String(32))
    kind: Mapped[str] = mapped_column(sa.String(16))  # event | rollup
    # Ids of the product events or rollups in the batch; their uuids derive from them.
    item_ids: Mapped[list[int]] = mapped_column(JSONType)
    # Which of them were waiting before (their marks go when they are sent).
    from_waiting: Mapped[bool] = mapped_column(default=False)
    # The month whose usage the batch was counted in, before it was sent.
    month: Mapped[str] = mapped_column(sa.String(7))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventExportMark(Base):
    __tablename__ = "event_export_marks"
    __table_args__ = (sa.Index("ix_event_export_marks_state", "workspace_id", "state", "reason"),)

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    event_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16))  # waiting | rejected | sent
    reason: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    detail: Mapped[str | None] = mapped_column(sa.Text, default=None)
    identity_key: Mapped[str | None] = mapped_column(sa.String(330), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventExportDefinition(Base):
    __tablename__ = "event_export_definitions"
    __table_args__ = (
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

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    portal_id: Mapped[int] = mapped_column(sa.BigInteger)
    event_type: Mapped[str] = mapped_column(sa.String(16))
    event_name: Mapped[str] = mapped_column(sa.String(200))
    rollup: Mapped[bool] = mapped_column(default=False)
    hubspot_name: Mapped[str] = mapped_column(sa.String(64))
    fully_qualified_name: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    # Our property name -> {"name": HubSpot's, "type": string|number|datetime|enumeration}
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Properties left out, with why (the 50-property limit, a refusal by HubSpot).
    dropped: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), default="created")  # created | failed
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventExportIdentity(Base):
    __tablename__ = "event_export_identities"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    # "u:<external id>" or "e:<email>": the user as events name them.
    identity_key: Mapped[str] = mapped_column(sa.String(330), primary_key=True)
    hubspot_id: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    matched_by: Mapped[str | None] = mapped_column(sa.String(16), default=None)  # email|created
    reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)


class EventExportRollup(Base):
    __tablename__ = "event_export_rollups"
    __table_args__ = (
        sa.UniqueConstraint(
            "workspace_id",
            "identity_key",
            "event_type",
            "event_name",
            "day",
            "part",
            name="uq_event_export_rollups_group",
        ),
        sa.Index("ix_event_export_rollups_state", "workspace_id", "state", "day"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    identity_key: Mapped[str] = mapped_column(sa.String(330))
    external_id: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    email: Mapped[str | None] = mapped_column(sa.String(320), default=None)
    event_type: Mapped[str] = mapped_column(sa.String(16))
    event_name: Mapped[str] = mapped_column(sa.String(200))
    day: Mapped[str] = mapped_column(sa.String(10))  # UTC day, YYYY-MM-DD
    # Events that arrive after their day's completion went out start the next part.
    part: Mapped[int] = mapped_column(default=1)
    count: Mapped[int] = mapped_column(default=0)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(sa.String(16), default="open")  # open|sending|sent|rejected
    reason: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    detail: Mapped[str | None] = mapped_column(sa.Text, default=None)


class EventExportUsage(Base):
    __tablename__ = "event_export_usage"

    portal_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    month: Mapped[str] = mapped_column(sa.String(7), primary_key=True)  # YYYY-MM (UTC)
    # Completions sent, plus those in flight (counted before sending, so two runs on one
    # portal can never pass the cap between them; given back if not sent).
    count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
