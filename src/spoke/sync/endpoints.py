"""`/v1/sync/contacts/...`: settings and per-record health of the HubSpot contact sync."""

from __future__ import annotations

from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, status

from spoke.connections.service import NotConnected
from spoke.core.errors import Conflict, NotFound, responses
from spoke.core.http import TransactionalRoute
from spoke.core.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from spoke.deps import AppServices, Db
from spoke.sync import contact_marks, runs, webhooks
from spoke.sync import settings as sync_settings
from spoke.sync.links import make_due
from spoke.sync.models import ContactLink, ContactSyncRun, HubSpotWebhookBatch
from spoke.sync.schemas import (
    RecordOut,
    RunIn,
    RunOut,
    RunProgress,
    SettingsIn,
    SettingsOut,
    WebhookBatchOut,
)
from spoke.sync.tasks import RUN
from spoke.users.endpoints import ExternalIdPath
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
    responses=responses(NotConnected, RoleRequired, contact_marks.HubSpotUnavailable),
    dependencies=[Idempotent],
)
def put_settings(
    body: SettingsIn, caller: AdminCaller, session: Db, services: AppServices
) -> SettingsOut:
    """Save the settings. Owners and managers only. A change starts a new settings version;
    real-time sync continues under it. A `hubspot_list_id` is checked against the portal
    (it must exist and be a MANUAL contact list); a bad one is a 422 naming why."""

    def check_list(list_id: str) -> str | None:
        return contact_marks.check_list(
            session, services.settings, services.encryptor, caller.workspace_id, list_id
        )

    return sync_settings.save_settings(session, caller.workspace_id, body, check_list)


@router.get("/records", response_model=Page[RecordOut], responses=responses(InvalidCursor))
def list_records(
    caller: ServerCaller,
    session: Db,
    state: Annotated[Literal["in_sync", "excluded", "failing"] | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Page[RecordOut]:
    """Per-record sync health: in sync, excluded (with why) or failing (with HubSpot's reason,
    the failure count and when the next automatic retry is due)."""
    stmt = (
        sa.select(ContactLink, User.external_id, User.email)
        .join(User, User.id == ContactLink.user_id)
        .where(ContactLink.workspace_id == caller.workspace_id)
    )
    if state is not None:
        stmt = stmt.where(ContactLink.state == state)
    if cursor is not None:
        stmt = stmt.where(ContactLink.id > _int_cursor(cursor))
    rows = session.execute(stmt.order_by(ContactLink.id).limit(limit + 1)).all()
    items = [render_record(link, external_id, email) for link, external_id, email in rows[:limit]]
    more = len(rows) > limit
    return Page[RecordOut](
        data=items, next_cursor=encode_cursor([rows[limit - 1][0].id]) if more else None
    )


def _int_cursor(cursor: str) -> int:
    after = decode_cursor(cursor, 1)[0]
    if not isinstance(after, int) or isinstance(after, bool):
        raise InvalidCursor("The cursor is not one this API issued.")
    return after


def render_record(link: ContactLink, external_id: str, email: str | None) -> RecordOut:
    return RecordOut(
        external_id=external_id,
        email=email,
        hubspot_id=link.hubspot_id,
        state=link.state,
        reason=link.reason,
        failures=link.failures,
        next_attempt_at=link.next_attempt_at,
        hubspot_list_id=link.hubspot_list_id,
        conflicts=list(link.conflicts or []),
        last_synced_at=link.last_synced_at,
    )


class RecordNotFound(NotFound):
    code = "sync_record_not_found"
    title = "No sync record"


class RecordNotFailing(Conflict):
    code = "sync_record_not_failing"
    title = "The record is not failing"


@router.post(
    "/records/{external_id}/retry",
    response_model=RecordOut,
    responses=responses(RecordNotFound, RecordNotFailing),
    dependencies=[Idempotent],
)
def retry_record(
    external_id: ExternalIdPath, caller: ServerCaller, session: Db, services: AppServices
) -> RecordOut:
    """Retry a failing record at the next run instead of waiting for its backoff (also after
    the automatic retries gave up)."""
    found = session.execute(
        sa.select(ContactLink, User.email)
        .join(User, User.id == ContactLink.user_id)
        .where(ContactLink.workspace_id == caller.workspace_id, User.external_id == external_id)
    ).first()
    if found is None:
        raise RecordNotFound(f"The sync has no record of user {external_id!r}.")
    link, email = found
    if link.state != "failing":
        raise RecordNotFailing(f"User {external_id!r} is {link.state}, not failing.")
    make_due(link)
    session.flush()
    services.jobs.enqueue_after_commit(session, RUN, workspace_id=caller.workspace_id)
    return render_record(link, external_id, email)


@router.get("/webhooks", response_model=Page[WebhookBatchOut], responses=responses(InvalidCursor))
def list_webhook_batches(
    caller: ServerCaller,
    session: Db,
    state: Annotated[Literal["pending", "parked", "applied"], Query()] = "parked",
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[WebhookBatchOut]:
    """Stored HubSpot webhook deliveries by state: `parked` (set aside after failing to apply
    repeatedly, with the error), `pending` (not applied yet) or `applied`."""
    after = _int_cursor(cursor) if cursor is not None else None
    rows = webhooks.list_batches(session, caller.workspace_id, state, after, limit + 1)
    more = len(rows) > limit
    return Page[WebhookBatchOut](
        data=[render_batch(b) for b in rows[:limit]],
        next_cursor=encode_cursor([rows[limit - 1].id]) if more else None,
    )


def render_batch(batch: HubSpotWebhookBatch) -> WebhookBatchOut:
    state = (
        "applied"
        if batch.processed_at is not None
        else "parked"
        if batch.parked_at is not None
        else "pending"
    )
    return WebhookBatchOut(
        id=batch.id,
        state=state,
        received_at=batch.received_at,
        events=len(batch.events) if isinstance(batch.events, list) else 0,
        attempts=batch.attempts,
        error=batch.error,
        next_attempt_at=batch.next_attempt_at,
        parked_at=batch.parked_at,
        processed_at=batch.processed_at,
    )


@router.post(
    "/webhooks/{batch_id}/retry",
    response_model=WebhookBatchOut,
    responses=responses(webhooks.WebhookBatchNotFound, webhooks.WebhookBatchApplied),
    dependencies=[Idempotent],
)
def retry_webhook_batch(
    batch_id: Annotated[int, Path(ge=1, le=2**62)],
    caller: ServerCaller,
    session: Db,
    services: AppServices,
) -> WebhookBatchOut:
    """Put a parked (or failing) webhook batch back: it is applied at the next run and gets
    its attempts afresh."""
    batch = webhooks.retry(session, caller.workspace_id, batch_id)
    services.jobs.enqueue_after_commit(session, RUN, workspace_id=caller.workspace_id)
    return render_batch(batch)


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
        list_adds=run.list_adds,
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
    real-time changes wait. `dry_run` reports creates, updates, duplicates, conflicts and
    additions to the settings' HubSpot list (`list_adds`) without writing."""
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
