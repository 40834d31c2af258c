"""Where an export run's chunks come from: waiting events, the scan after the cursor, and
the daily rollups whose day is over. Each yields `Plan`s in id order (keyset pagination),
reading the event table once per chunk with its properties parsed once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.db import session_scope, table_of
from spoke.events import cap, naming, rollup
from spoke.events.export_context import Context
from spoke.events.export_models import EventExportMark, EventExportRollup, EventExportSettings
from spoke.events.export_plan import Item, Plan
from spoke.events.identity import identity_key
from spoke.events.models import KnownEvent, ProductEvent

Pair = tuple[str, str]
_EVENTS = table_of(ProductEvent)
# Core columns of the table, not ORM attributes: the rows then skip the ORM's loading
# machinery, which was over half the cost of reading a chunk.
_COLUMNS = (
    _EVENTS.c.id,
    _EVENTS.c.type,
    _EVENTS.c.name,
    _EVENTS.c.external_id,
    _EVENTS.c.email,
    # As text, parsed once below with orjson: cheaper than the driver's JSON handling.
    sa.cast(_EVENTS.c.properties, sa.Text).label("properties"),
    _EVENTS.c.occurred_at,
)


def selection(session: Session, ctx: Context) -> dict[Pair, str]:
    """Exported (type, name) pairs and how each is delivered."""
    config = ctx.config
    chosen = {(t, n): d for t, n, d in config.events}
    if config.send == "selected":
        return {pair: d or config.default_delivery for pair, d in chosen.items()}
    core = session.execute(
        sa.select(KnownEvent.type, KnownEvent.name).where(
            KnownEvent.workspace_id == ctx.workspace_id, KnownEvent.is_core.is_(True)
        )
    )
    return {(t, n): chosen.get((t, n)) or config.default_delivery for t, n in core}


def _items(rows: Sequence[Any]) -> list[Item]:
    return [
        Item(
            "event",
            event_id,
            f"u:{external_id}" if external_id is not None else f"e:{email}",
            external_id,
            email,
            event_type,
            name,
            occurred_at,
            orjson.loads(properties) if properties else {},
        )
        for event_id, event_type, name, external_id, email, properties, occurred_at, *_ in rows
    ]


def _bound(session: Session, ctx: Context, cursor: int) -> int:
    """The last event id the scan may reach now: just before the first unsettled event."""
    base = sa.select(sa.func.min(ProductEvent.id)).where(
        ProductEvent.workspace_id == ctx.workspace_id,
        ProductEvent.id > cursor,
        ProductEvent.received_at > utcnow() - ctx.settle,
    )
    unsettled = session.scalar(base)
    if unsettled is not None:
        return int(unsettled) - 1
    top = session.scalar(
        sa.select(sa.func.max(ProductEvent.id)).where(
            ProductEvent.workspace_id == ctx.workspace_id, ProductEvent.id > cursor
        )
    )
    return int(top) if top is not None else cursor


def scan_plans(ctx: Context) -> Iterator[Plan]:
    with session_scope(ctx.sessions) as session:
        row = session.get(EventExportSettings, ctx.workspace_id)
        assert row is not None
        after = row.cursor_event_id
        pairs = selection(session, ctx)
        bound = _bound(session, ctx, after)
    if not pairs:
        if bound > after:
            yield Plan("scan", [], cursor_to=bound)
        return
    while after < bound:
        with session_scope(ctx.sessions) as session:
            stmt = sa.select(*_COLUMNS).where(
                _EVENTS.c.workspace_id == ctx.workspace_id,
                _EVENTS.c.id > after,
                _EVENTS.c.id <= bound,
                sa.tuple_(_EVENTS.c.type, _EVENTS.c.name).in_(sorted(pairs)),
            )
            if ctx.config.export_from is not None:
                stmt = stmt.where(_EVENTS.c.occurred_at >= ctx.config.export_from)
            rows = session.execute(stmt.order_by(_EVENTS.c.id).limit(ctx.chunk)).all()
            last = rows[-1].id if rows else bound
            done = set(
                session.scalars(
                    sa.select(EventExportMark.event_id).where(
                        EventExportMark.workspace_id == ctx.workspace_id,
                        EventExportMark.state == "sent",
                        EventExportMark.event_id > after,
                        EventExportMark.event_id <= last,
                    )
                )
            )
        cursor_to = last if len(rows) == ctx.chunk else bound
        plan = Plan("scan", [], cursor_to=cursor_to)
        rollups = {pair for pair, delivery in pairs.items() if delivery == "daily_rollup"}
        if done or rollups:
            each = []
            for event in rows:
                if event.id in done:
                    continue
                if (event.type, event.name) not in rollups:
                    each.append(event)
                    continue
                plan.rollup_events.append(
                    rollup.Occurrence(
                        identity_key(event.external_id, event.email),
                        event.external_id,
                        event.email,
                        event.type,
                        event.name,
                        event.occurred_at,
                    )
                )
            rows = each
        plan.items = _items(rows)
        yield plan
        after = cursor_to


def waiting_plans(ctx: Context) -> Iterator[Plan]:
    """Events waiting for a contact, or for room under the cap (only when there is room)."""
    with session_scope(ctx.sessions) as session:
        month = cap.month_of(utcnow())
        room = cap.used(session, ctx.portal_id, month) < ctx.config.monthly_cap
    after = 0
    while True:
        with session_scope(ctx.sessions) as session:
            stmt = (
                sa.select(*_COLUMNS, EventExportMark.reason.label("mark_reason"))
                .select_from(EventExportMark)
                .join(
                    _EVENTS,
                    sa.and_(
                        _EVENTS.c.workspace_id == EventExportMark.workspace_id,
                        _EVENTS.c.id == EventExportMark.event_id,
                    ),
                )
                .where(
                    EventExportMark.workspace_id == ctx.workspace_id,
                    EventExportMark.state == "waiting",
                    EventExportMark.event_id > after,
                )
            )
            if not room:
                stmt = stmt.where(EventExportMark.reason != "cap")
            rows = session.execute(stmt.order_by(EventExportMark.event_id).limit(ctx.chunk)).all()
        if not rows:
            return
        plan = Plan("waiting", _items(rows))
        plan.previous = {r.id: r.mark_reason for r in rows}
        yield plan
        after = rows[-1].id


def rollup_plans(ctx: Context) -> Iterator[Plan]:
    """Open rollups of days that are over (UTC)."""
    today = utcnow().strftime("%Y-%m-%d")
    after = 0
    while True:
        with session_scope(ctx.sessions) as session:
            rows = list(
                session.scalars(
                    sa.select(EventExportRollup)
                    .where(
                        EventExportRollup.workspace_id == ctx.workspace_id,
                        EventExportRollup.state == "open",
                        EventExportRollup.day < today,
                        EventExportRollup.id > after,
                    )
                    .order_by(EventExportRollup.id)
                    .limit(ctx.chunk)
                )
            )
        if not rows:
            return
        items = [
            Item(
                "rollup",
                r.id,
                r.identity_key,
                r.external_id,
                r.email,
                r.event_type,
                r.event_name,
                r.last_at,
                {
                    "count": r.count,
                    "first_at": naming.iso_ms(r.first_at),
                    "last_at": naming.iso_ms(r.last_at),
                    "day": r.day,
                },
            )
            for r in rows
        ]
        yield Plan("rollups", items)
        after = rows[-1].id
