"""Jobs of the contact sync, and what starts them.

`sync.run` moves one workspace's changes both ways (see `engine`). It is started:

- after a webhook batch is stored (`/hooks/hubspot`);
- after any transaction that wrote to a connected workspace's users change feed (a
  listener on `users.changes.record` enqueues it once that transaction commits);
- by itself, when it finishes and finds that more arrived meanwhile;
- by `sync.tick` every minute for any workspace with work left (the queue is a hint; the
  cursor and the stored batches are the truth).
"""

from __future__ import annotations

import threading
import time
import weakref

import sqlalchemy as sa
import structlog
from sqlalchemy import event
from sqlalchemy.engine import Engine as DbEngine
from sqlalchemy.orm import Session

from spoke.connections.models import HubSpotConnection
from spoke.connections.service import NotConnected
from spoke.core.clock import utcnow
from spoke.core.db import after_commit, session_scope
from spoke.core.jobs import JobContext, JobRuntime, job, periodic_job
from spoke.core.leases import register_sweepable
from spoke.hubspot import HubSpotError
from spoke.sync import run_placement, runs, webhooks
from spoke.sync.engine import Engine, LeaseLost
from spoke.sync.models import (
    ContactLink,
    ContactSyncRun,
    ContactSyncSettings,
    HubSpotWebhookBatch,
)
from spoke.sync.runs import RUN_JOB
from spoke.users import changes
from spoke.users.changes import Origin
from spoke.workspaces.models import Workspace

log = structlog.get_logger("spoke.sync")

RUN = "sync.run"
RECONCILE = "sync.reconcile"


@job(RUN, retries=3, retry_delay=2)
def run(ctx: JobContext, workspace_id: str) -> None:
    engine = Engine(ctx.sessions, ctx.settings, ctx.encryptor, workspace_id)
    try:
        more = engine.run()
    except (LeaseLost, NotConnected):
        return
    except HubSpotError as exc:
        log.warning("sync.run_failed", workspace_id=workspace_id, exc_info=True)
        _note_error(ctx, workspace_id, str(exc))
        raise
    _note_error(ctx, workspace_id, None)
    if more:
        ctx.runtime.enqueue(RUN, workspace_id=workspace_id)


register_sweepable(ContactSyncRun, RUN_JOB, "run_id")


@job(RUN_JOB, retries=5, retry_delay=5)
def manual_run(
    ctx: JobContext, run_id: str, hand_backs: int = 0, handed_back_at: float | None = None
) -> None:
    with run_placement.placed(ctx.sessions, ctx.worker_id, handed_back_at) as taken:
        if not taken:  # this process has its share of runs: leave it to another
            ctx.runtime.enqueue_later(
                run_placement.HAND_BACK_SECONDS,
                RUN_JOB,
                run_id=run_id,
                hand_backs=hand_backs + 1,
                handed_back_at=handed_back_at or time.time(),
            )
            return
        if hand_backs:
            log.info("sync.run_placed", run_id=run_id, hand_backs=hand_backs)
        # The worker id in front of the owner is how `run_placement` tells this process's
        # runs apart.
        owner = ctx.lease_owner()
        finished = runs.process(
            ctx.sessions,
            ctx.settings,
            ctx.encryptor,
            run_id,
            owner=owner,
            lease_seconds=ctx.settings.jobs.lease_seconds,
        )
    if finished:
        with session_scope(ctx.sessions) as session:
            run_row = session.get(ContactSyncRun, run_id)
            workspace_id = run_row.workspace_id if run_row is not None else None
        if workspace_id is not None:  # real-time changes that waited drain now
            ctx.runtime.enqueue(RUN, workspace_id=workspace_id)


def _note_error(ctx: JobContext, workspace_id: str, error: str | None) -> None:
    """Show the last HubSpot failure on the connection (cleared by the next good run)."""
    with session_scope(ctx.sessions) as session:
        conn = session.get(HubSpotConnection, workspace_id)
        if conn is not None and conn.last_error != error:
            conn.last_error = error[:1000] if error else None


@periodic_job("sync.tick", minute="*")
def tick(ctx: JobContext) -> None:
    with session_scope(ctx.sessions) as session:
        ids = workspaces_with_work(session)
    for workspace_id in ids:
        ctx.runtime.enqueue(RUN, workspace_id=workspace_id)


@job(RECONCILE, retries=2, retry_delay=30)
def reconcile(ctx: JobContext, workspace_id: str) -> None:
    engine = Engine(ctx.sessions, ctx.settings, ctx.encryptor, workspace_id)
    try:
        engine.reconcile()
    except (LeaseLost, NotConnected):
        return


@periodic_job("sync.reconcile_all", minute="*/10")
def reconcile_all(ctx: JobContext) -> None:
    """Every ten minutes: re-read what HubSpot changed, in case a webhook was lost."""
    with session_scope(ctx.sessions) as session:
        ids = list(
            session.scalars(
                sa.select(ContactSyncSettings.workspace_id)
                .join(
                    HubSpotConnection,
                    HubSpotConnection.workspace_id == ContactSyncSettings.workspace_id,
                )
                .where(
                    ContactSyncSettings.state == "active",
                    ContactSyncSettings.direction != "to_hubspot",
                    HubSpotConnection.status == "connected",
                )
            )
        )
    for workspace_id in ids:
        ctx.runtime.enqueue(RECONCILE, workspace_id=workspace_id)


def workspaces_with_work(session: Session) -> list[str]:
    """Active, connected workspaces with unsent changes, due webhook batches or due retries."""
    now = utcnow()
    pending_batches = (
        sa.select(HubSpotWebhookBatch.id)
        .where(
            HubSpotWebhookBatch.workspace_id == ContactSyncSettings.workspace_id,
            webhooks.pending_clause(now),
        )
        .exists()
    )
    failing = (
        sa.select(ContactLink.id)
        .where(
            ContactLink.workspace_id == ContactSyncSettings.workspace_id,
            ContactLink.state == "failing",
            ContactLink.next_attempt_at <= now,
        )
        .exists()
    )
    stmt = (
        sa.select(ContactSyncSettings.workspace_id)
        .join(Workspace, Workspace.id == ContactSyncSettings.workspace_id)
        .join(HubSpotConnection, HubSpotConnection.workspace_id == Workspace.id)
        .where(
            ContactSyncSettings.state == "active",
            HubSpotConnection.status == "connected",
            sa.or_(Workspace.change_seq > ContactSyncSettings.cursor_seq, pending_batches, failing),
        )
    )
    return list(session.scalars(stmt))


# -- starting a run after users change ---------------------------------------------------------

_runtimes: weakref.WeakKeyDictionary[DbEngine, JobRuntime] = weakref.WeakKeyDictionary()
_connected: dict[str, tuple[bool, float]] = {}
_CACHE_SECONDS = 10.0
_lock = threading.Lock()
_PENDING = "spoke.sync.touched"


def install(runtime: JobRuntime, db_engine: DbEngine) -> None:
    """Let writes through `db_engine` start `sync.run` on `runtime` (called by the runtime)."""
    _runtimes[db_engine] = runtime


def forget_connection_cache(workspace_id: str) -> None:
    with _lock:
        _connected.pop(workspace_id, None)


def _is_synced(session: Session, workspace_id: str) -> bool:
    now = time.monotonic()
    with _lock:
        known = _connected.get(workspace_id)
    if known is not None and now - known[1] < _CACHE_SECONDS:
        return known[0]
    found = session.execute(
        sa.select(HubSpotConnection.status).where(HubSpotConnection.workspace_id == workspace_id)
    ).scalar_one_or_none()
    synced = found == "connected"
    with _lock:
        _connected[workspace_id] = (synced, now)
    return synced


def _on_user_changes(session: Session, origin: Origin) -> None:
    """After a transaction that changed users commits, start the workspace's sync run."""
    workspace_id = origin.workspace_id
    touched: set[str] | None = session.info.get(_PENDING)
    if touched is not None and workspace_id in touched:
        return
    bind = session.get_bind()
    db_engine = bind if isinstance(bind, DbEngine) else bind.engine
    runtime = _runtimes.get(db_engine)
    if runtime is None:
        return
    with session.no_autoflush:
        if not _is_synced(session, workspace_id):
            return
    session.info.setdefault(_PENDING, set()).add(workspace_id)

    def send() -> None:
        try:
            runtime.enqueue(RUN, workspace_id=workspace_id)
        except Exception:  # the tick finds the work anyway
            log.warning("sync.enqueue_failed", workspace_id=workspace_id, exc_info=True)

    after_commit(session, send)


changes.add_listener(_on_user_changes)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _reset(session: Session) -> None:
    session.info.pop(_PENDING, None)
