"""Reading and saving a workspace's export settings, and starting export runs.

Enabling the export (saving `enabled: true` when it was off) sets how far back it reaches
(`lookback_days` before now) and queues the first run at once. One run per workspace is
active at a time: the nightly or real-time tick does not start another while one is queued
or running, and a manual start is refused with 409.
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.connections.models import HubSpotConnection
from spoke.connections.service import NotConnected
from spoke.core.clock import utcnow
from spoke.core.errors import Conflict
from spoke.core.ids import new_id
from spoke.events.export_models import EventExportRun, EventExportSettings
from spoke.events.export_schemas import ExportSettingsIn, ExportSettingsOut

RUN_JOB = "events.export_run"
ACTIVE = ("queued", "running")
_FIELDS = (
    "send",
    "default_delivery",
    "long_values",
    "create_contacts",
    "schedule",
    "nightly_hour",
    "lookback_days",
    "monthly_cap",
)


class ExportRunInProgress(Conflict):
    code = "event_export_run_in_progress"
    title = "An export run is already queued or running"


class ExportNotEnabled(Conflict):
    code = "event_export_not_enabled"
    title = "The export to HubSpot is not enabled"


def default_row(workspace_id: str) -> EventExportSettings:
    now = utcnow()
    return EventExportSettings(
        workspace_id=workspace_id,
        version=0,
        enabled=False,
        send="core",
        events=[],
        default_delivery="each",
        property_types={},
        long_values="truncate",
        create_contacts=False,
        schedule="nightly",
        nightly_hour=2,
        lookback_days=7,
        monthly_cap=30_000_000,
        export_from=None,
        cursor_event_id=0,
        sent_total=0,
        enabled_at=None,
        last_nightly_on=None,
        created_at=now,
        updated_at=now,
    )


def current(session: Session, workspace_id: str) -> EventExportSettings:
    """The saved settings, or the defaults (not stored) when none were saved."""
    return session.get(EventExportSettings, workspace_id) or default_row(workspace_id)


def render(row: EventExportSettings) -> ExportSettingsOut:
    return ExportSettingsOut(
        enabled=row.enabled,
        events=row.events,  # type: ignore[arg-type]  # validated when saved
        property_types=row.property_types,
        version=row.version,
        enabled_at=row.enabled_at,
        export_from=row.export_from,
        updated_at=row.updated_at,
        **{name: getattr(row, name) for name in _FIELDS},
    )


def _connected(session: Session, workspace_id: str) -> bool:
    conn = session.get(HubSpotConnection, workspace_id)
    return conn is not None and conn.status == "connected"


def save(session: Session, workspace_id: str, body: ExportSettingsIn) -> EventExportRun | None:
    """Store the settings; returns the first run when this save enabled the export.

    Raises:
        NotConnected: enabling without a HubSpot connection.
    """
    if body.enabled and not _connected(session, workspace_id):
        raise NotConnected("Connect HubSpot before enabling the events export.")
    row = session.get(EventExportSettings, workspace_id, with_for_update=True)
    if row is None:
        row = default_row(workspace_id)
        session.add(row)
    was_enabled = row.enabled
    now = utcnow()
    for name in _FIELDS:
        setattr(row, name, getattr(body, name))
    row.events = [e.model_dump() for e in body.events]
    row.property_types = dict(body.property_types)
    row.enabled = body.enabled
    row.version += 1
    row.updated_at = now
    session.flush()
    if body.enabled and not was_enabled:
        row.enabled_at = now
        row.export_from = now - timedelta(days=body.lookback_days)
        return start_run(session, workspace_id, "first")
    return None


def active_run(session: Session, workspace_id: str) -> EventExportRun | None:
    return session.scalar(
        sa.select(EventExportRun)
        .where(EventExportRun.workspace_id == workspace_id, EventExportRun.status.in_(ACTIVE))
        .limit(1)
    )


def start_run(
    session: Session, workspace_id: str, kind: str, *, refuse_if_active: bool = False
) -> EventExportRun | None:
    """Queue a run, unless one is active (then None, or 409 with `refuse_if_active`).

    Raises:
        ExportRunInProgress: with `refuse_if_active`, a run is queued or running.
    """
    # Lock the settings row: two starts at once must not both queue a run.
    session.execute(
        sa.select(EventExportSettings.workspace_id)
        .where(EventExportSettings.workspace_id == workspace_id)
        .with_for_update()
    )
    if active_run(session, workspace_id) is not None:
        if refuse_if_active:
            raise ExportRunInProgress("An export run is already queued or running.")
        return None
    run = EventExportRun(id=new_id("exr"), workspace_id=workspace_id, kind=kind, status="queued")
    run.created_at = utcnow()
    session.add(run)
    session.flush()
    return run


def start_manual(session: Session, workspace_id: str) -> EventExportRun:
    """`POST /v1/events/hubspot/runs`: export now.

    Raises:
        NotConnected: no HubSpot connection.
        ExportNotEnabled: the export is off.
        ExportRunInProgress: a run is queued or running.
    """
    if not _connected(session, workspace_id):
        raise NotConnected("Connect HubSpot before exporting events.")
    row = session.get(EventExportSettings, workspace_id)
    if row is None or not row.enabled:
        raise ExportNotEnabled("Enable the export in /v1/events/hubspot/settings first.")
    run = start_run(session, workspace_id, "manual", refuse_if_active=True)
    assert run is not None
    return run
