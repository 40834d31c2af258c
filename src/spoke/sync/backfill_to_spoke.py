"""Manual sync HubSpot → Spoke: apply a page of contacts as user writes.

Records pair by email (or by an existing link); on a conflict the run's source app wins and
a blank never overwrites. A dry run counts and writes nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core import bulk
from spoke.core.clock import utcnow
from spoke.core.db import table_of
from spoke.hubspot import SimplePublicObject
from spoke.sync import mapping as fm
from spoke.sync.inbound import ORIGIN, validated
from spoke.sync.links import links_by_user as links_for_users
from spoke.sync.links import new_link_row, record_success
from spoke.sync.models import ContactLink, ContactSyncRun
from spoke.sync.run_counts import RunCounts
from spoke.sync.settings import Effective
from spoke.users import lists as user_lists
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import STANDARD_FIELDS, User, UserList


def apply_page(
    session: Session, run: ContactSyncRun, eff: Effective, contacts: list[SimplePublicObject]
) -> RunCounts:
    counts = RunCounts()
    workspace_id = run.workspace_id
    ids = [c.id for c in contacts]
    links = {
        link.hubspot_id: link
        for link in session.scalars(
            sa.select(ContactLink).where(
                ContactLink.workspace_id == workspace_id, ContactLink.hubspot_id.in_(ids)
            )
        )
    }
    emails = [(c.properties.get("email") or "").strip().lower() for c in contacts]
    by_email: dict[str, User] = {}
    for found in session.scalars(
        sa.select(User)
        .where(
            User.workspace_id == workspace_id,
            User.email.in_([e for e in emails if e]),
            User.deleted_at.is_(None),
        )
        .order_by(User.id)
    ):
        by_email.setdefault((found.email or "").lower(), found)
    linked_ids = [link.user_id for link in links.values()]
    by_id = (
        {u.id: u for u in session.scalars(sa.select(User).where(User.id.in_(linked_ids)))}
        if linked_ids
        else {}
    )
    constants = dict((eff.row.constants or {}).get("to_spoke", {}))
    items: list[users.WriteItem] = []
    pending: list[tuple[users.WriteItem, SimplePublicObject, bool, dict[str, str]]] = []
    seen: set[str] = set()
    for contact in contacts:
        counts.done += 1
        email = (contact.properties.get("email") or "").strip().lower()
        link = links.get(contact.id)
        user: User | None = by_id.get(link.user_id) if link is not None else by_email.get(email)
        if not email or email in seen or (user is not None and user.deleted_at is not None):
            counts.excluded += 1
            continue
        seen.add(email)
        profile = (
            {name: getattr(user, name) for name in STANDARD_FIELDS} if user is not None else {}
        )
        custom = dict(user.custom or {}) if user is not None else {}
        values: dict[str, Any] = {}
        record = user.external_id if user is not None else f"hubspot-{contact.id}"
        for m in eff.mappings:
            remote = contact.properties.get(m.hubspot) or ""
            local = fm.to_hubspot(fm.read_user_value(m, profile, custom), m.spoke_type)
            if remote == "" or remote == local:
                continue
            if user is not None and local != "":
                counts.conflict(record, m.spoke, local, remote, run.source_app)
                if run.source_app == "spoke":
                    continue
            try:
                value = fm.to_spoke(remote, m.spoke_type)
            except ValueError as exc:
                counts.error(record, f"{m.hubspot}: {exc}")
                continue
            if m.custom_name is not None:
                values.setdefault("custom", {})[m.custom_name] = value
            else:
                values[m.spoke] = value
        for name, value in constants.items():
            if name.startswith("custom."):
                if custom.get(name.removeprefix("custom.")) != value:
                    values.setdefault("custom", {})[name.removeprefix("custom.")] = value
            elif profile.get(name) != value:
                values[name] = value
        creating = user is None
        if creating:
            values["email"] = email
            counts.created += 1
        else:
            counts.duplicates += 1
            if values:
                counts.updated += 1
            else:
                counts.unchanged += 1
        fields_in, problems = validated(values)
        for problem in problems:
            counts.error(record, problem)
        if fields_in is None:
            continue
        agreed = {m.hubspot: contact.properties.get(m.hubspot) or "" for m in eff.mappings}
        item = users.WriteItem(record, fields_in)
        items.append(item)
        pending.append((item, contact, creating, agreed))
    if run.dry_run or not items:
        return counts
    origin = Origin(workspace_id, ORIGIN, f"run:{run.id}")
    outcomes = users.write_users(session, origin, items)
    created: list[str] = []
    now = utcnow()
    written = [(p, o) for p, o in zip(pending, outcomes, strict=True) if o.error is None]
    for (item, _, _, _), outcome in zip(pending, outcomes, strict=True):
        if outcome.error is not None:
            counts.error(item.external_id, outcome.error.detail)
    # One query each for the users' ids and their links, not one per record; a user this
    # write created has no link yet, so only the others are looked up.
    rows = session.execute(
        sa.select(User.external_id, User.id).where(
            User.workspace_id == workspace_id,
            User.external_id.in_([item.external_id for (item, _, _, _), _ in written]),
        )
    ).all()
    user_ids: dict[str, int] = {row.external_id: row.id for row in rows}
    fresh = {item.external_id for (item, _, _, _), o in written if o.status == "created"}
    known = [i for ext, i in user_ids.items() if ext not in fresh]
    links_by_user = links_for_users(session, workspace_id, known)
    new_links: dict[int, dict[str, Any]] = {}
    for (item, contact, creating, agreed), _ in written:
        user_id = user_ids[item.external_id]
        link = links.get(contact.id) or links_by_user.get(user_id)
        if link is None:
            row = new_links.get(user_id)
            if row is None:
                new_links[user_id] = new_link_row(
                    workspace_id, user_id, contact.id, agreed, eff.row.version, now
                )
                if creating:
                    created.append(item.external_id)
            continue  # else the user follows another contact; leave that pairing alone
        if link.hubspot_id not in (None, contact.id):
            continue  # the user follows another contact; leave that pairing alone
        link.hubspot_id = contact.id
        link.snapshot = agreed
        record_success(link)
        link.last_synced_at = link.updated_at = now
        link.settings_version = eff.row.version
        if creating:
            created.append(item.external_id)
    # New links in one bulk insert (COPY on PostgreSQL), not one ORM insert each.
    bulk.insert(session, table_of(ContactLink), list(new_links.values()))
    session.flush()
    if created and eff.row.receive_list_id:
        target = session.get(UserList, eff.row.receive_list_id)
        if target is not None and target.workspace_id == workspace_id:
            user_lists.change_membership(session, origin, target, created, add=True)
    return counts


__all__ = ["apply_page"]
