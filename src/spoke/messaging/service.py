"""Send requests and their history: accepting a push send, reading its counts and
per-recipient deliveries, and the app's delivered/clicked reports. Nothing here commits.

Accepting is one INSERT: the recipients are stored on the notification as given and the
fan-out job resolves them, so the caller gets its `request_group_id` at once whatever the
audience size.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.db import table_of
from spoke.core.errors import Conflict, NotFound
from spoke.core.ids import new_id
from spoke.core.jobs import JobRuntime
from spoke.core.pagination import InvalidCursor, decode_cursor, encode_cursor
from spoke.messaging import channel_providers, personalise, providers_config, segments
from spoke.messaging.models import Delivery, Notification
from spoke.users.models import User, UserTag

FAN_OUT_JOB = "messaging.fan_out"
NO_SUBSCRIPTION = "no_subscription"
TOKEN_INVALID = "token_invalid"  # noqa: S105 (a reason code)


class NotificationNotFound(NotFound):
    code = "notification_not_found"


class RecipientNotFound(NotFound):
    code = "recipient_not_found"


class PushNotConfigured(Conflict):
    code = "push_not_configured"
    title = "No push provider"


# Built once, like every statement on the accept path (see `workspaces.service`).
_INSERT_NOTIFICATION = sa.insert(table_of(Notification))


def create_push(
    session: Session,
    jobs: JobRuntime,
    workspace_id: str,
    *,
    source: str,
    content: dict[str, Any],
    recipients: Sequence[Any],
    request_group_id: str | None,
    send_at: datetime | None = None,
    audience: dict[str, Any] | None = None,
    channel: str = "push",
    delivery_time_of_day: str | None = None,
) -> Notification:
    """Store a send (push, or `channel` email/sms) and queue its fan-out (after commit).

    Args:
        source: `users` (same `content` to the external ids in `recipients`), `messages`
            (`recipients` are `{user_id, ...content}` dicts, one per user), or `segment`
            (same content to the users `audience` matches when the fan-out runs).

    Raises:
        PushNotConfigured: the workspace has no push provider yet.
        EmailNotConfigured, SmsNotConfigured: likewise for those channels.
    """
    personalise.check(content)
    if source == "messages":
        for index, item in enumerate(recipients):
            personalise.check(item, prefix=f"body.messages.{index}")
    if channel != "push":
        channel_providers.require(session, workspace_id, channel)
    elif not providers_config.has_push(session, workspace_id):
        raise PushNotConfigured(providers_config.NO_PUSH_PROVIDER)
    notification_id = new_id("ntf")
    values: dict[str, Any] = {
        "id": notification_id,
        "workspace_id": workspace_id,
        "request_group_id": request_group_id or notification_id,
        "channel": channel,
        "source": source,
        "content": content,
        "recipients": list(recipients),
        "total": len(recipients)
        if audience is None
        else count_audience(session, workspace_id, audience),
        "audience": audience,
        "delivery_time_of_day": delivery_time_of_day,
        "plan_cursor": 0,
        "planned": 0,
        "not_found": [],
        "send_at": send_at,
        "status": "queued",
        "attempts": 0,
        "created_at": utcnow(),
    }
    # One Core INSERT: on the accept path of per-user sends (hundreds a second), the ORM's
    # unit of work around a single new row cost more than the statement itself.
    session.execute(_INSERT_NOTIFICATION, values)
    jobs.enqueue_after_commit(session, FAN_OUT_JOB, notification_id=notification_id)
    return Notification(**values)  # what was stored, not attached to the session


def audience_filter(workspace_id: str, audience: dict[str, Any]) -> sa.ColumnElement[bool]:
    """Users a segment audience matches: live users of the workspace having every tag, or
    matching the `filters` (`segments.py`)."""
    clauses = [User.workspace_id == workspace_id, User.deleted_at.is_(None)]
    for key, value in (audience.get("tags") or {}).items():
        clauses.append(
            sa.exists().where(
                UserTag.user_id == User.id, UserTag.key == key, UserTag.value == value
            )
        )
    if audience.get("filters"):
        clauses.append(segments.clause(audience["filters"]))
    return sa.and_(*clauses)


def count_audience(session: Session, workspace_id: str, audience: dict[str, Any]) -> int:
    return int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(User)
            .where(audience_filter(workspace_id, audience))
        )
        or 0
    )


def get(session: Session, workspace_id: str, notification_id: str) -> Notification:
    found = session.get(Notification, notification_id)
    if found is None or found.workspace_id != workspace_id:
        raise NotificationNotFound(f"No notification with id {notification_id!r}.")
    return found


def status_of(notification: Notification) -> str:
    """The stored status, with `scheduled` for a queued send that is not due yet."""
    due = notification.send_at is None or notification.send_at <= utcnow()
    return "scheduled" if notification.status == "queued" and not due else notification.status


class NotificationStarted(Conflict):
    code = "notification_started"
    title = "Already sending"


def cancel(session: Session, notification: Notification) -> Notification:
    """Cancel a send that has not started (a scheduled one, typically)."""
    if notification.status != "queued" or notification.lease_owner is not None:
        raise NotificationStarted(
            f"The notification is {notification.status}; only a queued send can be canceled."
        )
    notification.status = "canceled"
    notification.finished_at = utcnow()
    session.flush()
    return notification


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def counts(session: Session, notification: Notification) -> dict[str, Any]:
    d = Delivery
    sent_states = ("sent", "delivered", "clicked")
    row = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(d.status.in_(("queued", "sending"))),
            sa.func.count().filter(d.status.in_(sent_states)),
            sa.func.count().filter(d.status == "failed"),
            sa.func.count().filter(d.delivered_at.is_not(None)),
            sa.func.count().filter(d.clicked_at.is_not(None)),
            sa.func.count().filter(d.reason == NO_SUBSCRIPTION),
        ).where(d.notification_id == notification.id)
    ).one()
    _, queued, sent, failed, delivered, clicked, no_subscription = (int(v) for v in row)
    unplanned = max(notification.total - notification.planned, 0)
    return {
        "recipients": notification.total,
        "queued": queued + unplanned,
        "sent": sent,
        "failed": failed + len(notification.not_found),
        "delivered": delivered,
        "clicked": clicked,
        "no_subscription": no_subscription,
        "send_rate": _rate(sent, notification.total),
        "delivery_rate": _rate(delivered, sent),
        "click_rate": _rate(clicked, sent),
    }


def _ids_with_reason(session: Session, notification_id: str, prefix: str) -> list[str]:
    return list(
        session.scalars(
            sa.select(Delivery.external_id)
            .where(Delivery.notification_id == notification_id, Delivery.status == "failed")
            .where(Delivery.reason.like(f"{prefix}%"))
            .order_by(Delivery.id)
            .limit(10_000)
        )
    )


def render(session: Session, notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "request_group_id": notification.request_group_id,
        "channel": notification.channel,
        "source": notification.source,
        "status": status_of(notification),
        "content": notification.content,
        "audience": notification.audience,
        "counts": counts(session, notification),
        "unavailable": {
            "not_found": notification.not_found,
            "no_subscription": _ids_with_reason(session, notification.id, NO_SUBSCRIPTION),
            "token_invalid": _ids_with_reason(session, notification.id, TOKEN_INVALID),
        },
        "error": notification.error,
        "send_at": notification.send_at,
        "delivery_time_of_day": notification.delivery_time_of_day,
        "created_at": notification.created_at,
        "finished_at": notification.finished_at,
    }


def summary(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "request_group_id": notification.request_group_id,
        "channel": notification.channel,
        "source": notification.source,
        "status": status_of(notification),
        "recipients": notification.total,
        "send_at": notification.send_at,
        "created_at": notification.created_at,
        "finished_at": notification.finished_at,
    }


def list_notifications(
    session: Session,
    workspace_id: str,
    *,
    request_group_id: str | None,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[Notification], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    n = Notification
    stmt = sa.select(n).where(n.workspace_id == workspace_id)
    if request_group_id is not None:
        stmt = stmt.where(n.request_group_id == request_group_id)
    if status is not None:
        stmt = stmt.where(n.status == status)
    if cursor is not None:
        created, last_id = decode_cursor(cursor, 2)
        try:
            when = datetime.fromisoformat(str(created))
        except ValueError:
            raise InvalidCursor("The cursor is not one this API issued.") from None
        stmt = stmt.where(
            sa.or_(n.created_at < when, sa.and_(n.created_at == when, n.id < str(last_id)))
        )
    rows = session.scalars(stmt.order_by(n.created_at.desc(), n.id.desc()).limit(limit + 1)).all()
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor([page[-1].created_at.isoformat(), page[-1].id]) if more else None
    return page, next_cursor


def render_delivery(delivery: Delivery) -> dict[str, Any]:
    status = delivery.status
    if delivery.clicked_at is not None:
        status = "clicked"
    elif delivery.delivered_at is not None:
        status = "delivered"
    return {
        "external_id": delivery.external_id,
        "channel": delivery.channel,
        "status": status,
        "reason": delivery.reason,
        "devices_sent": delivery.devices_sent,
        "not_before": delivery.not_before,
        "sent_at": delivery.sent_at,
        "delivered_at": delivery.delivered_at,
        "clicked_at": delivery.clicked_at,
    }


def list_deliveries(
    session: Session, notification: Notification, *, after: int, limit: int
) -> tuple[Sequence[Delivery], int | None]:
    rows = session.scalars(
        sa.select(Delivery)
        .where(Delivery.notification_id == notification.id, Delivery.id > after)
        .order_by(Delivery.id)
        .limit(limit + 1)
    ).all()
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def user_deliveries(
    session: Session, user: User, *, limit: int
) -> Sequence[tuple[Delivery, Notification]]:
    """A user's most recent messages, newest first."""
    return [
        (d, n)
        for d, n in session.execute(
            sa.select(Delivery, Notification)
            .join(Notification, Notification.id == Delivery.notification_id)
            .where(Delivery.user_id == user.id)
            .order_by(Delivery.id.desc())
            .limit(limit)
        )
    ]


def record_event(session: Session, notification: Notification, user: User, event: str) -> Delivery:
    """The app saw the message (`delivered`) or the user opened it (`clicked`, which implies
    delivered). Repeats keep the first time."""
    delivery = session.scalars(
        sa.select(Delivery).where(
            Delivery.notification_id == notification.id,
            Delivery.user_id == user.id,
            Delivery.channel == notification.channel,
        )
    ).one_or_none()
    if delivery is None:
        raise RecipientNotFound("This user was not a recipient of this notification.")
    now = utcnow()
    if delivery.delivered_at is None:
        delivery.delivered_at = now
    if event == "clicked" and delivery.clicked_at is None:
        delivery.clicked_at = now
    session.flush()
    return delivery
