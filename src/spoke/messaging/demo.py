"""Push for `spoke demo`: the demo workspace sends through the local FCM emulator, and
each demo user has one emulated device."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.crypto import Encryptor
from spoke.messaging import devices, providers_config
from spoke.users.models import User


def connect(
    session: Session,
    encryptor: Encryptor,
    workspace_id: str,
    service_account: dict[str, Any],
    base_url: str,
) -> int:
    """Point the workspace's push at the emulator; give every user without a device one.
    Returns how many devices were registered."""
    providers_config.set_fcm(session, encryptor, workspace_id, service_account, base_url)
    registered = 0
    for user in session.scalars(
        sa.select(User).where(User.workspace_id == workspace_id, User.deleted_at.is_(None))
    ):
        if not devices.list_for_user(session, user):
            devices.register(session, user, f"demo-device-{user.external_id}", "android")
            registered += 1
    return registered
