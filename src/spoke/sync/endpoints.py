"""`/v1/sync/contacts/...`: settings and per-record health of the HubSpot contact sync."""

from __future__ import annotations

from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, status

from spoke.connections.service import NotConnected
from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.core.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from spoke.deps import AppServices, Db
from spoke.sync import runs
from spoke.sync import settings as sync_settings
from spoke.sync.models import ContactLink, ContactSyncRun
from spoke.sync.schemas import RecordOut, RunIn, RunOut, RunProgress, SettingsIn, SettingsOut
from spoke.users.models import User
from spoke.workspaces.auth import AdminCaller, Idempotent, ServerCaller
from spoke.workspaces.service import RoleRequired

router = APIRouter(prefix="/v1/sync/contacts", tags=["sync"], route_class=TransactionalRoute)


@router.get("/settings", response_model=SettingsOut, responses=responses(NotConnected))
def get_settings(caller: ServerCaller, session: Db) -> SettingsOut:
    """The contact sync settings (the defaults until saved), state and pending changes."""
    return sync_settings.get_settings(session, caller.workspace_id)


@router.put(
    "/settings",
    response_model=SettingsOut,
    responses=responses(NotConnected, RoleRequired),
    dependencies=[Idempotent],
)
def put_settings(body: SettingsIn, caller: AdminCaller, session: Db) -> SettingsOut:
    """Save the settings. Owners and managers only. A change starts a new settings version;
    real-time sync continues under it."""
    return sync_settings.save_settings(session, caller.workspace_id, body)


@router.get("/records", response_model=Page[RecordOut], responses=responses(InvalidCursor))
def list_records(
    caller: ServerCaller,
    session: Db,
    state: Annotated[Literal["in_sync", "excluded", "failing"] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[RecordOut]:
    """Per-record sync health: in sync, excluded (with why) or failing (with HubSpot's reason)."""
    stmt = (
        sa.select(ContactLink, User.external_id, User.email)
        .join(User, User.id == ContactLink.user_id)
        .where(ContactLink.workspace_id == caller.workspace_id)
    )
    if state is not None:
        stmt = stmt.where(ContactLink.state == state)
    if cursor is not None:
        after = decode_cursor(cursor, 1)[0]
        if not isinstance(after, int) or isinstance(after, bool):
            raise InvalidCursor("The cursor is not one this API issued.")
        stmt = stmt.where(ContactLink.id > after)
    rows = session.execute(stmt.order_by(ContactLink.id).limit(limit + 1)).all()
    items = [
        RecordOut(
            external_id=external_id,
            email=email,
            hubspot_id=link.hubspot_id,
            state=link.state,
            reason=link.reason,
            failures=link.failures,
            conflicts=list(link.conflicts or []),
            last_synced_at=link.last_synced_at,
        )
        for link, external_id, email in rows[:limit]
    ]
    more = len(rows) > limit
    return Page[RecordOut](
        data=items, next_cursor=encode_cursor([rows[limit - 1][0].id]) if more else None
    )


def render_run(run: ContactSyncRun) -> RunOut:
    return RunOut(
        id=run.id,
        status=run.status,
        direction=run.direction,
        source_app=run.source_app,
        dry_run=run.dry_run,
        progress=RunProgress.model_validate(runs.progress(run)),
        created=run.created,
        updated=run.updated,
        unchanged=run.unchanged,
        duplicates=run.duplicates,
        conflicts=run.conflicts,
        excluded=run.excluded,
        failed=run.failed,
        samples={k: list(v) for k, v in (run.samples or {}).items()},
        error=run.error,
        requested_by=run.requested_by,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


@router.post(
    "/runs",
    response_model=RunOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(NotConnected, RoleRequired, runs.RunInProgress),
    dependencies=[Idempotent],
)
def start_run(body: RunIn, caller: AdminCaller, session: Db, services: AppServices) -> RunOut:
    """Start a manual sync (backfill) of existing records in one direction. Owners and
    managers only; one run at a time. While it runs the sync state is `syncing` and
    real-time changes wait. `dry_run` reports creates, updates, duplicates and conflicts
    without writing."""
    run = runs.start(
        session,
        caller.workspace_id,
        direction=body.direction,
        source_app=body.source_app,
        dry_run=body.dry_run,
        actor=caller.actor,
    )
    services.jobs.enqueue_after_commit(session, runs.RUN_JOB, run_id=run.id)
    return render_run(run)


@router.get("/runs", response_model=list[RunOut], responses=responses())
def list_runs(caller: ServerCaller, session: Db) -> list[RunOut]:
    """The last 20 runs, newest first, with their counts and sample errors."""
    return [render_run(r) for r in runs.list_runs(session, caller.workspace_id)]


@router.get("/runs/{run_id}", response_model=RunOut, responses=responses(runs.RunNotFound))
def get_run(
    caller: ServerCaller,
    session: Db,
    run_id: Annotated[str, Path(max_length=40, pattern=r"^[A-Za-z0-9_]+$")],
) -> RunOut:
    """A run's progress (done/total, rate, ETA) and counts."""
    return render_run(runs.get_run(session, caller.workspace_id, run_id))
