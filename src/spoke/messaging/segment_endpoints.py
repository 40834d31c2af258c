"""Saved segments over HTTP: `/v1/segments` and who is in one now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.core.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from spoke.deps import Db
from spoke.messaging import saved_segments, segments
from spoke.messaging.segment_schemas import Segment, SegmentCreate, SegmentMember, SegmentUpdate
from spoke.workspaces.auth import Idempotent, ServerCaller

router = APIRouter(prefix="/v1/segments", tags=["segments"], route_class=TransactionalRoute)
SegmentIdPath = Annotated[str, Path(min_length=1, max_length=40)]
Cursor = Annotated[str | None, Query(max_length=200)]


@router.post(
    "",
    response_model=Segment,
    status_code=status.HTTP_201_CREATED,
    responses=responses(segments.InvalidSegment, saved_segments.SegmentNameTaken),
    dependencies=[Idempotent],
)
def create_segment(body: SegmentCreate, caller: ServerCaller, session: Db) -> object:
    """Save a filter under a name; send to it with `audience: {"segment_id": …}`."""
    created = saved_segments.create(
        session, caller.workspace_id, name=body.name, filters=body.filters
    )
    return saved_segments.render(created)


@router.get("", response_model=Page[Segment], responses=responses(InvalidCursor))
def list_segments(
    caller: ServerCaller,
    session: Db,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> object:
    """Saved segments, oldest first."""
    after = str(decode_cursor(cursor, 1)[0]) if cursor is not None else None
    rows, last = saved_segments.list_page(session, caller.workspace_id, after=after, limit=limit)
    return {
        "data": [saved_segments.render(s) for s in rows],
        "next_cursor": encode_cursor([last]) if last is not None else None,
    }


@router.get(
    "/{segment_id}", response_model=Segment, responses=responses(saved_segments.SegmentNotFound)
)
def get_segment(segment_id: SegmentIdPath, caller: ServerCaller, session: Db) -> object:
    """One saved segment."""
    return saved_segments.render(saved_segments.get(session, caller.workspace_id, segment_id))


@router.patch(
    "/{segment_id}",
    response_model=Segment,
    responses=responses(
        saved_segments.SegmentNotFound, saved_segments.SegmentNameTaken, segments.InvalidSegment
    ),
    dependencies=[Idempotent],
)
def update_segment(
    segment_id: SegmentIdPath, body: SegmentUpdate, caller: ServerCaller, session: Db
) -> object:
    """Rename it or replace its filters (sends already accepted keep the old filters)."""
    found = saved_segments.get(session, caller.workspace_id, segment_id)
    updated = saved_segments.update(session, found, name=body.name, filters=body.filters)
    return saved_segments.render(updated)


@router.delete(
    "/{segment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(saved_segments.SegmentNotFound),
    dependencies=[Idempotent],
)
def delete_segment(segment_id: SegmentIdPath, caller: ServerCaller, session: Db) -> None:
    """Delete a saved segment (the lists it read become free to delete)."""
    saved_segments.delete(session, saved_segments.get(session, caller.workspace_id, segment_id))


@router.get(
    "/{segment_id}/users",
    response_model=Page[SegmentMember],
    responses=responses(saved_segments.SegmentNotFound, InvalidCursor),
)
def segment_users(
    segment_id: SegmentIdPath,
    caller: ServerCaller,
    session: Db,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """The users the segment matches now, in the order a send walks them."""
    found = saved_segments.get(session, caller.workspace_id, segment_id)
    after = 0
    if cursor is not None:
        (position,) = decode_cursor(cursor, 1)
        if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < 2**63:
            raise InvalidCursor("The cursor is not one this API issued.")
        after = position
    rows, last = saved_segments.members(session, found, after=after, limit=limit)
    return {
        "data": [SegmentMember.model_validate(u, from_attributes=True) for u in rows],
        "next_cursor": encode_cursor([last]) if last is not None else None,
    }
