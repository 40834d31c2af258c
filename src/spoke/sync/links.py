"""Contact links: finding them, and the failure bookkeeping every sync path shares.

A record that fails is retried by later runs with exponential backoff: the first retry is
due a minute after the failure, each further one twice as late, capped at six hours, with
±20 % jitter so that records which failed together do not all come back in the same
second. After `MAX_RETRIES` failures the automatic retries stop (`next_attempt_at` is
null) until the record changes or someone asks for a retry (`make_due`). Failures that are
HubSpot's (5xx, 429, unreachable, after the client's own retries) do not back off: they are
due again at the next run. Failures that are
HubSpot's (5xx, 429, unreachable) are not counted against the record's backoff: they are
due again at the next run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.hubspot import HubSpotError, HubSpotResponseError
from spoke.sync.models import ContactLink

MAX_RETRIES = 10
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)
JITTER = 0.2
REASON_CHARS = 1000


def retry_delay(failures: int, *, rng: random.Random | None = None) -> timedelta:
    """How long to wait before retrying a record that has failed `failures` times (≥ 1)."""
    exponent = min(max(failures, 1) - 1, 30)
    base = min(FIRST_RETRY * (2**exponent), LONGEST_RETRY)
    factor = 1.0 + JITTER * (2.0 * (rng or random).random() - 1.0)
    jittered: timedelta = base * factor
    return min(jittered, LONGEST_RETRY)


def is_transient(exc: BaseException) -> bool:
    """HubSpot could not answer (down, throttling, unreachable): not the record's fault."""
    if isinstance(exc, HubSpotResponseError):
        return exc.status_code >= 500 or exc.status_code == 429
    return isinstance(exc, HubSpotError)


def record_failure(
    link: ContactLink, reason: str, *, now: datetime | None = None, transient: bool = False
) -> None:
    """Mark the link failing with `reason` and schedule its next automatic attempt.

    A `transient` failure (HubSpot down or throttling after the client's own retries) is
    not the record's fault: it is due again at the next run (the minute tick bounds how
    often) and never runs out of retries. A refusal of the record itself backs off."""
    now = now or utcnow()
    link.state = "failing"
    link.reason = reason[:REASON_CHARS]
    link.failures = (link.failures or 0) + 1
    if transient:
        link.next_attempt_at = now
    elif link.failures < MAX_RETRIES:
        link.next_attempt_at = now + retry_delay(link.failures)
    else:
        link.next_attempt_at = None
    link.updated_at = now


def record_success(link: ContactLink) -> None:
    """Clear the failure bookkeeping of a link that synced."""
    link.state, link.reason, link.failures = "in_sync", None, 0
    link.next_attempt_at = None


def make_due(link: ContactLink, *, now: datetime | None = None) -> None:
    """Retry the record at the next run, whatever its backoff said."""
    link.next_attempt_at = now or utcnow()
    link.updated_at = now or utcnow()


def due_retry_user_ids(session: Session, workspace_id: str, limit: int) -> list[int]:
    """Users whose failing link is due for another attempt, oldest failure first."""
    return list(
        session.scalars(
            sa.select(ContactLink.user_id)
            .where(
                ContactLink.workspace_id == workspace_id,
                ContactLink.state == "failing",
                ContactLink.next_attempt_at <= utcnow(),
            )
            .order_by(ContactLink.next_attempt_at, ContactLink.id)
            .limit(limit)
        )
    )


def link_for(session: Session, workspace_id: str, user_id: int) -> ContactLink:
    """The user's link, created (in sync, unlinked) when the sync has not seen them yet."""
    found = session.scalar(
        sa.select(ContactLink).where(
            ContactLink.workspace_id == workspace_id, ContactLink.user_id == user_id
        )
    )
    return found if found is not None else new_link(session, workspace_id, user_id)


def unsaved_link(workspace_id: str, user_id: int, *, now: datetime | None = None) -> ContactLink:
    """A fresh link (in sync, not yet paired with a contact), not in any session."""
    return ContactLink(
        workspace_id=workspace_id,
        user_id=user_id,
        snapshot={},
        conflicts=[],
        failures=0,
        state="in_sync",
        updated_at=now or utcnow(),
    )


def new_link(
    session: Session, workspace_id: str, user_id: int, *, now: datetime | None = None
) -> ContactLink:
    """A fresh link (in sync, not yet paired with a contact), added to the session."""
    link = unsaved_link(workspace_id, user_id, now=now)
    session.add(link)
    return link


def link_row(workspace_id: str, user_id: int, *, now: datetime, **values: Any) -> dict[str, Any]:
    """A new link as a row for `core.bulk.insert`: every column but the id, the model's
    defaults where `values` leave one unset (COPY fills in none). Built as a plain dict: a
    page of ORM links cost more in instrumentation than their insert did."""
    row: dict[str, Any] = {
        "workspace_id": workspace_id,
        "user_id": user_id,
        "hubspot_id": None,
        "matched_by": "email",
        "snapshot": {},
        "state": "in_sync",
        "reason": None,
        "failures": 0,
        "next_attempt_at": None,
        "conflicts": [],
        "settings_version": 0,
        "note_id": None,
        "note_hash": None,
        "hubspot_list_id": None,
        "marked_deleted": False,
        "last_synced_at": None,
        "updated_at": now,
    }
    unknown = values.keys() - row.keys()
    if unknown:
        raise TypeError(f"not a column of contact_links: {sorted(unknown)}")
    row.update(values)
    return row


def row_of(link: ContactLink) -> dict[str, Any]:
    """An unsaved link as a row for `core.bulk.insert` (the model's defaults where the link
    left a column unset)."""
    return link_row(
        link.workspace_id,
        link.user_id,
        now=link.updated_at,
        hubspot_id=link.hubspot_id,
        matched_by=link.matched_by or "email",
        snapshot=link.snapshot if link.snapshot is not None else {},
        state=link.state or "in_sync",
        reason=link.reason,
        failures=link.failures or 0,
        next_attempt_at=link.next_attempt_at,
        conflicts=link.conflicts if link.conflicts is not None else [],
        settings_version=link.settings_version or 0,
        note_id=link.note_id,
        note_hash=link.note_hash,
        hubspot_list_id=link.hubspot_list_id,
        marked_deleted=bool(link.marked_deleted),
        last_synced_at=link.last_synced_at,
    )


def new_link_row(
    workspace_id: str,
    user_id: int,
    hubspot_id: str,
    snapshot: dict[str, Any],
    settings_version: int,
    now: datetime,
) -> dict[str, Any]:
    """A link paired with `hubspot_id` and in sync, as a row for `core.bulk.insert`."""
    return link_row(
        workspace_id,
        user_id,
        now=now,
        hubspot_id=hubspot_id,
        snapshot=snapshot,
        settings_version=settings_version,
        last_synced_at=now,
    )


def holder_of(session: Session, workspace_id: str, hubspot_id: str) -> ContactLink | None:
    """The link that follows HubSpot contact `hubspot_id`, if any."""
    return session.scalar(
        sa.select(ContactLink).where(
            ContactLink.workspace_id == workspace_id, ContactLink.hubspot_id == hubspot_id
        )
    )


def links_by_user(
    session: Session, workspace_id: str, user_ids: Sequence[int]
) -> dict[int, ContactLink]:
    if not user_ids:
        return {}
    return {
        link.user_id: link
        for link in session.scalars(
            sa.select(ContactLink).where(
                ContactLink.workspace_id == workspace_id, ContactLink.user_id.in_(list(user_ids))
            )
        )
    }


def error_text(exc: Exception) -> str:
    return str(exc)[:500] or type(exc).__name__
