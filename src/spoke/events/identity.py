"""Which HubSpot contact an event's user is.

An event names its user by `user_id` (the app's external id) or `email`; the key
`u:<id>` / `e:<email>` stands for that user here. In order:

1. the contact the contact sync linked to the user (`ContactLink`), looked up afresh by
   every run, so a link made (or moved by a merge) since the last run wins at once;
2. a contact found by email (HubSpot batch read by email; the user's stored email, else the
   event's email, else the user id if it is an email address), remembered;
3. a contact Spoke creates with that email, when the workspace allows it;
4. none: the user is unmatched, remembered with the time of the check, and looked up again
   after `unmatched_recheck_minutes` (a new link is noticed on the next pass regardless).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.events.export_models import EventExportIdentity
from spoke.hubspot import BlockingClient, ContactExists, HubSpotClient, HubSpotResponseError
from spoke.sync.models import ContactLink
from spoke.users.models import User

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IN = 1000  # keys per IN (...) query
_LOOKUPS_IN_FLIGHT = 4


@dataclass(slots=True)
class Who:
    """The user an item belongs to, as its event named it."""

    key: str
    external_id: str | None
    email: str | None


@dataclass(frozen=True)
class Match:
    hubspot_id: str | None
    reason: str | None = None  # why not: unmatched | no_email


def identity_key(external_id: str | None, email: str | None) -> str:
    return f"u:{external_id}" if external_id is not None else f"e:{email}"


def _is_email(value: str | None) -> bool:
    return value is not None and bool(_EMAIL.match(value))


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _IN):
        yield values[start : start + _IN]


def _links(
    session: Session, workspace_id: str, users: dict[str, Who]
) -> tuple[dict[str, str], dict[str, str]]:
    """Linked contact ids by key, and the stored email of each user found by external id."""
    linked: dict[str, str] = {}
    emails: dict[str, str] = {}
    external = sorted({w.external_id for w in users.values() if w.external_id is not None})
    for part in _chunks(external):
        rows = session.execute(
            sa.select(User.external_id, User.email, ContactLink.hubspot_id)
            .outerjoin(ContactLink, ContactLink.user_id == User.id)
            .where(User.workspace_id == workspace_id, User.external_id.in_(part))
        )
        for external_id, email, hubspot_id in rows:
            if hubspot_id:
                linked[f"u:{external_id}"] = hubspot_id
            if email:
                emails[f"u:{external_id}"] = email
    by_email = sorted({w.email for w in users.values() if w.external_id is None and w.email})
    for part in _chunks(by_email):
        pairs = session.execute(
            sa.select(User.email, ContactLink.hubspot_id)
            .join(ContactLink, ContactLink.user_id == User.id)
            .where(
                User.workspace_id == workspace_id,
                User.email.in_(part),
                ContactLink.hubspot_id.is_not(None),
            )
        )
        for email, linked_id in pairs:
            if linked_id:
                linked[f"e:{email}"] = linked_id
    return linked, emails


def _cached(session: Session, workspace_id: str, keys: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for part in _chunks(keys):
        for row in session.execute(
            sa.select(
                EventExportIdentity.identity_key,
                EventExportIdentity.hubspot_id,
                EventExportIdentity.checked_at,
            ).where(
                EventExportIdentity.workspace_id == workspace_id,
                EventExportIdentity.identity_key.in_(part),
            )
        ):
            found[row.identity_key] = row
    return found


def _candidate_email(who: Who, stored: str | None) -> str | None:
    for value in (stored, who.email, who.external_id if who.key.startswith("u:") else None):
        if _is_email(value):
            assert value is not None
            return value.lower()
    return None


async def _lookup(client: HubSpotClient, emails: Sequence[str]) -> dict[str, str]:
    """Contacts by email, a few batch reads (100 emails each) in flight at once."""
    out: dict[str, str] = {}
    limiter = anyio.Semaphore(_LOOKUPS_IN_FLIGHT)

    async def read(part: Sequence[str]) -> None:
        async with limiter:
            result = await client.contacts.batch_read(
                part, properties=["email"], id_property="email"
            )
        for record in result.results:
            email = record.properties.get("email")
            if email:
                out[email.lower()] = record.id

    async with anyio.create_task_group() as group:
        for start in range(0, len(emails), 100):
            group.start_soon(read, emails[start : start + 100])
    return out


async def _create(client: HubSpotClient, emails: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for email in emails:
        try:
            out[email] = (await client.contacts.create({"email": email})).id
        except ContactExists as exc:  # created meanwhile (by the sync, by someone in HubSpot)
            out[email] = exc.existing_id
    return out


def resolve(
    sessions: sessionmaker[Session],
    hs: BlockingClient,
    workspace_id: str,
    users: dict[str, Who],
    *,
    create_contacts: bool,
    recheck: timedelta,
    known: dict[str, str],
) -> dict[str, Match]:
    """The contact of every user in `users` (by key), or why there is none yet. `known`
    holds the contacts this run already found; it is read first and extended.

    Raises:
        HubSpotError: a lookup or create failed; nothing is remembered from this call then.
    """
    now = utcnow()
    matches = {k: Match(known[k]) for k in users if k in known}
    users = {k: w for k, w in users.items() if k not in known}
    if not users:
        return matches
    with session_scope(sessions) as session:
        linked, stored_emails = _links(session, workspace_id, users)
        rest = sorted(k for k in users if k not in linked)
        cached = _cached(session, workspace_id, rest)
    known.update(linked)
    matches.update({k: Match(v) for k, v in linked.items()})
    to_check: dict[str, str] = {}  # key -> email to look up
    for key in rest:
        row = cached.get(key)
        if row is not None and row.hubspot_id:
            matches[key] = Match(row.hubspot_id)
            known[key] = row.hubspot_id
            continue
        if row is not None and row.checked_at > now - recheck:
            matches[key] = Match(None, "unmatched")
            continue
        email = _candidate_email(users[key], stored_emails.get(key))
        if email is None:
            matches[key] = Match(None, "no_email")
            continue
        to_check[key] = email
    if not to_check:
        return matches
    found = hs.call(lambda c: _lookup(c, sorted(set(to_check.values()))))
    matched_by: dict[str, str] = {}
    missing = sorted({e for e in to_check.values() if e not in found})
    if missing and create_contacts:
        try:
            created = hs.call(lambda c: _create(c, missing))
        except HubSpotResponseError:
            created = {}  # e.g. a refused email: those users stay unmatched, visibly
        found.update(created)
        matched_by.update(dict.fromkeys(created, "created"))
    rows = []
    for key, email in to_check.items():
        contact = found.get(email)
        matches[key] = Match(contact, None if contact else "unmatched")
        if contact:
            known[key] = contact
        rows.append(
            {
                "workspace_id": workspace_id,
                "identity_key": key,
                "hubspot_id": contact,
                "matched_by": matched_by.get(email, "email") if contact else None,
                "reason": None if contact else f"no contact with email {email}",
                "checked_at": now,
            }
        )
    _remember(sessions, workspace_id, rows)
    return matches


def _remember(
    sessions: sessionmaker[Session], workspace_id: str, rows: list[dict[str, Any]]
) -> None:
    with session_scope(sessions) as session:
        keys = [r["identity_key"] for r in rows]
        session.execute(
            sa.delete(EventExportIdentity).where(
                EventExportIdentity.workspace_id == workspace_id,
                EventExportIdentity.identity_key.in_(keys),
            )
        )
        session.execute(sa.insert(EventExportIdentity), rows)


def forget(session: Session, workspace_id: str, keys: Iterable[str]) -> None:
    """Drop remembered contacts that HubSpot no longer has (deleted, merged away)."""
    wanted = sorted(set(keys))
    if wanted:
        session.execute(
            sa.delete(EventExportIdentity).where(
                EventExportIdentity.workspace_id == workspace_id,
                EventExportIdentity.identity_key.in_(wanted),
            )
        )
