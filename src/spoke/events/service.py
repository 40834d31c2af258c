"""Ingest and read product events. Takes a session, never commits.

Ingest validates each event on its own (a bad one is reported, the rest are kept), drops
resends by the caller's event id (within the batch and against what is stored), appends
the rest with one bulk insert, and counts them per (type, name) in `known_events` with
atomic increments. A concurrent resend of the same id loses the unique-index race, rolls
back to a savepoint and is retried against fresh state, so it ends as a duplicate, not a 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spoke.core import bulk
from spoke.core.clock import utcnow
from spoke.core.db import UTCDateTime, table_of
from spoke.core.errors import NotFound, validation_errors
from spoke.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from spoke.events.models import KnownEvent, ProductEvent
from spoke.events.schemas import EventIn, EventResult

_ATTEMPTS = 3


class KnownEventNotFound(NotFound):
    code = "event_not_found"


@dataclass(frozen=True)
class Ingested:
    accepted: int
    # Only the events not stored get a result object: at 20,000 events a second, one per
    # accepted event was a measurable share of the request.
    duplicates: list[EventResult]


def parse(raw: Sequence[Any]) -> tuple[list[tuple[int, EventIn]], list[EventResult]]:
    """Validate each raw event alone; returns the valid ones and the per-item errors."""
    valid: list[tuple[int, EventIn]] = []
    errors: list[EventResult] = []
    for index, item in enumerate(raw):
        try:
            valid.append((index, EventIn.model_validate(item)))
        except ValidationError as exc:
            fields = [e.model_dump() for e in validation_errors(exc.errors(), root="event")]
            key = item.get("id") if isinstance(item, dict) else None
            errors.append(
                EventResult(
                    index=index,
                    status="error",
                    id=key if isinstance(key, str) else None,
                    error={"code": "invalid_input", "errors": fields},
                )
            )
    return valid, errors


def ingest(session: Session, workspace_id: str, events: Sequence[tuple[int, EventIn]]) -> Ingested:
    for attempt in range(_ATTEMPTS):
        savepoint = session.begin_nested()
        try:
            ingested = _ingest_once(session, workspace_id, events)
            savepoint.commit()
            return ingested
        except IntegrityError:
            savepoint.rollback()
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _ingest_once(
    session: Session, workspace_id: str, events: Sequence[tuple[int, EventIn]]
) -> Ingested:
    now = utcnow()
    keys = [e.id for _, e in events if e.id is not None]
    stored: set[str] = set()
    if keys:
        stored = set(
            session.scalars(
                sa.select(ProductEvent.event_key).where(
                    ProductEvent.workspace_id == workspace_id,
                    bulk.among(session, ProductEvent.event_key, keys),
                )
            )
        )
    duplicates: list[EventResult] = []
    rows: list[dict[str, Any]] = []
    for index, event in events:
        if event.id is not None:
            if event.id in stored:
                duplicates.append(EventResult(index=index, status="duplicate", id=event.id))
                continue
            stored.add(event.id)  # a second copy later in this batch is a duplicate too
        rows.append(
            {
                "workspace_id": workspace_id,
                "event_key": event.id,
                "type": event.type,
                "name": event.name,
                "external_id": event.user_id,
                "email": event.email,
                "properties": event.properties,
                "occurred_at": event.occurred_at or now,
                "received_at": now,
            }
        )
    bulk.insert(session, table_of(ProductEvent), rows)
    _count(session, workspace_id, rows)
    return Ingested(accepted=len(rows), duplicates=duplicates)


def _count(session: Session, workspace_id: str, rows: Sequence[dict[str, Any]]) -> None:
    """Add the batch's volume per (type, name), creating names seen for the first time."""
    seen: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        key = (row["type"], row["name"])
        entry = seen.setdefault(key, [0, row["occurred_at"], row["occurred_at"]])
        entry[0] += 1
        entry[1] = min(entry[1], row["occurred_at"])
        entry[2] = max(entry[2], row["occurred_at"])
    if not seen:
        return
    names = sorted({name for _, name in seen})
    existing = {
        (t, n)
        for t, n in session.execute(
            sa.select(KnownEvent.type, KnownEvent.name).where(
                KnownEvent.workspace_id == workspace_id, KnownEvent.name.in_(names)
            )
        )
    }
    fresh = [
        {
            "workspace_id": workspace_id,
            "type": t,
            "name": n,
            "is_core": False,
            "volume": v[0],
            "first_seen_at": v[1],
            "last_seen_at": v[2],
        }
        for (t, n), v in seen.items()
        if (t, n) not in existing
    ]
    if fresh:
        session.execute(sa.insert(table_of(KnownEvent)), fresh)
    known = table_of(KnownEvent)
    bumps = [
        {"b_type": t, "b_name": n, "b_count": v[0], "b_first": v[1], "b_last": v[2]}
        for (t, n), v in seen.items()
        if (t, n) in existing
    ]
    if bumps:
        # Typed, so SQLite compares them in the stored (naive UTC) format.
        first = sa.bindparam("b_first", type_=UTCDateTime())
        last = sa.bindparam("b_last", type_=UTCDateTime())
        session.execute(
            known.update()
            .where(
                known.c.workspace_id == workspace_id,
                known.c.type == sa.bindparam("b_type"),
                known.c.name == sa.bindparam("b_name"),
            )
            .values(
                # Increments, not read-modify-write: concurrent batches never lose counts.
                volume=known.c.volume + sa.bindparam("b_count"),
                first_seen_at=sa.case(
                    (known.c.first_seen_at > first, first), else_=known.c.first_seen_at
                ),
                last_seen_at=sa.case(
                    (known.c.last_seen_at < last, last), else_=known.c.last_seen_at
                ),
            ),
            bumps,
        )


# -- reads ----------------------------------------------------------------------------


@dataclass(frozen=True)
class EventFilter:
    user_id: str | None = None
    email: str | None = None
    name: str | None = None
    type: str | None = None
    since: datetime | None = None


def list_events(
    session: Session, workspace_id: str, flt: EventFilter, *, limit: int, cursor: str | None
) -> tuple[Sequence[ProductEvent], str | None]:
    stmt = sa.select(ProductEvent).where(ProductEvent.workspace_id == workspace_id)
    if flt.user_id is not None:
        stmt = stmt.where(ProductEvent.external_id == flt.user_id)
    if flt.email is not None:
        stmt = stmt.where(ProductEvent.email == flt.email)
    if flt.name is not None:
        stmt = stmt.where(ProductEvent.name == flt.name)
    if flt.type is not None:
        stmt = stmt.where(ProductEvent.type == flt.type)
    if flt.since is not None:
        stmt = stmt.where(ProductEvent.occurred_at >= flt.since)
    if cursor is not None:
        (after,) = decode_cursor(cursor, 1)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidCursor("The cursor is not one this API issued.")
        stmt = stmt.where(ProductEvent.id > after)
    rows = session.scalars(stmt.order_by(ProductEvent.id).limit(limit + 1)).all()
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor([rows[-1].id])
    return rows, None


def known_events(session: Session, workspace_id: str) -> Sequence[KnownEvent]:
    return session.scalars(
        sa.select(KnownEvent)
        .where(KnownEvent.workspace_id == workspace_id)
        .order_by(KnownEvent.type, KnownEvent.name)
    ).all()


def set_core(session: Session, workspace_id: str, type_: str, name: str, core: bool) -> KnownEvent:
    found = session.scalars(
        sa.select(KnownEvent).where(
            KnownEvent.workspace_id == workspace_id,
            KnownEvent.type == type_,
            KnownEvent.name == name,
        )
    ).one_or_none()
    if found is None:
        raise KnownEventNotFound(f"No {type_} event named {name!r} has been received.")
    found.is_core = core
    session.flush()
    return found
