"""Local-time delivery: each recipient gets the message at a time of day in their own zone
(OneSignal's `delayed_option: "timezone"` with `delivery_time_of_day`).

The zone is the user's `timezone` field, else the workspace's `timezone`, else UTC. When the
fan-out plans a recipient it stamps the delivery with `not_before`, the next time that
local time comes round after the send was accepted (or after `send_at`); a target that
passed less than `GRACE` earlier counts as now, so a send made at 09:00:30 for 09:00 still
reaches today's 09:00 zones. The fan-out claims only deliveries that are due. When every
due one is sent and others wait, the notification is parked: its lease is dropped and set
to expire at the earliest `not_before`, so the sweeper (every minute) hands it to a worker
when the next recipients fall due. It completes once every delivery is final.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping, Sequence
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.db import rowcount
from spoke.core.leases import LeaseLost
from spoke.messaging.models import Delivery, Notification
from spoke.users.models import User
from spoke.workspaces.models import Workspace

GRACE = timedelta(minutes=1)
UTC_ZONE = ZoneInfo("UTC")
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?\s*$")


def parse_time_of_day(text: str) -> time:
    """`9:00AM`, `9:00 pm`, `21:45`, `9:45:30` → a time.

    Raises:
        ValueError: not a time of day.
    """
    match = _TIME.match(text)
    if match is None:
        raise ValueError('expected a time of day such as "9:00AM", "21:45" or "9:45:30"')
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if match[4]:
        if not 1 <= hour <= 12:
            raise ValueError("with AM/PM the hour is 1-12")
        hour = hour % 12 + (12 if match[4].lower() == "pm" else 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError("not a time of day")
    return time(hour, minute, second)


class LocalDelivery(BaseModel):
    """A send's option: deliver at a time of day in each recipient's zone."""

    model_config = ConfigDict(extra="forbid")

    delayed_option: Literal["timezone"] | None = Field(
        None,
        description='`"timezone"`: each recipient at `delivery_time_of_day` in their own '
        "time zone (the user's `timezone`, else the workspace's, else UTC), the next time it "
        "comes round after the send (or `send_at`).",
    )
    delivery_time_of_day: str | None = Field(
        None, max_length=16, description='With `delayed_option`: "9:00AM", "21:45", "9:45:30".'
    )

    @field_validator("delivery_time_of_day")
    @classmethod
    def _normalised(cls, value: str | None) -> str | None:
        return None if value is None else parse_time_of_day(value).isoformat()

    @model_validator(mode="after")
    def _together(self) -> LocalDelivery:
        if (self.delayed_option is None) != (self.delivery_time_of_day is None):
            raise ValueError("delayed_option and delivery_time_of_day go together")
        return self


def next_local(at: time, zone: ZoneInfo, after: datetime) -> datetime:
    """The first instant at or after `after - GRACE` when the wall clock in `zone` shows `at`
    (yesterday's counts too: 23:59:59 is just past at 00:00:30)."""
    earliest = after - GRACE
    day = after.astimezone(zone).date() - timedelta(days=1)
    while True:
        candidate = datetime.combine(day, at, tzinfo=zone)
        if candidate >= earliest:
            return candidate.astimezone(UTC_ZONE)
        day += timedelta(days=1)


def zone_of(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def zones_for(session: Session, user_ids: Sequence[int]) -> dict[int, ZoneInfo]:
    """Each user's zone: their own, else their workspace's, else UTC."""
    rows = session.execute(
        sa.select(User.id, User.timezone, Workspace.timezone)
        .join(Workspace, Workspace.id == User.workspace_id)
        .where(User.id.in_(list(user_ids)))
    ).all()
    return {uid: zone_of(own) or zone_of(default) or UTC_ZONE for uid, own, default in rows}


def stamp(
    session: Session, notification: Notification, rows: Iterable[MutableMapping[str, Any]]
) -> None:
    """Set `not_before` on delivery rows about to be inserted, for a local-time send."""
    if notification.delivery_time_of_day is None:
        return
    rows = list(rows)
    at = time.fromisoformat(notification.delivery_time_of_day)
    after = notification.send_at or notification.created_at
    zones = zones_for(session, [row["user_id"] for row in rows])
    for row in rows:
        row["not_before"] = next_local(at, zones.get(row["user_id"], UTC_ZONE), after)


def due() -> sa.ColumnElement[bool]:
    """Deliveries whose time has come (the fan-out claims only these)."""
    return sa.or_(Delivery.not_before.is_(None), Delivery.not_before <= utcnow())


def park(session: Session, notification_id: str, owner: str) -> datetime | None:
    """If queued deliveries wait for a later time, give up the lease until the earliest of
    them is due and return that time; None if nothing waits.

    Raises:
        LeaseLost: the lease is no longer ours.
    """
    earliest = session.scalar(
        sa.select(sa.func.min(Delivery.not_before)).where(
            Delivery.notification_id == notification_id, Delivery.status == "queued"
        )
    )
    if earliest is None:
        return None
    # Still `running` with no owner: `leases.abandoned` offers it again once this passes.
    parked = session.execute(
        sa.update(Notification)
        .where(Notification.id == notification_id, Notification.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=earliest)
    )
    if rowcount(parked) != 1:
        raise LeaseLost(f"lease on notifications/{notification_id} is no longer held by {owner}")
    return earliest
