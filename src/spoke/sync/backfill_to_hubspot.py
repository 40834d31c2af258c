"""Manual sync Spoke → HubSpot: pages of users, several in flight, one request per page.

A page is a contiguous interval of user ids `(lo, hi]` holding up to 100 live users. With
the source app winning (`spoke`, the default when Spoke sends) and no dry run, a page is
written without reading HubSpot first (`contact_writes.write_contacts`): our values win
anyway, a blank is never sent, and what HubSpot held before stays in its property history.
When HubSpot wins, or for a dry run, the page first reads the contacts by email to compare
field by field (two requests per page). With a HubSpot list in the settings the page then
adds its contacts to it (`backfill_list`: one more request, only for contacts not yet added).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from spoke.core import bulk, leases
from spoke.core.clock import utcnow
from spoke.core.db import make_session_factory, session_scope, table_of
from spoke.hubspot import BlockingClient, SimplePublicObject
from spoke.sync import backfill_list
from spoke.sync.contact_writes import write_contacts
from spoke.sync.links import (
    new_link_row,
    record_failure,
    record_success,
    row_of,
    unsaved_link,
)
from spoke.sync.models import ContactLink, ContactSyncRun
from spoke.sync.outbound import Out, Sent, UserValues, desired_properties
from spoke.sync.run_counts import RunCounts
from spoke.sync.run_frontier import IdFrontier
from spoke.sync.selection import exclusions
from spoke.sync.settings import Effective, effective, ensure_row
from spoke.users.models import STANDARD_FIELDS, User

PAGE = 100


@dataclass(frozen=True)
class Page:
    lo: int  # exclusive
    hi: int  # inclusive
    user_ids: tuple[int, ...]


def plan_pages(
    sessions: sessionmaker[Session], workspace_id: str, frontier: IdFrontier
) -> Iterator[Page]:
    """Pages from the frontier on, skipping intervals a previous attempt finished."""
    # A reading session: on SQLite a writer's `BEGIN IMMEDIATE` queued the next page's
    # plan behind the commits of the pages in flight, and the run went at their pace.
    readers = make_session_factory(sessions.kw["bind"], read_only=True)
    cursor = frontier.frontier
    while True:
        cursor, bound = frontier.skip_done(cursor)
        query = (
            sa.select(User.id)
            .where(User.workspace_id == workspace_id, User.deleted_at.is_(None), User.id > cursor)
            .order_by(User.id)
            .limit(PAGE)
        )
        if bound is not None:
            query = query.where(User.id <= bound)
        with session_scope(readers) as session:
            ids = tuple(session.scalars(query))
        if len(ids) == PAGE:
            hi = ids[-1]
        elif bound is not None:
            hi = bound  # end the page where the finished interval begins
        elif ids:
            hi = ids[-1]
        else:
            return
        yield Page(cursor, hi, ids)
        cursor = hi


def total(session: Session, workspace_id: str) -> int:
    count = session.scalar(
        sa.select(sa.func.count())
        .select_from(User)
        .where(User.workspace_id == workspace_id, User.deleted_at.is_(None))
    )
    return int(count or 0)


def process_page(
    sessions: sessionmaker[Session],
    hs: BlockingClient,
    run_id: str,
    owner: str,
    lease_seconds: float,
    page: Page,
) -> None:
    """Send one page and commit its links, counts and interval with a lease renewal."""
    counts = RunCounts()
    with session_scope(sessions) as session:
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        workspace_id, source, dry = run.workspace_id, run.source_app, run.dry_run
        eff = effective(session, ensure_row(session, workspace_id))
        people = _load(session, eff, page)
        markers = {
            user_id: backfill_list.Marker(hubspot_id, list_id)
            for user_id, hubspot_id, list_id in session.execute(
                sa.select(
                    ContactLink.user_id, ContactLink.hubspot_id, ContactLink.hubspot_list_id
                ).where(
                    ContactLink.workspace_id == workspace_id,
                    bulk.among(session, ContactLink.user_id, page.user_ids),
                )
            )
        }
    outs = _outs(eff, people, {u: m.hubspot_id for u, m in markers.items()}, counts)
    read_first = dry or source == "hubspot"
    existing: dict[str, SimplePublicObject] = {}
    if read_first and outs:
        existing = _read_by_email(hs, eff, outs)
        outs = _compare(outs, existing, source, counts)
    sent = Sent()
    list_id = eff.row.hubspot_list_id
    if dry:
        counts.list_adds += backfill_list.would_add(list_id, outs, markers)
    else:
        lead_status = eff.row.lead_status if "hs_lead_status" in eff.hubspot_properties else None
        write_contacts(hs, outs, sent, lead_status=lead_status)
        backfill_list.add_page(hs, list_id, outs, markers, sent)
    with session_scope(sessions) as session:
        leases.renew(session, ContactSyncRun, run_id, owner, lease_seconds)
        # Pages of one run commit concurrently: lock the run row for the read-modify-write.
        run = session.scalar(
            sa.select(ContactSyncRun).where(ContactSyncRun.id == run_id).with_for_update()
        )
        assert run is not None
        if not dry:
            if not read_first:
                _count_blind(outs, sent, counts)
            _store_links(session, eff, outs, existing, sent, counts)
        counts.add_to(run)
        frontier = IdFrontier.from_checkpoint(run.checkpoint)
        frontier.complete(page.lo, page.hi)
        run.checkpoint = frontier.to_checkpoint()


@dataclass
class _People:
    users: Sequence[UserValues]
    excluded: set[int]


# The columns mapping reads, as rows: no ORM objects to build and expunge per page.
_USER_VALUES = (
    User.id,
    User.external_id,
    User.custom,
    *(getattr(User, name) for name in STANDARD_FIELDS),
)


def _load(session: Session, eff: Effective, page: Page) -> _People:
    users = session.execute(
        sa.select(*_USER_VALUES)
        .where(bulk.among(session, User.id, page.user_ids), User.deleted_at.is_(None))
        .order_by(User.id)
    ).all()
    # The list rule (by-hand memberships don't count) is the real-time engine's own.
    excluded = set(exclusions(session, eff.row.send_list_ids, [u.id for u in users]))
    return _People(users, excluded)


def _outs(
    eff: Effective, people: _People, links: dict[int, str | None], counts: RunCounts
) -> list[Out]:
    outs: list[Out] = []
    seen: set[str] = set()
    for user in people.users:
        counts.done += 1
        email = (user.email or "").strip().lower()
        if user.id in people.excluded or not email or email in seen:
            counts.excluded += 1
            continue
        seen.add(email)
        desired = desired_properties(eff, user)
        send = {k: v for k, v in desired.items() if v != ""}  # a blank never overwrites
        outs.append(Out(user.id, user.external_id, email, links.get(user.id), send, desired))
    return outs


def _read_by_email(
    hs: BlockingClient, eff: Effective, outs: list[Out]
) -> dict[str, SimplePublicObject]:
    props = sorted({m.hubspot for m in eff.mappings} | {"email"})
    found = hs.call(
        lambda c: c.contacts.batch_read(
            [o.email for o in outs], properties=props, id_property="email"
        )
    )
    return {(c.properties.get("email") or "").lower(): c for c in found.results}


def _compare(
    outs: list[Out], existing: dict[str, SimplePublicObject], source: str, counts: RunCounts
) -> list[Out]:
    """Field by field against what HubSpot holds: creates, updates, conflicts, unchanged."""
    compared: list[Out] = []
    for out in outs:
        remote = existing.get(out.email)
        if remote is None:
            counts.created += 1
            compared.append(
                Out(out.user_id, out.external_id, out.email, None, out.props, out.desired)
            )
            continue
        counts.duplicates += 1
        send: dict[str, str] = {}
        for name, value in out.props.items():
            theirs = remote.properties.get(name) or ""
            if value == theirs:
                continue
            if theirs != "":
                counts.conflict(out.external_id, name, value, theirs, source)
                if source == "hubspot":
                    continue
            send[name] = value
        if send:
            counts.updated += 1
        else:
            counts.unchanged += 1
        compared.append(replace(out, hubspot_id=remote.id, props=send))
    return compared


def _count_blind(outs: list[Out], sent: Sent, counts: RunCounts) -> None:
    for out in outs:
        if out.user_id not in sent.ok:
            continue
        if sent.ok[out.user_id][1]:
            counts.created += 1
        else:
            counts.duplicates += 1
            counts.updated += 1


def _store_links(
    session: Session,
    eff: Effective,
    outs: list[Out],
    existing: dict[str, SimplePublicObject],
    sent: Sent,
    counts: RunCounts,
) -> None:
    now = utcnow()
    workspace_id = eff.row.workspace_id
    by_user = {
        link.user_id: link
        for link in session.scalars(
            sa.select(ContactLink).where(
                ContactLink.workspace_id == workspace_id,
                bulk.among(session, ContactLink.user_id, [o.user_id for o in outs]),
            )
        )
    }
    contact_ids = [sent.ok[o.user_id][0] for o in outs if o.user_id in sent.ok]
    contact_ids += [o.hubspot_id for o in outs if o.hubspot_id and not o.props]
    holders: dict[str | None, int] = dict(
        session.execute(  # (hubspot_id, user_id) pairs
            sa.select(ContactLink.hubspot_id, ContactLink.user_id).where(
                ContactLink.workspace_id == workspace_id,
                bulk.among(session, ContactLink.hubspot_id, contact_ids),
            )
        ).all()  # rows, not the Result: dict() would take its `keys()` for a mapping's
    )
    # New links are bulk-inserted after the loop: flushing them one ORM row at a time was
    # most of a page's time inside the write lock, which the pages in flight take in turn.
    # The usual new link (sent, in sync) is built as a row straight away: an ORM object per
    # user was most of the CPU a page cost.
    fresh: list[ContactLink | dict[str, Any]] = []  # in page order, as the ids were drawn
    for out in outs:
        link = by_user.get(out.user_id)
        contact_id = backfill_list.contact_of(out, sent)
        remote = existing.get(out.email)
        # What both sides now agree on: HubSpot's values where we sent nothing (if we read
        # them), ours where we sent; unread fields stay blank so a later HubSpot value flows in.
        agreed = {
            name: (remote.properties.get(name) or "") if remote else "" for name in out.desired
        }
        agreed.update(out.props)
        if (
            link is None
            and contact_id is not None
            and holders.get(contact_id, out.user_id) == out.user_id
            and out.user_id not in sent.list_failed
        ):
            row = new_link_row(workspace_id, out.user_id, contact_id, agreed, eff.row.version, now)
            if out.user_id in sent.listed:  # as `backfill_list.store` records it
                row["hubspot_list_id"] = sent.listed[out.user_id]
                counts.list_adds += 1
            holders[contact_id] = out.user_id
            fresh.append(row)
            continue
        if link is None:
            link = unsaved_link(workspace_id, out.user_id, now=now)
            fresh.append(link)
        if out.props and out.user_id not in sent.ok:
            reason = sent.failed.get(out.user_id, "not sent")
            counts.error(out.external_id, reason)
            record_failure(link, reason, now=now, transient=out.user_id in sent.transient)
            continue
        if contact_id is None:
            continue
        holder = holders.get(contact_id)
        if holder is not None and holder != out.user_id:
            link.state, link.reason = "excluded", "another user is linked to this contact"
            continue
        if link.hubspot_id != contact_id:
            link.hubspot_list_id = None  # the list held the old contact, not this one
        holders[contact_id] = out.user_id
        link.hubspot_id = contact_id
        link.snapshot = agreed
        record_success(link)
        link.last_synced_at = link.updated_at = now
        link.settings_version = eff.row.version
        backfill_list.store(link, out, sent, counts, now=now)
    session.flush()
    rows = [new if isinstance(new, dict) else row_of(new) for new in fresh]
    bulk.insert(session, table_of(ContactLink), rows)


__all__ = ["PAGE", "Page", "plan_pages", "process_page", "total"]
