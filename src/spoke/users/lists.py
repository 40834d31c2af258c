"""Lists of users (`/v1/lists`): named, hand-curated or filled by imports and syncs.

A list knows what depends on it (`ListUsage` rows, written by e.g. the sync settings), and
deleting a list in use is refused with the names of its users. Membership changes are
user changes: each one lands in the change feed as `lists.<list id>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.db import table_of
from spoke.core.errors import Conflict, NotFound
from spoke.core.ids import new_id
from spoke.users import changes as feed
from spoke.users.changes import Origin, PendingChange
from spoke.users.models import ListMembership, ListUsage, User, UserList

# Membership origins that mean a person put the user in the list by hand (moved them from
# another list in an admin UI, or with `spoke users list-add`), as opposed to the product's
# own collection (API, client SDK), imports and syncs. The contact sync does not send users
# who are in its selected lists only by hand, as in Snov.io (seed 003).
BY_HAND_ORIGINS = frozenset({"manual", "cli"})


class ListNotFound(NotFound):
    code = "list_not_found"


class ListNameTaken(Conflict):
    code = "list_name_taken"


class ListInUse(Conflict):
    code = "list_in_use"
    title = "List in use"


def get_list(session: Session, workspace_id: str, list_id: str) -> UserList:
    found = session.get(UserList, list_id)
    if found is None or found.workspace_id != workspace_id:
        raise ListNotFound(f"No list with id {list_id!r}.")
    return found


def _name_taken(session: Session, workspace_id: str, name: str, except_id: str | None) -> bool:
    stmt = sa.select(UserList.id).where(
        UserList.workspace_id == workspace_id, UserList.name == name
    )
    if except_id is not None:
        stmt = stmt.where(UserList.id != except_id)
    return session.scalar(stmt) is not None


def create_list(session: Session, workspace_id: str, *, name: str, description: str) -> UserList:
    if _name_taken(session, workspace_id, name, None):
        raise ListNameTaken(f"A list named {name!r} already exists.")
    now = utcnow()
    created = UserList(
        id=new_id("lst"),
        workspace_id=workspace_id,
        name=name,
        description=description,
        created_at=now,
        updated_at=now,
    )
    session.add(created)
    session.flush()
    return created


def update_list(
    session: Session, found: UserList, *, name: str | None, description: str | None
) -> UserList:
    if name is not None and name != found.name:
        if _name_taken(session, found.workspace_id, name, found.id):
            raise ListNameTaken(f"A list named {name!r} already exists.")
        found.name = name
    if description is not None:
        found.description = description
    found.updated_at = utcnow()
    session.flush()
    return found


def usages(session: Session, list_ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in list_ids}
    if list_ids:
        for list_id, consumer, reference in session.execute(
            sa.select(ListUsage.list_id, ListUsage.consumer, ListUsage.reference)
            .where(ListUsage.list_id.in_(list(list_ids)))
            .order_by(ListUsage.consumer, ListUsage.reference)
        ):
            out[list_id].append(f"{consumer}:{reference}" if reference else consumer)
    return out


def add_usage(session: Session, found: UserList, consumer: str, reference: str = "") -> None:
    """Mark the list as used by `consumer` (e.g. `sync.contacts.outbound`)."""
    exists = session.scalar(
        sa.select(ListUsage.id).where(
            ListUsage.list_id == found.id,
            ListUsage.consumer == consumer,
            ListUsage.reference == reference,
        )
    )
    if exists is None:
        session.add(
            ListUsage(list_id=found.id, consumer=consumer, reference=reference, created_at=utcnow())
        )
        session.flush()


def remove_usage(session: Session, found: UserList, consumer: str, reference: str = "") -> None:
    session.execute(
        sa.delete(ListUsage).where(
            ListUsage.list_id == found.id,
            ListUsage.consumer == consumer,
            ListUsage.reference == reference,
        )
    )


def delete_list(session: Session, origin: Origin, found: UserList) -> None:
    users_of = usages(session, [found.id])[found.id]
    if users_of:
        raise ListInUse(
            f"The list is used by {', '.join(users_of)}; stop that use first.", used_by=users_of
        )
    members = session.execute(
        sa.select(User.id, User.external_id)
        .join(ListMembership, ListMembership.user_id == User.id)
        .where(ListMembership.list_id == found.id)
        .order_by(User.id)
    ).all()
    feed.record(
        session,
        origin,
        [
            PendingChange(uid, ext, "lists", {f"lists.{found.id}": [True, False]})
            for uid, ext in members
        ],
    )
    _touch_users(session, [uid for uid, _ in members])
    session.delete(found)
    session.flush()


def _touch_users(session: Session, user_ids: Sequence[int]) -> None:
    """Membership is part of the user as the API shows it: bump version and updated_at so
    pollers on updated_since see the change."""
    if user_ids:
        users_table = table_of(User)
        session.execute(
            users_table.update()
            .where(users_table.c.id.in_(list(user_ids)))
            .values(version=users_table.c.version + 1, updated_at=utcnow())
        )


def member_counts(session: Session, list_ids: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(list_ids, 0)
    if list_ids:
        for list_id, count in session.execute(
            sa.select(ListMembership.list_id, sa.func.count())
            .join(User, User.id == ListMembership.user_id)
            .where(ListMembership.list_id.in_(list(list_ids)), User.deleted_at.is_(None))
            .group_by(ListMembership.list_id)
        ):
            counts[list_id] = count
    return counts


def list_lists(session: Session, workspace_id: str) -> Sequence[UserList]:
    return session.scalars(
        sa.select(UserList).where(UserList.workspace_id == workspace_id).order_by(UserList.name)
    ).all()


def render(session: Session, found: Sequence[UserList]) -> list[dict[str, Any]]:
    ids = [item.id for item in found]
    counts, used = member_counts(session, ids), usages(session, ids)
    return [
        {
            "id": item.id,
            "name": item.name,
            "description": item.description,
            "member_count": counts[item.id],
            "used_by": used[item.id],
            "created_at": item.created_at,
            "updated_at": item.updated_at,
        }
        for item in found
    ]


def change_membership(
    session: Session, origin: Origin, found: UserList, external_ids: Sequence[str], *, add: bool
) -> tuple[int, int, list[str]]:
    """Add or remove users; returns (changed, unchanged, external ids not found)."""
    wanted = list(dict.fromkeys(external_ids))
    users = dict(
        session.execute(
            sa.select(User.external_id, User.id).where(
                User.workspace_id == found.workspace_id,
                User.external_id.in_(wanted),
                User.deleted_at.is_(None),
            )
        ).all()
    )
    missing = [ext for ext in wanted if ext not in users]
    current = set(
        session.scalars(
            sa.select(ListMembership.user_id).where(
                ListMembership.list_id == found.id, ListMembership.user_id.in_(list(users.values()))
            )
        )
    )
    targets = [(ext, uid) for ext, uid in users.items() if (uid in current) != add]
    if targets:
        table = table_of(ListMembership)
        if add:
            now = utcnow()
            session.execute(
                sa.insert(table),
                [
                    {"list_id": found.id, "user_id": uid, "origin": origin.origin, "added_at": now}
                    for _, uid in targets
                ],
            )
        else:
            session.execute(
                table.delete().where(
                    table.c.list_id == found.id, table.c.user_id.in_([uid for _, uid in targets])
                )
            )
        feed.record(
            session,
            origin,
            [
                PendingChange(uid, ext, "lists", {f"lists.{found.id}": [not add, add]})
                for ext, uid in targets
            ],
        )
        _touch_users(session, [uid for _, uid in targets])
        found.updated_at = utcnow()
        session.flush()
    return len(targets), len(users) - len(targets), missing
