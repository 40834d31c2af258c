from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import Base


class Role(StrEnum):
    owner = "owner"
    manager = "manager"
    member = "member"

    @property
    def can_administer(self) -> bool:
        """Owners and managers manage members, keys and (later) the HubSpot connection."""
        return self in (Role.owner, Role.manager)


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # Public key for the product's apps; it may call /v1/client/... routes only.
    client_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    identity_verification: Mapped[bool] = mapped_column(default=False)
    # Encrypted; apps prove a user's identity with HMAC-SHA256(secret, external_id).
    identity_secret_encrypted: Mapped[str] = mapped_column(sa.Text)
    # Bumped under a row lock by every user change: gives a gap-free, commit-ordered
    # sequence per workspace for the change feed (an auto-increment id is not commit-ordered).
    change_seq: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # IANA zone for users who have none: local-time delivery and the night-time ad rule.
    timezone: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "email"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(sa.String(320))
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    role: Mapped[Role] = mapped_column(sa.Enum(Role, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiKey(Base):
    """A server key pair: the id is public (X-Api-Key), the secret is stored only as a hash."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    member_id: Mapped[str] = mapped_column(
        sa.ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    secret_hash: Mapped[str] = mapped_column(sa.String(64))
    secret_hint: Mapped[str] = mapped_column(sa.String(8))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
