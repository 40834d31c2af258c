"""Stored webhook batches: which are due, and parking the ones that keep failing.

A batch that fails to apply (its events cannot be read, HubSpot refuses the read of the ids
it names as a bad request, the database refuses what it would write) is tried again later
with the records' backoff (a minute, doubling); after `PARK_AFTER` failed attempts it is
*parked*: set aside with its error, visible on `GET /v1/sync/contacts/webhooks?state=parked`,
and never again in the way of the batches after it. `POST …/webhooks/{id}/retry` puts it
back. Failures that are not the batch's fault — HubSpot unreachable, throttled or down, the
connection gone — do not count: the job fails and the queue retries it as before.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from spoke.connections.service import NotConnected
from spoke.core.clock import utcnow
from spoke.core.errors import Conflict, NotFound
from spoke.hubspot import BadRequest, HubSpotError
from spoke.sync.links import retry_delay
from spoke.sync.models import HubSpotWebhookBatch

log = structlog.get_logger("spoke.sync")

PARK_AFTER = 5
ERROR_CHARS = 1000


class WebhookBatchNotFound(NotFound):
    code = "sync_webhook_batch_not_found"
    title = "No such webhook batch"


class WebhookBatchApplied(Conflict):
    code = "sync_webhook_batch_applied"
    title = "The webhook batch was applied already"


def pending_clause(now: datetime) -> sa.ColumnElement[bool]:
    """Batches still to apply now: not applied, not parked, and due."""
    return sa.and_(
        HubSpotWebhookBatch.processed_at.is_(None),
        HubSpotWebhookBatch.parked_at.is_(None),
        sa.or_(
            HubSpotWebhookBatch.next_attempt_at.is_(None),
            HubSpotWebhookBatch.next_attempt_at <= now,
        ),
    )


def due_batch_ids(session: Session, workspace_id: str, limit: int) -> list[int]:
    return list(
        session.scalars(
            sa.select(HubSpotWebhookBatch.id)
            .where(HubSpotWebhookBatch.workspace_id == workspace_id, pending_clause(utcnow()))
            .order_by(HubSpotWebhookBatch.id)
            .limit(limit)
        )
    )


def is_batch_fault(exc: BaseException) -> bool:
    """Whether a failure to apply belongs to the batch (counts towards parking)."""
    if isinstance(exc, BadRequest):
        return True
    return not isinstance(exc, HubSpotError | NotConnected | OperationalError)


def record_failure(session: Session, batch_id: int, exc: BaseException) -> None:
    batch = session.get(HubSpotWebhookBatch, batch_id)
    if batch is None or batch.processed_at is not None:
        return
    now = utcnow()
    batch.attempts += 1
    batch.error = (f"{type(exc).__name__}: {exc}")[:ERROR_CHARS]
    if batch.attempts >= PARK_AFTER:
        batch.parked_at, batch.next_attempt_at = now, None
        log.warning("sync.webhook_batch_parked", batch_id=batch_id, error=batch.error)
    else:
        batch.next_attempt_at = now + retry_delay(batch.attempts)


def list_batches(
    session: Session, workspace_id: str, state: str, after: int | None, limit: int
) -> list[HubSpotWebhookBatch]:
    """Batches by state: `parked`, `pending` (not applied yet, failing or not) or `applied`."""
    stmt = sa.select(HubSpotWebhookBatch).where(HubSpotWebhookBatch.workspace_id == workspace_id)
    if state == "parked":
        stmt = stmt.where(HubSpotWebhookBatch.parked_at.is_not(None))
    elif state == "pending":
        stmt = stmt.where(
            HubSpotWebhookBatch.processed_at.is_(None), HubSpotWebhookBatch.parked_at.is_(None)
        )
    else:
        stmt = stmt.where(HubSpotWebhookBatch.processed_at.is_not(None))
    if after is not None:
        stmt = stmt.where(HubSpotWebhookBatch.id > after)
    return list(session.scalars(stmt.order_by(HubSpotWebhookBatch.id).limit(limit)))


def count_parked(session: Session, workspace_id: str) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(HubSpotWebhookBatch)
            .where(
                HubSpotWebhookBatch.workspace_id == workspace_id,
                HubSpotWebhookBatch.parked_at.is_not(None),
            )
        )
        or 0
    )


def retry(session: Session, workspace_id: str, batch_id: int) -> HubSpotWebhookBatch:
    """Unpark a batch (or make a failing one due now); it applies at the next run."""
    batch = session.get(HubSpotWebhookBatch, batch_id)
    if batch is None or batch.workspace_id != workspace_id:
        raise WebhookBatchNotFound(f"No webhook batch {batch_id}.")
    if batch.processed_at is not None:
        raise WebhookBatchApplied(f"Webhook batch {batch_id} was applied already.")
    batch.parked_at = None
    batch.attempts = 0
    batch.next_attempt_at = utcnow()
    session.flush()
    return batch


__all__ = [
    "PARK_AFTER",
    "WebhookBatchApplied",
    "WebhookBatchNotFound",
    "count_parked",
    "due_batch_ids",
    "is_batch_fault",
    "list_batches",
    "pending_clause",
    "record_failure",
    "retry",
]
