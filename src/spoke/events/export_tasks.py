"""Jobs of the events export.

- `events.export_run` takes one run to its end (`export_run.process`). It is enqueued when
  the export is enabled, by `POST /v1/events/hubspot/runs`, by the tick, and by the sweeper
  when a run's lease ran out (its worker died) or its message was lost.
- `events.export_tick` (every minute) queues the nightly run at each workspace's hour, and
  for `realtime` workspaces a run whenever events arrived or waiting ones are due again.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.connections.models import HubSpotConnection
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.core.jobs import JobContext, job, periodic_job
from spoke.core.leases import register_sweepable
from spoke.events import export_run
from spoke.events.export_models import (
    EventExportMark,
    EventExportRollup,
    EventExportRun,
    EventExportSettings,
)
from spoke.events.export_settings import RUN_JOB, start_run
from spoke.events.models import ProductEvent

register_sweepable(EventExportRun, RUN_JOB, "run_id")


@job(RUN_JOB, retries=5, retry_delay=5)
def run(ctx: JobContext, run_id: str) -> None:
    owner = ctx.lease_owner()
    export_run.process(
        ctx.sessions,
        ctx.settings,
        ctx.encryptor,
        run_id,
        owner=owner,
        lease_seconds=ctx.settings.jobs.lease_seconds,
    )


@periodic_job("events.export_tick", minute="*")
def tick(ctx: JobContext) -> None:
    recheck = timedelta(minutes=ctx.settings.events_export.unmatched_recheck_minutes)
    with session_scope(ctx.sessions) as session:
        started = due_runs(session, recheck)
    for run_id in started:
        ctx.runtime.enqueue(RUN_JOB, run_id=run_id)


def _has_new_events(session: Session, row: EventExportSettings) -> bool:
    newer = session.scalar(
        sa.select(ProductEvent.id)
        .where(
            ProductEvent.workspace_id == row.workspace_id,
            ProductEvent.id > row.cursor_event_id,
        )
        .limit(1)
    )
    return newer is not None


def _has_retries_due(session: Session, row: EventExportSettings, recheck: timedelta) -> bool:
    last = session.scalar(
        sa.select(sa.func.max(EventExportRun.finished_at)).where(
            EventExportRun.workspace_id == row.workspace_id
        )
    )
    if last is not None and last > utcnow() - recheck:
        return False
    waiting = sa.select(EventExportMark.event_id).where(
        EventExportMark.workspace_id == row.workspace_id, EventExportMark.state == "waiting"
    )
    due_rollups = sa.select(EventExportRollup.id).where(
        EventExportRollup.workspace_id == row.workspace_id,
        EventExportRollup.state == "open",
        EventExportRollup.day < utcnow().strftime("%Y-%m-%d"),
    )
    return bool(
        session.scalar(sa.select(waiting.exists()))
        or session.scalar(sa.select(due_rollups.exists()))
    )


def due_runs(session: Session, recheck: timedelta) -> list[str]:
    """Queue the runs that are due now; returns their ids (enqueue them after commit)."""
    now = utcnow()
    today = now.strftime("%Y-%m-%d")
    rows = session.scalars(
        sa.select(EventExportSettings)
        .join(HubSpotConnection, HubSpotConnection.workspace_id == EventExportSettings.workspace_id)
        .where(EventExportSettings.enabled.is_(True), HubSpotConnection.status == "connected")
    ).all()
    started: list[str] = []
    for row in rows:
        kind: str | None = None
        if row.schedule == "nightly":
            if now.hour == row.nightly_hour and row.last_nightly_on != today:
                kind = "nightly"
        elif _has_new_events(session, row) or _has_retries_due(session, row, recheck):
            kind = "realtime"
        if kind is None:
            continue
        created = start_run(session, row.workspace_id, kind)
        if created is not None:
            started.append(created.id)
            if kind == "nightly":
                row.last_nightly_on = today
    return started
