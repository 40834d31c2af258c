from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import Base, BigIntPK, JSONType
from spoke.core.leases import Leased

CHANNELS = ("push", "email", "sms")
SUBSCRIPTION_STATES = ("subscribed", "unsubscribed", "bounced", "invalid")
DELIVERY_STATES = ("queued", "sending", "sent", "failed", "delivered", "clicked")


class Subscription(Base):
    """One address a user can be reached at on one channel: a device token for push.

    An address belongs to one user at a time (unique per workspace and channel); a device
    that logs in as someone else moves its token to that user.
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "channel", "address"),
        sa.Index("ix_subscriptions_user_channel", "user_id", "channel"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(sa.String(8))
    address: Mapped[str] = mapped_column(sa.String(512))
    platform: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    status: Mapped[str] = mapped_column(sa.String(16), default="subscribed")
    status_reason: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProviderConfig(Base):
    """The provider a workspace sends one channel through; credentials stay encrypted."""

    __tablename__ = "messaging_providers"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "channel"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(sa.String(8))
    provider: Mapped[str] = mapped_column(sa.String(16))
    # Shown back to callers: project id, service-account e-mail, base URL. Never secrets.
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Leased, Base):
    """One send request. `recipients` holds what the caller asked for (external ids, or
    per-user messages); the fan-out job turns it into deliveries, `planned` of them so far."""

    __tablename__ = "notifications"
    __table_args__ = (
        sa.Index("ix_notifications_workspace_created", "workspace_id", "created_at", "id"),
        sa.Index("ix_notifications_group", "workspace_id", "request_group_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    request_group_id: Mapped[str] = mapped_column(sa.String(64))
    channel: Mapped[str] = mapped_column(sa.String(8))
    source: Mapped[str] = mapped_column(sa.String(16))  # users | messages | segment
    content: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    recipients: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    total: Mapped[int] = mapped_column(default=0)
    planned: Mapped[int] = mapped_column(default=0)
    not_found: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # A segment send: the filter, and the last user id planned (-1 once all are planned).
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    plan_cursor: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    # Not sent before this time; the sweeper re-offers a queued notification every minute.
    send_at: Mapped[datetime | None] = mapped_column(default=None)
    # Local-time delivery ("09:00:00"): each recipient at that time in their own zone.
    delivery_time_of_day: Mapped[str | None] = mapped_column(sa.String(8), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Delivery(Base):
    """One recipient of one notification on one channel; the unique key is what makes a
    resumed fan-out skip everyone already sent to."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("notification_id", "user_id", "channel"),
        sa.Index("ix_deliveries_progress", "notification_id", "status", "id"),
        sa.Index("ix_deliveries_user", "user_id", "id"),
        # SMS status callbacks name the message, not the delivery (`sms_status`).
        sa.Index("ix_deliveries_provider_message_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        sa.ForeignKey("notifications.id", ondelete="CASCADE")
    )
    workspace_id: Mapped[str] = mapped_column(sa.String(32))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(255))
    channel: Mapped[str] = mapped_column(sa.String(8))
    # queued → sending → sent | failed; see `messaging.send_journal` for what `sending` means.
    status: Mapped[str] = mapped_column(sa.String(16), default="queued")
    reason: Mapped[str | None] = mapped_column(sa.String(300), default=None)
    # The fan-out run (its lease owner) that marked the delivery `sending`.
    send_attempt: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    # Per-user content (`/v1/push/messages`); null means the notification's content.
    content: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    devices_sent: Mapped[int] = mapped_column(default=0)
    provider_message_id: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    # Not sent before this time (local-time delivery); null: as soon as claimed.
    not_before: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    clicked_at: Mapped[datetime | None] = mapped_column(default=None)


class MessagingWebhook(Base):
    """Where a workspace hears about sends that could not reach everyone (signed POSTs)."""

    __tablename__ = "messaging_webhooks"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(sa.String(500))
    secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
