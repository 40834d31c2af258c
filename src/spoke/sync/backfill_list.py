"""The settings' HubSpot list in a manual sync to HubSpot (`contact_marks` has the rule).

Each page adds the contacts it wrote (or found unchanged) to the list in one membership
call, after writing them and before committing; the list id is stored on each link with the
page's checkpoint, so a link is added once per list. After `kill -9` only the pages that
were in flight (not committed) repeat their call, which HubSpot treats as a no-op for ids
already in the list; committed pages are skipped with their markers. A dry run adds
nothing and counts the contacts it would add.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from spoke.hubspot import BlockingClient
from spoke.sync import contact_marks
from spoke.sync.links import record_failure
from spoke.sync.models import ContactLink
from spoke.sync.outbound import Out, Sent
from spoke.sync.run_counts import RunCounts


@dataclass(frozen=True)
class Marker:
    """What a link knew before the page: its contact and the list it was added to."""

    hubspot_id: str | None
    list_id: str | None


def _needs_adding(list_id: str, marker: Marker | None, contact_id: str | None) -> bool:
    # A link that now points at another contact (merged away, re-created) goes in again.
    if contact_id is None or marker is None:
        return True
    return marker.list_id != list_id or marker.hubspot_id != contact_id


def would_add(list_id: str | None, outs: list[Out], markers: dict[int, Marker]) -> int:
    """Dry run: the contacts (by the id HubSpot holds now; a create has none) that a real
    run would add to the list."""
    if list_id is None:
        return 0
    return sum(_needs_adding(list_id, markers.get(o.user_id), o.hubspot_id) for o in outs)


def contact_of(out: Out, sent: Sent) -> str | None:
    """The contact a sent (or found-unchanged) out now stands for; None if it failed."""
    if not out.props:
        return out.hubspot_id
    ok = sent.ok.get(out.user_id)
    return ok[0] if ok is not None else None


def add_page(
    hs: BlockingClient,
    list_id: str | None,
    outs: list[Out],
    markers: dict[int, Marker],
    sent: Sent,
) -> None:
    """Add the page's contacts that are not in the list yet (results in `sent.listed` /
    `sent.list_failed`)."""
    if list_id is None:
        return
    contacts: dict[int, str] = {}
    for out in outs:
        contact_id = contact_of(out, sent)
        if contact_id is not None and _needs_adding(list_id, markers.get(out.user_id), contact_id):
            contacts[out.user_id] = contact_id
    if contacts:
        contact_marks.add_to_list(hs, list_id, contacts, sent)


def store(link: ContactLink, out: Out, sent: Sent, counts: RunCounts, *, now: datetime) -> None:
    """Record a page's list add on a link that synced (after its success was recorded): a
    failed add leaves the link failing, so the real-time backoff retries the add."""
    if out.user_id in sent.listed:
        link.hubspot_list_id = sent.listed[out.user_id]
        counts.list_adds += 1
    elif out.user_id in sent.list_failed:
        reason = sent.list_failed[out.user_id]
        counts.error(out.external_id, reason)
        record_failure(link, reason, now=now, transient=out.user_id in sent.transient)


__all__ = ["Marker", "add_page", "contact_of", "store", "would_add"]
