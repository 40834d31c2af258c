"""Inbound: HubSpot contacts → Spoke users.

Webhook events (or reconcile search hits) only name contacts: `inbound_work` sorts the
events, drops those whose `changeSource`/`sourceId` say we wrote them, and collects the ids
to read, the merges, deletes and restores. `apply_inbound` applies the contacts' current
state where it differs from the link's snapshot, through `users.service.write_users` with
origin `sync.hubspot` (the outbound side skips that origin: the loop gate). Conflicts
(both sides changed a field since the snapshot) go to `conflict_winner`; a blank never
overwrites; the losing value is kept on the link. A field Spoke refuses is left out and
noted; the rest of the record still syncs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog
from pydantic import ValidationError
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.hubspot import SimplePublicObject
from spoke.sync import mapping as fm
from spoke.sync.links import holder_of, links_by_user, record_failure, record_success
from spoke.sync.models import ContactLink
from spoke.sync.settings import Effective
from spoke.users import lists as user_lists
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import STANDARD_FIELDS, User, UserList
from spoke.users.schemas import UserFields

log = structlog.get_logger("spoke.sync")

ORIGIN = "sync.hubspot"
MAX_CONFLICTS_KEPT = 20


@dataclass
class InboundWork:
    read_ids: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    restored: set[str] = field(default_factory=set)
    merges: list[tuple[str, list[str]]] = field(default_factory=list)  # (survivor, merged ids)
    dropped_echoes: int = 0


def inbound_work(events: Iterable[dict[str, Any]], app_id: int) -> InboundWork:
    work = InboundWork()
    ours = str(app_id) if app_id else None
    foreign: set[str] = set()
    touched: set[str] = set()
    ordered = sorted(
        events, key=lambda e: (int(e.get("occurredAt") or 0), int(e.get("eventId") or 0))
    )
    for event in ordered:
        kind = str(event.get("subscriptionType") or event.get("eventType") or "")
        object_id = str(event.get("objectId") or "")
        if not kind.startswith("contact.") or not object_id:
            continue
        if kind == "contact.merge":
            survivor = str(event.get("newObjectId") or event.get("primaryObjectId") or object_id)
            merged = [str(i) for i in event.get("mergedObjectIds") or [] if str(i) != survivor]
            work.merges.append((survivor, merged))
            work.read_ids.add(survivor)
            continue
        if kind in ("contact.deletion", "contact.privacyDeletion"):
            work.deleted.add(object_id)
            work.restored.discard(object_id)
            continue
        if kind == "contact.restore":
            work.restored.add(object_id)
            work.deleted.discard(object_id)
            touched.add(object_id)
            foreign.add(object_id)
            continue
        touched.add(object_id)
        is_ours = (
            ours is not None
            and event.get("changeSource") == "INTEGRATION"
            and str(event.get("sourceId") or "") == ours
        )
        if not is_ours:
            foreign.add(object_id)
    for object_id in touched:
        if object_id in foreign:
            work.read_ids.add(object_id)
        else:
            work.dropped_echoes += 1
    work.read_ids -= work.deleted
    return work


def apply_merges(session: Session, workspace_id: str, merges: list[tuple[str, list[str]]]) -> None:
    for survivor, merged in merges:
        holder = holder_of(session, workspace_id, survivor)
        for old in merged:
            link = holder_of(session, workspace_id, old)
            if link is None:
                continue
            if holder is None:
                link.hubspot_id, link.matched_by = survivor, "merge"
                holder = link
            else:
                link.hubspot_id, link.snapshot = None, {}
                link.state, link.reason = "excluded", f"merged into HubSpot contact {survivor}"
            link.updated_at = utcnow()
            session.flush()


def _users_by_email(session: Session, workspace_id: str, emails: Sequence[str]) -> dict[str, User]:
    found: dict[str, User] = {}
    if not emails:
        return found
    for user in session.scalars(
        sa.select(User)
        .where(
            User.workspace_id == workspace_id,
            User.email.in_(list(emails)),
            User.deleted_at.is_(None),
        )
        .order_by(User.id)
    ):
        found.setdefault((user.email or "").lower(), user)  # the first-created user wins
    return found


def validated(values: dict[str, Any]) -> tuple[UserFields | None, list[str]]:
    """The values as `UserFields`, leaving out any field Spoke refuses (named in the
    returned problems); None when what is left is still refused."""
    problems: list[str] = []
    current = dict(values)
    for _ in range(len(values) + 2):
        try:
            return UserFields.model_validate(current), problems
        except ValidationError as exc:
            dropped = False
            for error in exc.errors():
                loc = [str(part) for part in error.get("loc", ())]
                if not loc:
                    continue
                name = loc[0]
                if name == "custom" and len(loc) > 1 and isinstance(current.get("custom"), dict):
                    current["custom"] = {k: v for k, v in current["custom"].items() if k != loc[1]}
                    problems.append(f"custom.{loc[1]}: {error.get('msg', 'invalid')}")
                    dropped = True
                elif name in current and name != "email":
                    current.pop(name)
                    problems.append(f"{name}: {error.get('msg', 'invalid')}")
                    dropped = True
            if not dropped:
                problems.append(str(exc.errors()[0].get("msg", "invalid")))
                return None, problems
    return None, problems


def _conflict(link: ContactLink, field_name: str, value: str, side: str) -> None:
    entry = {"field": field_name, "value": value, "side": side, "at": utcnow().isoformat()}
    link.conflicts = [*(link.conflicts or []), entry][-MAX_CONFLICTS_KEPT:]


def apply_inbound(session: Session, eff: Effective, contacts: Sequence[SimplePublicObject]) -> None:
    if not contacts:
        return
    workspace_id = eff.row.workspace_id
    ids = [c.id for c in contacts]
    links = {
        link.hubspot_id: link
        for link in session.scalars(
            sa.select(ContactLink).where(
                ContactLink.workspace_id == workspace_id, ContactLink.hubspot_id.in_(ids)
            )
        )
    }
    emails = [
        (c.properties.get("email") or "").strip().lower()
        for c in contacts
        if c.id not in links and c.properties.get("email")
    ]
    by_email = _users_by_email(session, workspace_id, emails)
    linked_users = links_by_user(session, workspace_id, [u.id for u in by_email.values()])
    user_ids = [link.user_id for link in links.values()] + [u.id for u in by_email.values()]
    current = (
        {u.id: u for u in session.scalars(sa.select(User).where(User.id.in_(user_ids)))}
        if user_ids
        else {}
    )
    to_spoke_constants = dict((eff.row.constants or {}).get("to_spoke", {}))
    items: list[users.WriteItem] = []
    pending: list[tuple[users.WriteItem, ContactLink, dict[str, str], bool, str]] = []
    for contact in contacts:
        link = links.get(contact.id)
        email = (contact.properties.get("email") or "").strip().lower()
        user: User | None = current.get(link.user_id) if link is not None else None
        if link is None and email:
            user = by_email.get(email)
            if user is not None:
                other = linked_users.get(user.id)
                if other is not None and other.hubspot_id and other.hubspot_id != contact.id:
                    continue  # that user already follows another contact
                link = other
        creating = user is None
        if creating and not email:
            continue  # a contact without email has nothing to pair on
        if user is not None and user.deleted_at is not None:
            continue
        snapshot = dict(link.snapshot) if link is not None and link.hubspot_id else {}
        profile = (
            {name: getattr(user, name) for name in STANDARD_FIELDS} if user is not None else {}
        )
        custom = dict(user.custom or {}) if user is not None else {}
        values: dict[str, Any] = {}
        agreed: dict[str, str] = {}
        losers: list[tuple[str, str, str]] = []
        known = bool(snapshot)
        winner = eff.row.conflict_winner
        for m in eff.mappings:
            remote = contact.properties.get(m.hubspot) or ""
            local = fm.to_hubspot(fm.read_user_value(m, profile, custom), m.spoke_type)
            if known and remote == snapshot.get(m.hubspot, ""):
                continue  # HubSpot did not change this field since we last agreed
            if remote == local:
                agreed[m.hubspot] = remote
                continue
            if remote == "":
                continue  # a blank never overwrites
            local_changed = local != "" and (not known or local != snapshot.get(m.hubspot, ""))
            if local_changed and winner == "spoke":
                losers.append((m.spoke, remote, "hubspot"))
                continue
            try:
                value = fm.to_spoke(remote, m.spoke_type)
            except ValueError:
                losers.append((m.spoke, remote, "hubspot"))
                continue
            if local_changed:
                losers.append((m.spoke, local, "spoke"))
            name = m.custom_name
            if name is not None:
                values.setdefault("custom", {})[name] = value
            else:
                values[m.spoke] = value
            agreed[m.hubspot] = remote
        for name, value in to_spoke_constants.items():
            if name.startswith("custom."):
                if custom.get(name.removeprefix("custom.")) != value:
                    values.setdefault("custom", {})[name.removeprefix("custom.")] = value
            elif profile.get(name) != value:
                values[name] = value
        if link is None:
            link = ContactLink(
                workspace_id=workspace_id,
                user_id=0,
                snapshot={},
                conflicts=[],
                failures=0,
                state="in_sync",
                matched_by="email" if user is not None else "created",
                updated_at=utcnow(),
            )
        for spoke_field, value, side in losers:
            _conflict(link, spoke_field, value, side)
        external_id = user.external_id if user is not None else f"hubspot-{contact.id}"
        if creating:
            values.setdefault("email", email)
        fields_in, problems = validated(values)
        if fields_in is None:
            _mark_failing(session, link, contact.id, user, "; ".join(problems))
            continue
        for problem in problems:  # the rest of the record still syncs
            _conflict(link, problem.split(":", 1)[0], problem, "hubspot")
        item = users.WriteItem(external_id, fields_in)
        items.append(item)
        pending.append((item, link, agreed, creating, contact.id))
    if not items:
        return
    origin = Origin(workspace_id, ORIGIN, f"hubspot:{contacts[0].id}")
    outcomes = users.write_users(session, origin, items)
    new_users = [
        item.external_id
        for (item, link, *_), outcome in zip(pending, outcomes, strict=True)
        if outcome.error is None and link.user_id == 0
    ]
    ids_of: dict[str, int] = {}
    if new_users:  # one lookup for the chunk's new users, not one per contact
        rows = session.execute(
            sa.select(User.external_id, User.id).where(
                User.workspace_id == workspace_id, User.external_id.in_(new_users)
            )
        ).all()
        ids_of = dict(rows)
    created_ids: list[str] = []
    now = utcnow()
    for (item, link, agreed, creating, contact_id), outcome in zip(pending, outcomes, strict=True):
        if outcome.error is not None:
            _mark_failing(session, link, contact_id, None, outcome.error.detail)
            continue
        if link.user_id == 0:
            link.user_id = ids_of[item.external_id]
            session.add(link)
        link.hubspot_id = contact_id
        link.snapshot = {**(link.snapshot or {}), **agreed}
        record_success(link)
        link.last_synced_at = now
        link.settings_version = eff.row.version
        link.updated_at = now
        if creating:
            created_ids.append(item.external_id)
    # Contact ids are distinct within a chunk and each link takes only its own contact, so
    # one flush for the chunk cannot trip the (workspace, hubspot id) uniqueness.
    session.flush()
    if created_ids and eff.row.receive_list_id:
        target = session.get(UserList, eff.row.receive_list_id)
        if target is not None and target.workspace_id == workspace_id:
            user_lists.change_membership(session, origin, target, created_ids, add=True)


def _mark_failing(
    session: Session, link: ContactLink, contact_id: str, user: User | None, reason: str
) -> None:
    if link.user_id == 0 and user is None:
        log.warning("sync.inbound_rejected", contact_id=contact_id, reason=reason)
        return
    if link.user_id == 0 and user is not None:
        link.user_id = user.id
        session.add(link)
    record_failure(link, f"from HubSpot: {reason}")
    session.flush()


def apply_deletes(session: Session, eff: Effective, deleted: set[str], restored: set[str]) -> None:
    if not deleted and not restored:
        return
    workspace_id = eff.row.workspace_id
    policy = eff.row.delete_policy
    origin = Origin(workspace_id, ORIGIN, "hubspot:delete")
    for hubspot_id in sorted(deleted | restored):
        link = holder_of(session, workspace_id, hubspot_id)
        if link is None:
            continue
        user = session.get(User, link.user_id)
        if user is None:
            continue
        gone = hubspot_id in deleted
        if policy == "propagate":
            if gone and user.deleted_at is None:
                users.delete_user(session, origin, user.external_id)
            elif not gone and user.deleted_at is not None:
                users.restore_user(session, origin, user.external_id)
        elif policy == "soft" and user.deleted_at is None:
            tag = {"hubspot_deleted": "true" if gone else ""}
            users.write_users(
                session,
                origin,
                [users.WriteItem(user.external_id, UserFields.model_validate({"tags": tag}))],
            )
        link.state = "excluded" if gone else "in_sync"
        link.reason = "deleted in HubSpot" if gone else None
        link.next_attempt_at = None
        link.updated_at = utcnow()
    session.flush()


__all__ = [
    "ORIGIN",
    "InboundWork",
    "apply_deletes",
    "apply_inbound",
    "apply_merges",
    "inbound_work",
    "validated",
]
