"""Saved segments (`/v1/segments`): a name for a filter, usable as a send's audience.

A list a saved segment reads is marked in use (`ListUsage`), so it can't be deleted from
under the segment. A send to a saved segment copies its filters when it is accepted, so a
later edit changes later sends only. Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.errors import Conflict, NotFound
from spoke.core.ids import new_id
from spoke.messaging import segments
from spoke.messaging.template_models import SavedSegment
from spoke.users import lists
from spoke.users.models import User

LIST_CONSUMER = "messaging.segment"


class SegmentNotFound(NotFound):
    code = "segment_not_found"


class SegmentNameTaken(Conflict):
    code = "segment_name_taken"


def get(session: Session, workspace_id: str, segment_id: str) -> SavedSegment:
    found = session.get(SavedSegment, segment_id)
    if found is None or found.workspace_id != workspace_id:
        raise SegmentNotFound(f"No segment with id {segment_id!r}.")
    return found


def _check_name(session: Session, workspace_id: str, name: str, except_id: str | None) -> None:
    stmt = sa.select(SavedSegment.id).where(
        SavedSegment.workspace_id == workspace_id, SavedSegment.name == name
    )
    if except_id is not None:
        stmt = stmt.where(SavedSegment.id != except_id)
    if session.scalar(stmt) is not None:
        raise SegmentNameTaken(f"A segment named {name!r} already exists.")


def create(
    session: Session, workspace_id: str, *, name: str, filters: Sequence[Any]
) -> SavedSegment:
    stored = segments.normalise(session, workspace_id, filters, prefix="body.filters")
    _check_name(session, workspace_id, name, None)
    now = utcnow()
    created = SavedSegment(
        id=new_id("seg"),
        workspace_id=workspace_id,
        name=name,
        filters=stored,
        created_at=now,
        updated_at=now,
    )
    session.add(created)
    session.flush()
    _mark_lists(session, created, set(), segments.list_ids(stored))
    return created


def update(
    session: Session, found: SavedSegment, *, name: str | None, filters: Sequence[Any] | None
) -> SavedSegment:
    if filters is not None:
        stored = segments.normalise(session, found.workspace_id, filters, prefix="body.filters")
        _mark_lists(session, found, segments.list_ids(found.filters), segments.list_ids(stored))
        found.filters = stored
    if name is not None and name != found.name:
        _check_name(session, found.workspace_id, name, found.id)
        found.name = name
    found.updated_at = utcnow()
    session.flush()
    return found


def delete(session: Session, found: SavedSegment) -> None:
    _mark_lists(session, found, segments.list_ids(found.filters), set())
    session.delete(found)
    session.flush()


def _mark_lists(session: Session, found: SavedSegment, before: set[str], after: set[str]) -> None:
    for list_id in before - after:
        try:
            used = lists.get_list(session, found.workspace_id, list_id)
        except lists.ListNotFound:
            continue
        lists.remove_usage(session, used, LIST_CONSUMER, found.id)
    for list_id in after - before:
        lists.add_usage(
            session, lists.get_list(session, found.workspace_id, list_id), LIST_CONSUMER, found.id
        )


def list_page(
    session: Session, workspace_id: str, *, after: str | None, limit: int
) -> tuple[Sequence[SavedSegment], str | None]:
    """By id (ids sort by creation time)."""
    stmt = sa.select(SavedSegment).where(SavedSegment.workspace_id == workspace_id)
    if after is not None:
        stmt = stmt.where(SavedSegment.id > after)
    rows = session.scalars(stmt.order_by(SavedSegment.id).limit(limit + 1)).all()
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def members(
    session: Session, found: SavedSegment, *, after: int, limit: int
) -> tuple[Sequence[User], int | None]:
    """The segment's users now, a keyset page by user id (what a send would walk)."""
    rows = session.scalars(
        sa.select(User)
        .where(
            User.workspace_id == found.workspace_id,
            User.deleted_at.is_(None),
            segments.clause(found.filters),
            User.id > after,
        )
        .order_by(User.id)
        .limit(limit + 1)
    ).all()
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def audience(session: Session, workspace_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """What a send stores as its audience: `filters` checked and normalised, or a saved
    segment's filters copied with its id; other forms as given."""
    if spec.get("segment_id") is not None:
        found = get(session, workspace_id, spec["segment_id"])
        # Checked again: a custom field it reads may have been deleted since.
        checked = segments.normalise(
            session, workspace_id, found.filters, prefix="body.audience.segment_id"
        )
        return {"segment_id": found.id, "filters": checked}
    if spec.get("filters") is not None:
        return {
            "filters": segments.normalise(
                session, workspace_id, spec["filters"], prefix="body.audience.filters"
            )
        }
    return spec


def render(found: SavedSegment) -> dict[str, Any]:
    return {
        "id": found.id,
        "name": found.name,
        "filters": found.filters,
        "created_at": found.created_at,
        "updated_at": found.updated_at,
    }
