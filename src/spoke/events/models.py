from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.db import Base, BigIntPK, JSONType


class ProductEvent(Base):
    """One occurrence, append-only. `event_key` is the caller's optional id: a resend with
    the same id is a no-op (unique per workspace)."""

    __tablename__ = "product_events"
    __table_args__ = (
        sa.Index(
            "uq_product_events_key",
            "workspace_id",
            "event_key",
            unique=True,
            sqlite_where=sa.text("event_key IS NOT NULL"),
            postgresql_where=sa.text("event_key IS NOT NULL"),
        ),
        sa.Index("ix_product_events_workspace_id_id", "workspace_id", "id"),
        sa.Index("ix_product_events_user", "workspace_id", "external_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    event_key: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    type: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200))
    external_id: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    email: Mapped[str | None] = mapped_column(sa.String(320), default=None)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    occurred_at: Mapped[datetime]
    received_at: Mapped[datetime]


class KnownEvent(Base):
    """Every (type, name) a workspace has sent, with volume and first/last time seen."""

    __tablename__ = "known_events"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "type", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200))
    is_core: Mapped[bool] = mapped_column(default=False)
    volume: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
