"""An export run: one pass that sends what is due to HubSpot, under a lease.

In order:

1. **Unknown outcomes first.** Batches recorded but never settled (the process died, or
   HubSpot kept failing) are read back by uuid; what landed is marked sent, the rest is left
   to be sent again below. Nothing is sent before this is done.
2. **Waiting events** (no contact yet, the monthly cap) are tried again.
3. **The scan**: events after the cursor, in id order, in chunks; `each` events become
   completions, `daily_rollup` events are counted into their day's rollup. Each chunk's
   outcome commits with the cursor. The next chunk is prepared while the previous one's
   batches are in flight.
4. **Rollups** of days that are over are sent.

The scan stops short of events younger than `settle_seconds`: on PostgreSQL an insert that
commits late can carry a smaller id than one already visible, and the cursor must not pass
it. A failure ends the run with its error recorded and the lease given back, so the job's
retry (or the sweeper) resumes it; it picks up exactly where the last commit left it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import wait
from datetime import timedelta
from functools import partial

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.connections import service as connections
from spoke.connections.models import HubSpotConnection
from spoke.core import bulk, leases
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import session_scope, table_of
from spoke.events import cap, naming
from spoke.events.definitions import Definitions
from spoke.events.export_context import Config, Context
from spoke.events.export_models import (
    EventExportBatch,
    EventExportMark,
    EventExportRollup,
    EventExportRun,
    EventExportSettings,
)
from spoke.events.export_plan import Plan, finish, prepare
from spoke.events.export_sources import rollup_plans, scan_plans, waiting_plans
from spoke.events.sender import Policy, landed

log = structlog.get_logger("spoke.events.export")


def process(
    sessions: sessionmaker[Session],
    settings: Settings,
    encryptor: Encryptor,
    run_id: str,
    *,
    owner: str | None = None,
    lease_seconds: float = 60.0,
) -> bool:
    """Claim the run and take it to the end; False if another worker holds it.

    Raises:
        HubSpotError, UnknownOutcome: the run stopped; it is queued again with its error.
    """
    owner = owner or uuid.uuid4().hex
    with session_scope(sessions) as session:
        if not leases.claim(session, EventExportRun, run_id, owner, lease_seconds):
            return False
        run = session.get(EventExportRun, run_id)
        assert run is not None
        workspace_id = run.workspace_id
        run.started_at = run.started_at or utcnow()
        row = session.get(EventExportSettings, workspace_id)
        conn = session.get(HubSpotConnection, workspace_id)
        config = Config.of(row) if row is not None and row.enabled else None
        declared = dict(row.property_types) if row is not None else {}
        portal_id = conn.portal_id if conn is not None else 0
    if config is None:
        _end(sessions, run_id, owner, "cancelled", "the export is not enabled")
        return True
    tuning = settings.events_export
    try:
        with connections.open_client(sessions, settings, encryptor, workspace_id) as hs:
            ctx = Context(
                sessions=sessions,
                hs=hs,
                definitions=Definitions(sessions, hs, workspace_id, portal_id, declared),
                config=config,
                workspace_id=workspace_id,
                portal_id=portal_id,
                run_id=run_id,
                owner=owner,
                lease_seconds=lease_seconds,
                concurrency=tuning.concurrency,
                chunk=tuning.chunk,
                settle=timedelta(seconds=tuning.settle_seconds),
                recheck=timedelta(minutes=tuning.unmatched_recheck_minutes),
                policy=Policy(backoff_base=tuning.retry_base_seconds),
            )
            resolve_unknown(ctx)
            _pipeline(ctx, waiting_plans(ctx))
            _pipeline(ctx, scan_plans(ctx))
            _pipeline(ctx, rollup_plans(ctx))
    except leases.LeaseLost:
        return False
    except connections.NotConnected as exc:
        _end(sessions, run_id, owner, "failed", str(exc))
        return True
    except Exception as exc:
        log.warning("events.export_failed", run_id=run_id, exc_info=True)
        _end(sessions, run_id, owner, "queued", f"{type(exc).__name__}: {exc}"[:1000])
        raise
    _end(sessions, run_id, owner, "succeeded", None)
    return True


def _end(
    sessions: sessionmaker[Session], run_id: str, owner: str, status: str, error: str | None
) -> None:
    with session_scope(sessions) as session:
        leases.release(session, EventExportRun, run_id, owner, status)
        run = session.get(EventExportRun, run_id)
        assert run is not None
        run.error = error
        if status != "queued":
            run.finished_at = utcnow()


def _pipeline(ctx: Context, plans: Iterator[Plan]) -> None:
    """Prepare each plan while the previous one's batches are in flight; record in order."""
    in_flight: list[Plan] = []
    try:
        for plan in plans:
            in_flight.append(prepare(ctx, plan))
            if len(in_flight) > 1:
                finish(ctx, in_flight.pop(0))
        while in_flight:
            finish(ctx, in_flight[0])
            in_flight.pop(0)
    except BaseException:
        # Leave no request running behind our back; their rows are resolved next time.
        wait([p.future for p in in_flight if p.future is not None])
        raise


def resolve_unknown(ctx: Context) -> None:
    """Settle every batch whose outcome was never recorded, by reading its uuids back."""
    with session_scope(ctx.sessions) as session:
        batches = list(
            session.scalars(
                sa.select(EventExportBatch)
                .where(EventExportBatch.workspace_id == ctx.workspace_id)
                .order_by(EventExportBatch.id)
            )
        )
    for batch in batches:
        uuids = {naming.completion_uuid(ctx.workspace_id, batch.kind, i): i for i in batch.item_ids}
        found = ctx.hs.call(partial(landed, uuids=list(uuids)))
        sent = sorted(uuids[u] for u in found)
        with session_scope(ctx.sessions) as session:
            leases.renew(session, EventExportRun, ctx.run_id, ctx.owner, ctx.lease_seconds)
            session.execute(sa.delete(EventExportBatch).where(EventExportBatch.id == batch.id))
            cap.give_back(session, ctx.portal_id, batch.month, len(batch.item_ids) - len(sent))
            run = session.get(EventExportRun, ctx.run_id)
            row = session.get(EventExportSettings, ctx.workspace_id)
            assert run is not None
            assert row is not None
            run.sent += len(sent)
            run.resolved += 1
            row.sent_total += len(sent)
            _settle_resolved(session, ctx.workspace_id, batch, sent)
        log.info("events.export_resolved", batch=batch.id, landed=len(sent), of=len(uuids))


def _settle_resolved(
    session: Session, workspace_id: str, batch: EventExportBatch, sent: list[int]
) -> None:
    if batch.kind == "rollup":
        unsent = sorted(set(batch.item_ids) - set(sent))
        for ids, state in ((sent, "sent"), (unsent, "open")):
            if ids:
                session.execute(
                    sa.update(EventExportRollup)
                    .where(EventExportRollup.id.in_(ids))
                    .values(state=state)
                )
        return
    marks = table_of(EventExportMark)
    keys = [{"workspace_id": workspace_id, "event_id": i} for i in sent]
    if batch.from_waiting:
        bulk.delete(session, marks, ["workspace_id", "event_id"], keys)
        return
    # Scan events ahead of the cursor: the mark keeps the scan from sending them again.
    now = utcnow()
    bulk.insert(
        session,
        marks,
        [
            {
                **k,
                "state": "sent",
                "reason": None,
                "detail": None,
                "identity_key": None,
                "updated_at": now,
            }
            for k in keys
        ],
    )
