"""Stored message templates and saved segments: what to say, and to whom, kept by name."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import Base, JSONType


class MessageTemplate(Base):
    """Content for one channel, Jinja2 in a sandbox. `version` goes up with every change of
    content or defaults; a notification copies the content of the version it was sent with."""

    __tablename__ = "message_templates"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    channel: Mapped[str] = mapped_column(sa.String(8))
    content: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Values for variables a recipient has no value for: {"first_name": "there"}.
    defaults: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SavedSegment(Base):
    """A named audience filter (`segments.py` explains the filter language)."""

    __tablename__ = "segments"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    filters: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
