"""Periodic housekeeping: the lease sweeper and expiry of stored idempotent responses."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
import structlog

from spoke.core import leases
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.core.idempotency import IdempotencyRecord
from spoke.core.jobs import JobContext, periodic_job

log = structlog.get_logger("spoke.sweeper")


@periodic_job("core.sweep", minute="*")
def sweep(ctx: JobContext) -> None:
    with session_scope(ctx.sessions) as session:
        count = leases.sweep(session, ctx.runtime.enqueue, ctx.settings.jobs.sweep_grace_seconds)
    if count:
        log.info("sweeper.requeued", count=count)


@periodic_job("core.expire_idempotency_keys", minute="17")
def expire_idempotency_keys(ctx: JobContext) -> None:
    cutoff = utcnow() - timedelta(hours=ctx.settings.api.idempotency_ttl_hours)
    with session_scope(ctx.sessions) as session:
        session.execute(sa.delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
