from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import Base, BigIntPK, JSONType
from spoke.core.leases import Leased

STANDARD_FIELDS = (
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "industry",
    "company",
    "language",
    "timezone",
)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "external_id"),
        sa.Index("ix_users_workspace_email", "workspace_id", "email"),
        sa.Index("ix_users_workspace_updated", "workspace_id", "updated_at", "id"),
        # Paging a workspace's users in id order (backfills, segment fan-outs, lists).
        sa.Index("ix_users_workspace_id", "workspace_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(320), default=None)
    phone: Mapped[str | None] = mapped_column(sa.String(20), default=None)
    first_name: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    last_name: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    country: Mapped[str | None] = mapped_column(sa.String(2), default=None)
    industry: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    company: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    language: Mapped[str | None] = mapped_column(sa.String(35), default=None)
    timezone: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    custom: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the user's app last called Spoke with the client key (device, events, profile);
    # activity, not profile: no change row, no new version.
    last_seen_at: Mapped[datetime | None] = mapped_column(default=None)


class UserTag(Base):
    """One tag (key → value) of one user; the index serves segments by tag."""

    __tablename__ = "user_tags"
    __table_args__ = (sa.Index("ix_user_tags_lookup", "workspace_id", "key", "value"),)

    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[str] = mapped_column(sa.String(1024))


class CustomField(Base):
    __tablename__ = "custom_fields"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    label: Mapped[str] = mapped_column(sa.String(200))
    type: Mapped[str] = mapped_column(sa.String(16))
    options: Mapped[list[str] | None] = mapped_column(JSONType, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserList(Base):
    __tablename__ = "user_lists"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ListMembership(Base):
    __tablename__ = "list_memberships"

    list_id: Mapped[str] = mapped_column(
        sa.ForeignKey("user_lists.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    origin: Mapped[str] = mapped_column(sa.String(32), default="api")
    added_at: Mapped[datetime] = mapped_column(default=utcnow)


class ListUsage(Base):
    """Something that depends on a list (a sync setting, a segment); blocks deleting it."""

    __tablename__ = "list_usages"
    __table_args__ = (sa.UniqueConstraint("list_id", "consumer", "reference"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    list_id: Mapped[str] = mapped_column(
        sa.ForeignKey("user_lists.id", ondelete="CASCADE"), index=True
    )
    consumer: Mapped[str] = mapped_column(sa.String(64))
    reference: Mapped[str] = mapped_column(sa.String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserChange(Base):
    """One change to one user, in commit order per workspace (`seq`): the sync engine's feed."""

    __tablename__ = "user_changes"
    __table_args__ = (
        sa.UniqueConstraint("workspace_id", "seq"),
        sa.Index("ix_user_changes_user", "user_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(sa.BigInteger)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(16))
    # {field: [old, new]}; tags as "tags.<key>", lists as "lists.<list id>".
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType)
    origin: Mapped[str] = mapped_column(sa.String(32))
    actor: Mapped[str] = mapped_column(sa.String(64), default="")
    request_id: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserImport(Leased, Base):
    """A CSV import: the file is stored as chunks, processed one chunk per transaction."""

    __tablename__ = "user_imports"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(sa.String(255))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    header: Mapped[list[str]] = mapped_column(JSONType)
    total_rows: Mapped[int] = mapped_column(default=0)
    chunk_count: Mapped[int] = mapped_column(default=0)
    # The upload itself can be interrupted: `uploaded_chunks` counts what is stored.
    uploaded_chunks: Mapped[int] = mapped_column(default=0)
    next_chunk: Mapped[int] = mapped_column(default=0)
    processed_rows: Mapped[int] = mapped_column(default=0)
    created_count: Mapped[int] = mapped_column(default=0)
    updated_count: Mapped[int] = mapped_column(default=0)
    unchanged_count: Mapped[int] = mapped_column(default=0)
    failed_count: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class UserImportChunk(Base):
    __tablename__ = "user_import_chunks"

    import_id: Mapped[str] = mapped_column(
        sa.ForeignKey("user_imports.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(primary_key=True)
    first_row: Mapped[int]
    row_count: Mapped[int]
    content: Mapped[str] = mapped_column(sa.Text)


class UserImportError(Base):
    __tablename__ = "user_import_errors"

    import_id: Mapped[str] = mapped_column(
        sa.ForeignKey("user_imports.id", ondelete="CASCADE"), primary_key=True
    )
    row_number: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    code: Mapped[str] = mapped_column(sa.String(64))
    message: Mapped[str] = mapped_column(sa.Text)
