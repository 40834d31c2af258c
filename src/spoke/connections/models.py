"""The `hubspot_connections` table: one row per workspace, kept across disconnects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import Base, JSONType


class HubSpotConnection(Base):
    """A workspace's link to one HubSpot portal.

    Tokens are stored encrypted (`Encryptor`). Disconnecting wipes the tokens and sets
    `status = "disconnected"` but keeps the row, so the sync settings that hang off the
    workspace survive and a reconnect restores them.
    """

    __tablename__ = "hubspot_connections"
    __table_args__ = (sa.Index("ix_hubspot_connections_portal", "portal_id", "status"),)

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    portal_id: Mapped[int] = mapped_column(sa.BigInteger)
    auth_type: Mapped[str] = mapped_column(sa.String(16))  # oauth | private_app
    status: Mapped[str] = mapped_column(sa.String(16), default="connected")
    access_token: Mapped[str | None] = mapped_column(sa.Text, default=None)
    refresh_token: Mapped[str | None] = mapped_column(sa.Text, default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    # Private apps sign their webhooks with their own client secret.
    webhook_secret: Mapped[str | None] = mapped_column(sa.Text, default=None)
    app_id: Mapped[int | None] = mapped_column(sa.BigInteger, default=None)
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The grant before the latest (re)connect, to report scopes a reconnect lost.
    previous_scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # HubSpot contact properties available for mapping: [{name, label, type, field_type}].
    properties: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    connected_by: Mapped[str] = mapped_column(sa.String(64), default="")
    connected_at: Mapped[datetime] = mapped_column(default=utcnow)
    disconnected_at: Mapped[datetime | None] = mapped_column(default=None)
    usage_day: Mapped[str] = mapped_column(sa.String(10), default="")
    usage_calls: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text, default=None)
