"""Push subscriptions: the app registers a device token at login and removes it at logout.

A token belongs to one user at a time: registering it again for another user moves it,
and re-registering a token the provider had refused makes it `subscribed` again (the app
only has a token the provider just handed out). Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.errors import NotFound
from spoke.messaging.models import Subscription
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import User
from spoke.users.schemas import UserFields

PUSH = "push"


class DeviceNotFound(NotFound):
    code = "device_not_found"


def ensure_user(session: Session, origin: Origin, external_id: str) -> User:
    """The user, created on first sight (as OneSignal and nachocode do at login).

    Raises:
        UserDeleted: the user exists but is deleted.
    """
    outcome = users.write_users(session, origin, [users.WriteItem(external_id, UserFields())])[0]
    if outcome.error is not None:
        raise users.UserDeleted(outcome.error.detail)
    return users.get_user(session, origin.workspace_id, external_id)


def _find(session: Session, workspace_id: str, token: str) -> Subscription | None:
    return session.scalars(
        sa.select(Subscription).where(
            Subscription.workspace_id == workspace_id,
            Subscription.channel == PUSH,
            Subscription.address == token,
        )
    ).one_or_none()


def register(
    session: Session, user: User, token: str, platform: str | None
) -> tuple[Subscription, bool]:
    """Attach `token` to `user` (moving it from anyone else); returns it and whether it is new."""
    for _ in range(2):
        found = _find(session, user.workspace_id, token)
        if found is not None:
            found.user_id = user.id
            found.status = "subscribed"
            found.status_reason = None
            found.platform = platform or found.platform
            found.updated_at = utcnow()
            session.flush()
            return found, False
        now = utcnow()
        created = Subscription(
            workspace_id=user.workspace_id,
            user_id=user.id,
            channel=PUSH,
            address=token,
            platform=platform,
            status="subscribed",
            created_at=now,
            updated_at=now,
        )
        savepoint = session.begin_nested()
        try:
            session.add(created)
            session.flush()
            savepoint.commit()
            return created, True
        except IntegrityError:
            savepoint.rollback()  # registered concurrently: update that row instead
    raise DeviceNotFound("The token could not be registered; try again.")


def unregister(session: Session, workspace_id: str, token: str, *, user_id: int | None) -> None:
    """Remove a token (logout). With `user_id`, only if it belongs to that user."""
    found = _find(session, workspace_id, token)
    if found is None or (user_id is not None and found.user_id != user_id):
        raise DeviceNotFound("No such device token in this workspace.")
    session.delete(found)
    session.flush()


def list_for_user(session: Session, user: User) -> Sequence[Subscription]:
    return session.scalars(
        sa.select(Subscription)
        .where(Subscription.user_id == user.id, Subscription.channel == PUSH)
        .order_by(Subscription.created_at, Subscription.id)
    ).all()


def render(subscription: Subscription, external_id: str) -> dict[str, Any]:
    return {
        "token": subscription.address,
        "platform": subscription.platform,
        "status": subscription.status,
        "status_reason": subscription.status_reason,
        "external_id": external_id,
        "created_at": subscription.created_at,
        "updated_at": subscription.updated_at,
    }
