"""Jobs of the messaging domain: the fan-out of a notification (resumable, see `fanout`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from spoke.core.db import session_scope
from spoke.core.jobs import JobContext, job
from spoke.core.leases import register_sweepable
from spoke.messaging import channel_send, fanout, webhooks
from spoke.messaging.models import Notification
from spoke.messaging.providers.fcm import RetryPolicy

register_sweepable(Notification, "messaging.fan_out", "notification_id")


def options_from(ctx: JobContext) -> fanout.FanoutOptions:
    settings = ctx.settings.messaging
    return fanout.FanoutOptions(
        lease_seconds=ctx.settings.jobs.lease_seconds,
        batch_size=settings.send_batch,
        concurrency=settings.push_concurrency,
        retry=RetryPolicy(
            attempts=settings.retry_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
        ),
    )


@job("messaging.fan_out", retries=5, retry_delay=10)
def fan_out(ctx: JobContext, notification_id: str) -> None:
    options = options_from(ctx)
    fanout.run(
        ctx.sessions,
        notification_id,
        provider_factory=channel_send.factory(
            fanout.fcm_factory(ctx.encryptor, options), ctx.encryptor, ctx.settings, options.retry
        ),
        options=options,
        owner=ctx.lease_owner(),
        on_finished=lambda session, done: _report_unavailable(ctx, session, done),
    )


def _report_unavailable(ctx: JobContext, session: Session, notification_id: str) -> None:
    # Only workspaces with a webhook hear about unreachable users: for the rest, a job per
    # finished send would be pure overhead (per-user sends finish by the hundred a second).
    if webhooks.configured(session, notification_id):
        ctx.runtime.enqueue_after_commit(session, UNAVAILABLE_JOB, notification_id=notification_id)


UNAVAILABLE_JOB = "messaging.notify_unavailable"


@job(UNAVAILABLE_JOB, retries=3, retry_delay=30)
def notify_unavailable(ctx: JobContext, notification_id: str) -> None:
    """POST the users a finished send could not reach to the workspace's webhook."""
    with session_scope(ctx.sessions) as session:
        request = webhooks.prepare(session, ctx.encryptor, notification_id)
    if request is not None:
        webhooks.post(*request)
