"""Email and SMS subscriptions, derived from each user's `email` and `phone`.

A user's email subscription is the `subscriptions` row (channel `email`) whose address is
the user's current email; for SMS, the row whose address is the E.164 phone. Rows are made
when they are needed — when a send plans its recipients (`reconcile`) or when a status is
set — so there is nothing to keep in step when a user's email or phone changes: every send
reads the current value, and nothing is lost on the way:

- a status belongs to the address: an unsubscribed or bounced address stays so when its
  user changes email and back, and when another user takes the address over;
- a `subscribed` row for an address the user no longer has is deleted (nothing to keep);
- an address two users share is one subscription, held by whoever has the row while they
  still have the address; the other user is `no_subscription` (one message per address).

Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from spoke.core.clock import utcnow
from spoke.core.db import table_of
from spoke.core.errors import NotFound
from spoke.messaging.models import Subscription
from spoke.users.models import User

ADDRESS_CHANNELS: dict[str, InstrumentedAttribute[str | None]] = {
    "email": User.email,
    "sms": User.phone,
}


class SubscriptionNotFound(NotFound):
    code = "subscription_not_found"


def address_of(user: User, channel: str) -> str | None:
    value = getattr(user, "email" if channel == "email" else "phone")
    return value if isinstance(value, str) and value else None


def _current(
    session: Session, workspace_id: str, channel: str, user_ids: Iterable[int]
) -> dict[int, str]:
    column = ADDRESS_CHANNELS[channel]
    ids = list(user_ids)
    if not ids:
        return {}
    return {
        user_id: address
        for user_id, address in session.execute(
            sa.select(User.id, column).where(
                User.workspace_id == workspace_id,
                User.id.in_(ids),
                User.deleted_at.is_(None),
                column.is_not(None),
            )
        ).all()
        if address
    }


def _insert_ignoring_duplicates(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert; an address another transaction inserted meanwhile is left as it is."""
    if not rows:
        return
    table = table_of(Subscription)
    if session.get_bind().dialect.name == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing()
    else:
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    session.execute(stmt, list(rows))


def reconcile(session: Session, workspace_id: str, channel: str, user_ids: Sequence[int]) -> None:
    """Make the subscriptions of `user_ids` on `channel` match their current address."""
    current = _current(session, workspace_id, channel, user_ids)
    chunk = set(user_ids)
    rows = session.scalars(
        sa.select(Subscription)
        .where(
            Subscription.workspace_id == workspace_id,
            Subscription.channel == channel,
            sa.or_(
                Subscription.user_id.in_(list(chunk)),
                Subscription.address.in_(sorted(set(current.values()))),
            ),
        )
        .order_by(Subscription.id)
    ).all()
    by_address = {row.address: row for row in rows}
    # Rows owned outside the chunk were found by address: someone in the chunk has it now.
    outsiders = {row.user_id for row in rows if row.user_id not in chunk}
    owners = {**_current(session, workspace_id, channel, outsiders), **current}
    now = utcnow()
    fresh: list[dict[str, Any]] = []
    claimed: set[str] = set()
    for user_id, address in sorted(current.items()):
        row = by_address.get(address)
        if row is None:
            if address not in claimed:  # two users of the chunk share it: the first holds it
                claimed.add(address)
                fresh.append(_new_row(workspace_id, channel, user_id, address, now))
            continue
        if row.user_id == user_id or owners.get(row.user_id) == address:
            continue  # ours already, or still held by a user who has the address
        row.user_id, row.updated_at = user_id, now  # its old owner moved on: it follows the address
    for row in rows:
        stale = row.user_id in chunk and current.get(row.user_id) != row.address
        if stale and row.status == "subscribed":
            session.delete(row)
    session.flush()
    _insert_ignoring_duplicates(session, fresh)


def _new_row(
    workspace_id: str,
    channel: str,
    user_id: int,
    address: str,
    now: Any,
    status: str = "subscribed",
) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "user_id": user_id,
        "channel": channel,
        "address": address,
        "platform": None,
        "status": status,
        "status_reason": None,
        "created_at": now,
        "updated_at": now,
    }


def find(session: Session, workspace_id: str, channel: str, address: str) -> Subscription | None:
    return session.scalars(
        sa.select(Subscription).where(
            Subscription.workspace_id == workspace_id,
            Subscription.channel == channel,
            Subscription.address == address,
        )
    ).one_or_none()


def mark(
    session: Session,
    workspace_id: str,
    channel: str,
    address: str,
    *,
    user_id: int,
    status: str,
    reason: str | None,
) -> Subscription:
    """Set the status of an address (an unsubscribe link, a STOP, an operator's call),
    creating its row for `user_id` if it has none yet."""
    row = find(session, workspace_id, channel, address)
    if row is None:
        _insert_ignoring_duplicates(
            session, [_new_row(workspace_id, channel, user_id, address, utcnow(), status)]
        )
        row = find(session, workspace_id, channel, address)
        assert row is not None
    row.status = status
    row.status_reason = reason
    row.updated_at = utcnow()
    session.flush()
    return row


def set_status(session: Session, user: User, channel: str, status: str) -> dict[str, Any]:
    """The operator sets a user's email or SMS subscription (`subscribed` also lifts a
    bounce or an `invalid` mark: the next send tries the address again).

    Raises:
        SubscriptionNotFound: the user has no address on that channel.
    """
    address = address_of(user, channel)
    if address is None:
        raise SubscriptionNotFound(
            f"The user has no {_NOUN[channel]}, so no {channel} subscription."
        )
    reconcile(session, user.workspace_id, channel, [user.id])
    row = mark(
        session, user.workspace_id, channel, address, user_id=user.id, status=status, reason="api"
    )
    return render(row)


_NOUN = {"email": "email address", "sms": "phone number"}


def render(row: Subscription) -> dict[str, Any]:
    return {
        "channel": row.channel,
        "address": row.address,
        "status": row.status,
        "status_reason": row.status_reason,
        "platform": row.platform,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def list_for_user(session: Session, user: User) -> list[dict[str, Any]]:
    """Every subscription of the user: push devices as stored, and the email and SMS
    subscriptions of the current address (`subscribed` until something says otherwise).
    Reads only."""
    out = [
        render(row)
        for row in session.scalars(
            sa.select(Subscription)
            .where(Subscription.user_id == user.id, Subscription.channel == "push")
            .order_by(Subscription.created_at, Subscription.id)
        )
    ]
    for channel in ADDRESS_CHANNELS:
        address = address_of(user, channel)
        if address is None:
            continue
        row = find(session, user.workspace_id, channel, address)
        if row is not None:
            out.append(render(row))
            continue
        out.append(
            {
                "channel": channel,
                "address": address,
                "status": "subscribed",
                "status_reason": None,
                "platform": None,
                "created_at": None,
                "updated_at": None,
            }
        )
    return out
