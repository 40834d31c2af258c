"""The users change feed: one row per change to one user, numbered in commit order.

Numbers come from `workspaces.change_seq`, bumped in the writing transaction just before
it commits. The bump takes the workspace row's lock until commit, so within a workspace
a later `seq` always belongs to a later commit and the feed has no gaps: a reader that has
seen `seq` N has seen every change up to N. That is what the sync engine relies on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from starlette.requests import Request

from spoke.core import bulk
from spoke.core.clock import utcnow
from spoke.core.db import table_of
from spoke.users.models import UserChange
from spoke.workspaces.models import Workspace
from spoke.workspaces.service import Caller


@dataclass(frozen=True)
class Origin:
    """Where a write came from; stored on every change row it causes."""

    workspace_id: str
    origin: str  # api, client, import, sync.hubspot, workflow, ...
    actor: str  # key id, import id, ...
    request_id: str | None = None


@dataclass
class PendingChange:
    user_id: int | None  # None until a new user is inserted
    external_id: str
    kind: str  # created, updated, deleted, restored, tags, lists
    changes: dict[str, Any]


def request_origin(request: Request, caller: Caller, origin: str = "api") -> Origin:
    """The origin of a write made by an HTTP request: the caller's key and the request id."""
    return Origin(
        caller.workspace_id, origin, caller.actor, getattr(request.state, "request_id", None)
    )


def allocate_seqs(session: Session, workspace_id: str, count: int) -> int:
    """Reserve `count` feed numbers; returns the first."""
    top = session.execute(
        sa.update(Workspace)
        .where(Workspace.id == workspace_id)
        .values(change_seq=Workspace.change_seq + count)
        .returning(Workspace.change_seq)
    ).scalar_one()
    return int(top) - count + 1


# Code that reacts to user changes (the contact sync) registers a listener; it runs inside
# the recording transaction, once per `record` call that wrote something.
ChangeListener = Callable[[Session, Origin], None]
_listeners: list[ChangeListener] = []


def add_listener(listener: ChangeListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def record(session: Session, origin: Origin, pending: Sequence[PendingChange]) -> None:
    if not pending:
        return
    first = allocate_seqs(session, origin.workspace_id, len(pending))
    now = utcnow()
    bulk.insert(
        session,
        table_of(UserChange),
        [
            {
                "workspace_id": origin.workspace_id,
                "seq": first + i,
                "user_id": change.user_id,
                "external_id": change.external_id,
                "kind": change.kind,
                "changes": change.changes,
                "origin": origin.origin,
                "actor": origin.actor,
                "request_id": origin.request_id,
                "created_at": now,
            }
            for i, change in enumerate(pending)
        ],
    )
    for listener in _listeners:
        listener(session, origin)


def for_user(
    session: Session, user_id: int, *, after_seq: int | None, limit: int
) -> Sequence[UserChange]:
    stmt = sa.select(UserChange).where(UserChange.user_id == user_id)
    if after_seq is not None:
        stmt = stmt.where(UserChange.seq > after_seq)
    return session.scalars(stmt.order_by(UserChange.seq).limit(limit)).all()


def feed(
    session: Session, workspace_id: str, *, after_seq: int, limit: int
) -> Sequence[UserChange]:
    return session.scalars(
        sa.select(UserChange)
        .where(UserChange.workspace_id == workspace_id, UserChange.seq > after_seq)
        .order_by(UserChange.seq)
        .limit(limit)
    ).all()
