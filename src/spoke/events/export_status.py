"""`GET /v1/events/hubspot/status`: what the export did and what is left, with reasons."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.connections.models import HubSpotConnection
from spoke.core.clock import utcnow
from spoke.events import cap
from spoke.events.export_models import (
    EventExportDefinition,
    EventExportMark,
    EventExportRollup,
    EventExportRun,
)
from spoke.events.export_schemas import (
    CapOut,
    Counted,
    DefinitionOut,
    ExportStatus,
    RunOut,
)
from spoke.events.export_settings import current

UNMATCHED = ("unmatched", "no_email", "contact_missing")


def _counted(rows: list[tuple[str | None, int]]) -> Counted:
    by_reason: dict[str, int] = {}
    for reason, count in rows:
        key = reason or "unknown"
        by_reason[key] = by_reason.get(key, 0) + int(count)
    return Counted(total=sum(by_reason.values()), by_reason=by_reason)


def _by_reason(session: Session, workspace_id: str, state: str) -> list[tuple[str | None, int]]:
    marks = session.execute(
        sa.select(EventExportMark.reason, sa.func.count())
        .where(EventExportMark.workspace_id == workspace_id, EventExportMark.state == state)
        .group_by(EventExportMark.reason)
    ).all()
    rollup_state = "open" if state == "waiting" else state
    rollups = session.execute(
        sa.select(EventExportRollup.reason, sa.func.count())
        .where(
            EventExportRollup.workspace_id == workspace_id,
            EventExportRollup.state == rollup_state,
            EventExportRollup.reason.is_not(None),
        )
        .group_by(EventExportRollup.reason)
    ).all()
    return [(r, int(n)) for r, n in [*marks, *rollups]]


def _unmatched_users(session: Session, workspace_id: str) -> int:
    keys = sa.union(
        sa.select(EventExportMark.identity_key).where(
            EventExportMark.workspace_id == workspace_id,
            EventExportMark.state == "waiting",
            EventExportMark.reason.in_(UNMATCHED),
        ),
        sa.select(EventExportRollup.identity_key).where(
            EventExportRollup.workspace_id == workspace_id,
            EventExportRollup.state == "open",
            EventExportRollup.reason.in_(UNMATCHED),
        ),
    ).subquery()
    return int(session.scalar(sa.select(sa.func.count()).select_from(keys)) or 0)


def _cap(session: Session, workspace_id: str, monthly_cap: int) -> CapOut | None:
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is None:
        return None
    now = utcnow()
    month = cap.month_of(now)
    used = cap.used(session, conn.portal_id, month)
    return CapOut(
        portal_id=conn.portal_id,
        month=month,
        used=used,
        cap=monthly_cap,
        remaining=max(0, monthly_cap - used),
        forecast=cap.forecast(used, now),
        warning=used >= cap.WARN_AT * monthly_cap,
        reached=used >= monthly_cap,
    )


def status(session: Session, workspace_id: str) -> ExportStatus:
    row = current(session, workspace_id)
    run = session.scalar(
        sa.select(EventExportRun)
        .where(EventExportRun.workspace_id == workspace_id)
        .order_by(EventExportRun.created_at.desc(), EventExportRun.id.desc())
        .limit(1)
    )
    definitions = session.scalars(
        sa.select(EventExportDefinition)
        .where(EventExportDefinition.workspace_id == workspace_id)
        .order_by(EventExportDefinition.id)
    )
    return ExportStatus(
        enabled=row.enabled,
        schedule=row.schedule,
        last_run=None
        if run is None
        else RunOut(
            id=run.id,
            kind=run.kind,
            status=run.status,
            sent=run.sent,
            waiting=run.waiting,
            rejected=run.rejected,
            resolved=run.resolved,
            batches=run.batches,
            error=run.error,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
        ),
        sent=row.sent_total,
        waiting=_counted(_by_reason(session, workspace_id, "waiting")),
        unmatched_users=_unmatched_users(session, workspace_id),
        rejected=_counted(_by_reason(session, workspace_id, "rejected")),
        cap=_cap(session, workspace_id, row.monthly_cap),
        definitions=[
            DefinitionOut(
                type=d.event_type,
                name=d.event_name,
                rollup=d.rollup,
                fully_qualified_name=d.fully_qualified_name,
                state=d.state,
                reason=d.reason,
                properties=len(d.properties),
                dropped_properties={k: str(v) for k, v in d.dropped.items()},
            )
            for d in definitions
        ],
    )
