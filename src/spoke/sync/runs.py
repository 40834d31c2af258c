"""Manual sync (backfill) runs: copy what exists from one app to the other.

`POST /v1/sync/contacts/runs` queues a run; `sync.manual_run` processes it one page (≤100
records) at a time. Records are paired by email; on a conflict the source app's values win
(by default the sending app), and a blank never overwrites. A dry run writes nothing and
counts what would happen: creates, updates, duplicates (records found on both sides by
email) and conflicts, with samples field by field.

While a run is queued or running the workspace's state is `syncing`: real-time changes wait
(webhooks are stored, the users feed is not read) and drain when the run ends. One run at a
time per workspace. Each page commits with the run's checkpoint and a lease renewal, so a
run survives `kill -9` of its worker: the sweeper re-enqueues it when the lease runs out
and it resumes after the last committed page. Re-doing a page is harmless (upserts by
email, writes by key, comparisons against current values, idempotent adds to the settings'
HubSpot list).
"""

from __future__ import annotations

import uuid
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.connections import service as connections
from spoke.connections.models import HubSpotConnection
from spoke.core import leases
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import session_scope
from spoke.core.errors import Conflict, NotFound
from spoke.core.ids import new_id
from spoke.core.table_stats import GrowingTables
from spoke.hubspot import BlockingClient, SearchRequest
from spoke.sync import backfill_lanes as lanes
from spoke.sync import backfill_to_hubspot as to_hubspot
from spoke.sync.models import ContactSyncRun, ContactSyncSettings
from spoke.sync.run_frontier import IdFrontier
from spoke.sync.settings import effective, ensure_row

log = structlog.get_logger("spoke.sync.runs")

PAGE = 100
ACTIVE = ("queued", "running")
RUN_JOB = "sync.manual_run"


class RunInProgress(Conflict):
    code = "sync_run_in_progress"
    title = "A manual sync is already running"


class RunNotFound(NotFound):
    code = "sync_run_not_found"


def active_run(session: Session, workspace_id: str) -> ContactSyncRun | None:
    return session.scalar(
        sa.select(ContactSyncRun)
        .where(ContactSyncRun.workspace_id == workspace_id, ContactSyncRun.status.in_(ACTIVE))
        .limit(1)
    )


def start(
    session: Session,
    workspace_id: str,
    *,
    direction: str,
    source_app: str | None,
    dry_run: bool,
    actor: str,
) -> ContactSyncRun:
    """Queue a run; refuses a second one while one is active."""
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is None or conn.status != "connected":
        raise connections.NotConnected("Connect HubSpot before running a manual sync.")
    row = ensure_row(session, workspace_id)
    # Lock the settings row: two requests at once must not both start a run.
    session.execute(
        sa.select(ContactSyncSettings.workspace_id)
        .where(ContactSyncSettings.workspace_id == row.workspace_id)
        .with_for_update()
    )
    if active_run(session, workspace_id) is not None:
        raise RunInProgress("A manual sync is already queued or running for this workspace.")
    sender = "spoke" if direction == "to_hubspot" else "hubspot"
    run = ContactSyncRun(
        id=new_id("run"),
        workspace_id=workspace_id,
        direction=direction,
        source_app=source_app or sender,
        dry_run=dry_run,
        requested_by=actor,
        status="queued",
        checkpoint={},
        samples={"conflicts": [], "errors": []},
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, workspace_id: str, run_id: str) -> ContactSyncRun:
    run = session.get(ContactSyncRun, run_id)
    if run is None or run.workspace_id != workspace_id:
        raise RunNotFound(f"No sync run {run_id!r}.")
    return run


def list_runs(session: Session, workspace_id: str, limit: int = 20) -> list[ContactSyncRun]:
    return list(
        session.scalars(
            sa.select(ContactSyncRun)
            .where(ContactSyncRun.workspace_id == workspace_id)
            .order_by(ContactSyncRun.created_at.desc(), ContactSyncRun.id.desc())
            .limit(limit)
        )
    )


# -- processing --------------------------------------------------------------------------------


def process(
    sessions: sessionmaker[Session],
    settings: Settings,
    encryptor: Encryptor,
    run_id: str,
    *,
    owner: str | None = None,
    lease_seconds: float = 60.0,
) -> bool:
    """Claim the run and process it to the end; returns False if someone else holds it."""
    owner = owner or uuid.uuid4().hex
    with session_scope(sessions) as session:
        if not leases.claim(session, ContactSyncRun, run_id, owner, lease_seconds):
            return False
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        workspace_id, direction = run.workspace_id, run.direction
        if run.started_at is None:
            run.started_at = utcnow()
    try:
        with connections.open_client(sessions, settings, encryptor, workspace_id) as hs:
            with session_scope(sessions) as session:
                run = session.get(ContactSyncRun, run_id)
                assert run is not None
                if run.total is None:
                    run.total = _total(session, hs, run)
            job = _Job(sessions, hs, run_id, owner, lease_seconds)
            if direction == "to_hubspot":
                _to_hubspot(job, workspace_id, settings.hubspot.backfill_concurrency)
            else:
                _to_spoke(job)
    except connections.NotConnected as exc:
        with session_scope(sessions) as session:
            run = session.get(ContactSyncRun, run_id)
            assert run is not None
            run.error = str(exc)
            run.finished_at = utcnow()
            leases.release(session, ContactSyncRun, run_id, owner, "failed")
        return True
    with session_scope(sessions) as session:
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        run.finished_at = utcnow()
        leases.release(session, ContactSyncRun, run_id, owner, "succeeded")
    return True


@dataclass(frozen=True)
class _Job:
    sessions: sessionmaker[Session]
    hs: BlockingClient
    run_id: str
    owner: str
    lease_seconds: float

    def checkpoint(self) -> dict[str, Any]:
        with session_scope(self.sessions) as session:
            run = session.get(ContactSyncRun, self.run_id)
            assert run is not None
            return dict(run.checkpoint or {})

    def finish(self) -> None:
        with session_scope(self.sessions) as session:
            leases.renew(session, ContactSyncRun, self.run_id, self.owner, self.lease_seconds)
            run = session.get(ContactSyncRun, self.run_id)
            assert run is not None
            run.checkpoint = {"finished": True}


def _total(session: Session, hs: BlockingClient, run: ContactSyncRun) -> int:
    if run.direction == "to_hubspot":
        return to_hubspot.total(session, run.workspace_id)
    page = hs.call(lambda c: c.contacts.search(SearchRequest(limit=1)))
    return page.total


def _to_hubspot(job: _Job, workspace_id: str, concurrency: int) -> None:
    """Several pages in flight: the portal's request budget, not latency, sets the pace."""
    checkpoint = job.checkpoint()
    if checkpoint.get("finished"):
        return
    frontier = IdFrontier.from_checkpoint(checkpoint)
    pages = to_hubspot.plan_pages(job.sessions, workspace_id, frontier)
    grown = GrowingTables(job.sessions.kw["bind"], ["contact_links"])
    with ThreadPoolExecutor(concurrency, thread_name_prefix="sync-run") as pool:
        running: set[Future[None]] = set()
        for page in pages:
            if len(running) >= concurrency:
                finished, running = wait(running, return_when=FIRST_EXCEPTION)
                for future in finished:
                    future.result()  # a failed page stops the run; the job retries it
            future = pool.submit(
                to_hubspot.process_page,
                job.sessions,
                job.hs,
                job.run_id,
                job.owner,
                job.lease_seconds,
                page,
            )
            future.add_done_callback(partial(_count_page, grown, len(page.user_ids)))
            running.add(future)
        for future in running:
            future.result()
    job.finish()


def _count_page(grown: GrowingTables, rows: int, page: Future[None]) -> None:
    if page.exception() is None:
        grown.wrote(rows)


def _to_spoke(job: _Job) -> None:
    if job.checkpoint().get("finished"):
        return
    with session_scope(job.sessions) as session:
        run = session.get(ContactSyncRun, job.run_id)
        assert run is not None
        eff = effective(session, ensure_row(session, run.workspace_id))
    props = sorted({m.hubspot for m in eff.mappings} | {"email"})
    lanes.run_both_lanes(
        lanes.LaneJob(
            job.sessions,
            job.hs,
            job.run_id,
            job.owner,
            job.lease_seconds,
            props,
            GrowingTables(job.sessions.kw["bind"], ["users", "contact_links"]),
        )
    )


def progress(run: ContactSyncRun) -> dict[str, Any]:
    """done/total, records per second and the estimated seconds left."""
    started = run.started_at
    end = run.finished_at or utcnow()
    elapsed = (end - started).total_seconds() if started else 0.0
    rate = run.done / elapsed if elapsed > 0 else 0.0
    left = max(0, (run.total or 0) - run.done)
    eta = left / rate if rate > 0 and run.status in ACTIVE else None
    return {
        "done": run.done,
        "total": run.total,
        "rate_per_second": round(rate, 2),
        "eta_seconds": round(eta, 1) if eta is not None else None,
    }


__all__ = ["RUN_JOB", "RunInProgress", "RunNotFound", "active_run", "process", "start"]
