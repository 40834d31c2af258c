"""When a user was last seen: any client-key call made for them (device registration,
profile update from the app, events, push reports) moves `last_seen_at`.

Activity is not a profile change: no change row, no new version, no sync. To keep busy
apps from rewriting the same row on every call, a user seen in the last `RESOLUTION` is
left alone, which is also all the precision "seen in the last N days" needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.users.models import User

RESOLUTION = timedelta(minutes=1)


def touch(session: Session, workspace_id: str, external_ids: Iterable[str | None]) -> None:
    wanted = sorted({e for e in external_ids if e})
    if not wanted:
        return
    now = utcnow()
    session.execute(
        sa.update(User)
        .where(
            User.workspace_id == workspace_id,
            User.external_id.in_(wanted),
            sa.or_(User.last_seen_at.is_(None), User.last_seen_at < now - RESOLUTION),
        )
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
