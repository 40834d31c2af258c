"""`/v1/events/hubspot/...`: the export of product events to HubSpot custom events."""

from __future__ import annotations

from fastapi import APIRouter, status

from spoke.connections.service import NotConnected
from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import AppServices, Db
from spoke.events import export_settings, export_status
from spoke.events.export_schemas import ExportSettingsIn, ExportSettingsOut, ExportStatus, RunOut
from spoke.events.export_settings import RUN_JOB, ExportNotEnabled, ExportRunInProgress
from spoke.workspaces.auth import AdminCaller, Idempotent, ServerCaller
from spoke.workspaces.service import RoleRequired

router = APIRouter(prefix="/v1/events/hubspot", tags=["events"], route_class=TransactionalRoute)


@router.get("/settings", response_model=ExportSettingsOut, responses=responses())
def get_settings(caller: ServerCaller, session: Db) -> ExportSettingsOut:
    """The export settings (the defaults until saved: off, core events only, each occurrence)."""
    return export_settings.render(export_settings.current(session, caller.workspace_id))


@router.put(
    "/settings",
    response_model=ExportSettingsOut,
    responses=responses(NotConnected, RoleRequired),
    dependencies=[Idempotent],
)
def put_settings(
    body: ExportSettingsIn, caller: AdminCaller, session: Db, services: AppServices
) -> ExportSettingsOut:
    """Save the settings. Owners and managers only. Enabling the export starts the first
    export at once (reaching back `lookback_days`); after that it runs nightly, or every
    minute with `schedule: realtime`."""
    run = export_settings.save(session, caller.workspace_id, body)
    if run is not None:
        services.jobs.enqueue_after_commit(session, RUN_JOB, run_id=run.id)
    return export_settings.render(export_settings.current(session, caller.workspace_id))


@router.get("/status", response_model=ExportStatus, responses=responses())
def get_status(caller: ServerCaller, session: Db) -> ExportStatus:
    """The last run; events sent, waiting and rejected (with reasons); users without a
    contact yet; this month's use of the portal's cap; the definitions Spoke created."""
    return export_status.status(session, caller.workspace_id)


@router.post(
    "/runs",
    response_model=RunOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(NotConnected, RoleRequired, ExportNotEnabled, ExportRunInProgress),
    dependencies=[Idempotent],
)
def start_run(caller: AdminCaller, session: Db, services: AppServices) -> RunOut:
    """Export now, without waiting for the schedule. Owners and managers only."""
    run = export_settings.start_manual(session, caller.workspace_id)
    services.jobs.enqueue_after_commit(session, RUN_JOB, run_id=run.id)
    return RunOut(
        id=run.id,
        kind=run.kind,
        status=run.status,
        sent=0,
        waiting=0,
        rejected=0,
        resolved=0,
        batches=0,
        error=None,
        created_at=run.created_at,
        started_at=None,
        finished_at=None,
    )
