"""Which users the contact sync sends: the membership rule of `send_list_ids`.

With no selected lists every user is sent. With lists, a user is sent when at least one of
their memberships in a selected list was *collected* — made by the product through the API
or the client SDK, by an import, or by a sync — and not only put there by hand (origins in
`users.lists.BY_HAND_ORIGINS`: `manual`, `cli`). This is Snov.io's rule (seed 003): choose
the lists prospects are collected or imported into; prospects moved into them from other
lists are not synced. Everything that decides "is this user sent" calls `exclusions`
(real-time outbound and manual runs alike), so the rule lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.sync.settings import Effective
from spoke.users.lists import BY_HAND_ORIGINS
from spoke.users.models import ListMembership

NOT_IN_LIST = "not in a list selected for sync"
ONLY_BY_HAND = (
    "added to a selected list by hand; only collected, imported or synced members are sent"
)


def exclusions(
    session: Session, send_list_ids: Sequence[str] | None, user_ids: Sequence[int]
) -> dict[int, str]:
    """The users of `user_ids` that the list selection keeps home, with the reason."""
    if send_list_ids is None or not user_ids:
        return {}
    collected: set[int] = set()
    by_hand: set[int] = set()
    if send_list_ids:
        for user_id, origin in session.execute(
            sa.select(ListMembership.user_id, ListMembership.origin).where(
                ListMembership.list_id.in_(list(send_list_ids)),
                ListMembership.user_id.in_(list(user_ids)),
            )
        ):
            (by_hand if origin in BY_HAND_ORIGINS else collected).add(user_id)
    return {
        user_id: ONLY_BY_HAND if user_id in by_hand else NOT_IN_LIST
        for user_id in user_ids
        if user_id not in collected
    }


def sendable_user_ids(session: Session, eff: Effective, user_ids: Sequence[int]) -> set[int]:
    """The users of `user_ids` the settings `eff` send to HubSpot (by list membership)."""
    excluded = exclusions(session, eff.row.send_list_ids, user_ids)
    return {user_id for user_id in user_ids if user_id not in excluded}


__all__ = ["NOT_IN_LIST", "ONLY_BY_HAND", "exclusions", "sendable_user_ids"]
