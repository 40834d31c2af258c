"""`Idempotency-Key`: a retried write is applied once and answered with the first response.

The stored response is written in the same transaction as the write itself, so either
both exist or neither does; there is no window where the write landed but a retry would
apply it again. Two concurrent requests with one key race on the unique constraint: the
loser rolls back all of its work and replays the winner's response.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column
from starlette.requests import Request
from starlette.responses import Response

from spoke.core.clock import utcnow
from spoke.core.db import Base, BigIntPK
from spoke.core.errors import AppError

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (sa.UniqueConstraint("workspace_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int]
    media_type: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class IdempotencyKeyReused(AppError):
    code = "idempotency_key_reused"
    status_code = 409
    title = "Idempotency key reused"


class InvalidIdempotencyKey(AppError):
    code = "invalid_idempotency_key"
    status_code = 400
    title = "Invalid idempotency key"


class IdempotentReplay(Exception):
    """Raised from the dependency to answer with the stored response instead of running."""

    def __init__(self, response: Response) -> None:
        self.response = response


@dataclass(frozen=True)
class PendingKey:
    workspace_id: str
    key: str
    request_hash: str


def request_hash(request: Request, body: bytes) -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(b"\0" + request.url.path.encode() + b"\0" + request.url.query.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


def stored_response(record: IdempotencyRecord) -> Response:
    return Response(
        record.body,
        status_code=record.status_code,
        media_type=record.media_type,
        headers={"Idempotent-Replayed": "true"},
    )


def check(session: Session, workspace_id: str, key: str, digest: str) -> PendingKey:
    """Replay a finished request with this key, or mark the key as pending for this one."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidIdempotencyKey(f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable characters.")
    record = find(session, workspace_id, key)
    if record is not None:
        if record.request_hash != digest:
            raise IdempotencyKeyReused(
                f"{HEADER} {key!r} was already used for a different request."
            )
        raise IdempotentReplay(stored_response(record))
    return PendingKey(workspace_id, key, digest)


def find(session: Session, workspace_id: str, key: str) -> IdempotencyRecord | None:
    return session.scalars(
        sa.select(IdempotencyRecord).where(
            IdempotencyRecord.workspace_id == workspace_id, IdempotencyRecord.key == key
        )
    ).one_or_none()


def store(session: Session, pending: PendingKey, response: Response) -> None:
    session.add(
        IdempotencyRecord(
            workspace_id=pending.workspace_id,
            key=pending.key,
            request_hash=pending.request_hash,
            status_code=response.status_code,
            media_type=response.media_type or "application/json",
            body=bytes(response.body),
            created_at=utcnow(),
        )
    )
    session.flush()
