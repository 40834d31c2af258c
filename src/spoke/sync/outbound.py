"""Outbound: Spoke users → HubSpot contacts, for a set of users the engine picked.

`plan_outbound` reads the users now and compares them with each link's snapshot, so only
differences go out; `send` talks to HubSpot (outside any transaction); `store_outbound`
records the results on the links. Linked contacts are updated by id (`batch/update`),
unlinked ones upserted by email (`batch/upsert`, ≤100, one input per email; the
first-created user wins a shared email). Every result is matched to its input; a refused
batch is halved until the bad record is isolated and marked failing with HubSpot's reason.

Besides properties the plan carries the tag notes (`notes`), archives (`propagate`) or
`spoke_deleted` marks (`soft`) for users deleted in Spoke, and additions to the settings'
HubSpot list (`contact_marks`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.hubspot import (
    BatchResult,
    BlockingClient,
    HubSpotError,
    HubSpotResponseError,
    ObjectUpdate,
    ObjectUpsert,
    UpsertedObject,
)
from spoke.sync import contact_marks
from spoke.sync import mapping as fm
from spoke.sync.links import (
    error_text,
    holder_of,
    is_transient,
    link_for,
    links_by_user,
    record_failure,
    record_success,
)
from spoke.sync.models import ContactLink
from spoke.sync.notes import send_notes, tags_note
from spoke.sync.selection import exclusions
from spoke.sync.settings import Effective
from spoke.users.models import STANDARD_FIELDS, User, UserTag

log = structlog.get_logger("spoke.sync")

BATCH = 100


@dataclass
class Out:
    """One user to send: what differs (`props`) and the full mapped state (`desired`)."""

    user_id: int
    external_id: str
    email: str
    hubspot_id: str | None
    props: dict[str, str]  # what to send
    desired: dict[str, str]  # the full mapped state, for the snapshot


@dataclass
class Plan:
    sends: list[Out] = field(default_factory=list)
    archive: list[tuple[int, str]] = field(default_factory=list)  # (user_id, hubspot id)
    mark_deleted: dict[int, str] = field(default_factory=dict)  # user -> hubspot id
    excluded: dict[int, str] = field(default_factory=dict)
    unchanged: list[int] = field(default_factory=list)
    # Tags travel as one HubSpot note per contact: user -> (body, hash, existing note id).
    notes: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)
    linked: dict[int, str] = field(default_factory=dict)  # user -> contact id, known now
    listed: set[int] = field(default_factory=set)  # already in the settings' HubSpot list


@dataclass
class Sent:
    """What HubSpot answered, by user."""

    ok: dict[int, tuple[str, bool]] = field(default_factory=dict)  # user -> (hubspot id, new)
    failed: dict[int, str] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)  # linked contact no longer exists
    notes: dict[int, tuple[str, str]] = field(default_factory=dict)  # user -> (note id, hash)
    archived: set[int] = field(default_factory=set)
    marked: set[int] = field(default_factory=set)  # `spoke_deleted` set
    listed: dict[int, str] = field(default_factory=dict)  # user -> HubSpot list id
    list_failed: dict[int, str] = field(default_factory=dict)
    transient: set[int] = field(default_factory=set)  # failed because HubSpot could not answer
    created_property: bool = False

    def fail(self, user_id: int, reason: str, exc: BaseException | None = None) -> None:
        self.failed[user_id] = reason
        if exc is not None and is_transient(exc):
            self.transient.add(user_id)


class UserValues(Protocol):
    """What mapping a user reads: a `User`, or a row of the same columns (a backfill page
    reads rows: building 100 ORM objects per page was a sixth of the worker's CPU)."""

    @property
    def id(self) -> int: ...
    @property
    def external_id(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def custom(self) -> dict[str, Any] | None: ...


def desired_properties(eff: Effective, user: UserValues) -> dict[str, str]:
    """The HubSpot properties a user maps to, constants included (email lowercased)."""
    profile = {name: getattr(user, name) for name in STANDARD_FIELDS}
    out = {
        m.hubspot: fm.to_hubspot(fm.read_user_value(m, profile, user.custom or {}), m.spoke_type)
        for m in eff.mappings
    }
    out["email"] = (user.email or "").strip().lower()
    out.update((eff.row.constants or {}).get("to_hubspot", {}))
    return out


def plan_outbound(session: Session, eff: Effective, user_ids: Sequence[int]) -> Plan:
    plan = Plan()
    if not user_ids:
        return plan
    workspace_id = eff.row.workspace_id
    rows = session.scalars(
        sa.select(User).where(User.workspace_id == workspace_id, User.id.in_(list(user_ids)))
    ).all()
    links = links_by_user(session, workspace_id, user_ids)
    kept_home = exclusions(session, eff.row.send_list_ids, [u.id for u in rows])
    tags: dict[int, dict[str, str]] = {}
    for user_id, key, value in session.execute(
        sa.select(UserTag.user_id, UserTag.key, UserTag.value).where(
            UserTag.user_id.in_(list(user_ids))
        )
    ):
        tags.setdefault(user_id, {})[key] = value
    seen_emails: dict[str, int] = {}
    for user in sorted(rows, key=lambda u: u.id):
        link = links.get(user.id)
        if user.deleted_at is not None:
            _plan_delete(plan, eff, user.id, link)
            continue
        if user.id in kept_home:
            plan.excluded[user.id] = kept_home[user.id]
            continue
        if not user.email:
            plan.excluded[user.id] = "no email address"
            continue
        email = user.email.strip().lower()
        if email in seen_emails:
            plan.excluded[user.id] = "another user with this email is synced"
            continue
        seen_emails[email] = user.id
        desired = desired_properties(eff, user)
        linked = link is not None and link.hubspot_id is not None
        snapshot = link.snapshot if link is not None and linked else {}
        props = {
            name: value
            for name, value in desired.items()
            if value != "" and value != snapshot.get(name)  # blanks never overwrite
        }
        if link is not None and linked and link.marked_deleted:
            props[contact_marks.DELETED_PROPERTY] = ""  # restored in Spoke: clear the mark
        body = tags_note(tags.get(user.id, {}))
        digest = hashlib.sha256(body.encode()).hexdigest()
        had_note = link is not None and link.note_id is not None
        if (tags.get(user.id) or had_note) and (link is None or link.note_hash != digest):
            plan.notes[user.id] = (body, digest, link.note_id if link is not None else None)
        if link is not None and link.hubspot_id:
            plan.linked[user.id] = link.hubspot_id
        wanted_list = eff.row.hubspot_list_id
        if link is not None and wanted_list is not None and link.hubspot_list_id == wanted_list:
            plan.listed.add(user.id)
        if link is not None and link.hubspot_id and not props:
            plan.unchanged.append(user.id)
            continue
        plan.sends.append(
            Out(user.id, user.external_id, email, link.hubspot_id if link else None, props, desired)
        )
    return plan


def _plan_delete(plan: Plan, eff: Effective, user_id: int, link: ContactLink | None) -> None:
    if link is None or link.hubspot_id is None:
        return
    policy = eff.row.delete_policy
    if policy == "propagate":
        plan.archive.append((user_id, link.hubspot_id))
    elif policy == "soft" and not link.marked_deleted:
        plan.mark_deleted[user_id] = link.hubspot_id


def send(hs: BlockingClient, plan: Plan, eff: Effective) -> Sent:
    sent = Sent()
    updates = [o for o in plan.sends if o.hubspot_id]
    upserts = [o for o in plan.sends if not o.hubspot_id]
    if any(contact_marks.DELETED_PROPERTY in o.props for o in updates):
        contact_marks.ensure_deleted_property(hs, eff, sent)
    for i in range(0, len(upserts), BATCH):
        upsert_split(hs, upserts[i : i + BATCH], sent)
    for i in range(0, len(updates), BATCH):
        update_split(hs, updates[i : i + BATCH], sent)
    status = eff.row.lead_status
    if status and "hs_lead_status" in eff.hubspot_properties:
        created = [sent.ok[o.user_id][0] for o in upserts if sent.ok.get(o.user_id, ("", False))[1]]
        if created:
            try:
                hs.call(
                    lambda c: c.contacts.batch_update(
                        [ObjectUpdate(id=i, properties={"hs_lead_status": status}) for i in created]
                    )
                )
            except HubSpotError:
                log.warning("sync.lead_status_failed", count=len(created), exc_info=True)
    if plan.notes:
        send_notes(hs, plan, sent)
    if eff.row.hubspot_list_id is not None:
        contact_marks.add_to_list(hs, eff.row.hubspot_list_id, _to_list(plan, sent), sent)
    if plan.archive:
        ids = [h for _, h in plan.archive]
        try:
            hs.call(lambda c: c.contacts.batch_archive(ids))
            sent.archived.update(u for u, _ in plan.archive)
        except HubSpotError as exc:
            for user_id, _ in plan.archive:
                sent.fail(user_id, f"archiving in HubSpot failed: {error_text(exc)}", exc)
    if plan.mark_deleted:
        contact_marks.mark_deleted(hs, eff, plan.mark_deleted, sent)
    return sent


def _to_list(plan: Plan, sent: Sent) -> dict[int, str]:
    """Contacts that synced now and are not yet in the settings' HubSpot list."""
    found = {
        user_id: hubspot_id
        for user_id, (hubspot_id, _) in sent.ok.items()
        if user_id not in plan.listed
    }
    for user_id in plan.unchanged:
        if user_id not in plan.listed and user_id in plan.linked:
            found[user_id] = plan.linked[user_id]
    return found


def upsert_split(hs: BlockingClient, items: list[Out], sent: Sent) -> None:
    """Upsert `items` by email; a refused batch is halved until the bad record is alone."""
    inputs = [ObjectUpsert(id=o.email, properties=o.props) for o in items]
    try:
        result: BatchResult[UpsertedObject] = hs.call(lambda c: c.contacts.batch_upsert(inputs))
    except HubSpotResponseError as exc:
        if len(items) > 1 and exc.status_code < 500 and exc.status_code != 429:
            half = len(items) // 2
            upsert_split(hs, items[:half], sent)
            upsert_split(hs, items[half:], sent)
            return
        for o in items:
            sent.fail(o.user_id, error_text(exc), exc)
        return
    except HubSpotError as exc:
        for o in items:
            sent.fail(o.user_id, error_text(exc), exc)
        return
    by_email = {(r.properties.get("email") or "").strip().lower(): r for r in result.results}
    reasons = {i.lower(): e.message for e in result.errors for i in e.ids}
    leftover: list[Out] = []
    for o in items:
        found = by_email.get(o.email)
        if found is not None:
            sent.ok[o.user_id] = (found.id, found.new)
        elif o.email in reasons:
            sent.failed[o.user_id] = reasons[o.email]
        else:
            leftover.append(o)
    if leftover:  # never trust a bare 2xx: anything unanswered is isolated and retried
        if len(leftover) < len(items):
            for i in range(0, len(leftover)):
                upsert_split(hs, leftover[i : i + 1], sent)
        else:
            message = "; ".join(e.message for e in result.errors) or "HubSpot returned no result"
            for o in leftover:
                if len(items) > 1:
                    upsert_split(hs, [o], sent)
                else:
                    sent.failed[o.user_id] = message


def update_split(hs: BlockingClient, items: list[Out], sent: Sent) -> None:
    """Update linked contacts by id; a refused batch is halved like `upsert_split`."""
    inputs = [ObjectUpdate(id=str(o.hubspot_id), properties=o.props) for o in items]
    try:
        result = hs.call(lambda c: c.contacts.batch_update(inputs))
    except HubSpotResponseError as exc:
        if len(items) > 1 and exc.status_code < 500 and exc.status_code != 429:
            half = len(items) // 2
            update_split(hs, items[:half], sent)
            update_split(hs, items[half:], sent)
            return
        for o in items:
            if exc.status_code == 404:
                sent.gone.add(o.user_id)
            else:
                sent.fail(o.user_id, error_text(exc), exc)
        return
    except HubSpotError as exc:
        for o in items:
            sent.fail(o.user_id, error_text(exc), exc)
        return
    by_id = {r.id: r for r in result.results}
    errors = {i: e for e in result.errors for i in e.ids}
    for o in items:
        hid = str(o.hubspot_id)
        if hid in by_id:
            sent.ok[o.user_id] = (hid, False)
        elif hid in errors and errors[hid].category == "OBJECT_NOT_FOUND":
            sent.gone.add(o.user_id)
        elif hid in errors:
            sent.failed[o.user_id] = errors[hid].message
        elif len(items) > 1:
            update_split(hs, [o], sent)
        else:
            sent.failed[o.user_id] = "HubSpot returned no result"


def store_outbound(session: Session, eff: Effective, plan: Plan, sent: Sent) -> None:
    """Record on the links what `send` achieved (in the transaction that moves the cursor)."""
    workspace_id, version = eff.row.workspace_id, eff.row.version
    now = utcnow()
    for user_id, reason in plan.excluded.items():
        link = link_for(session, workspace_id, user_id)
        link.state, link.reason, link.updated_at = "excluded", reason, now
        link.next_attempt_at = None
    for out in plan.sends:
        link = link_for(session, workspace_id, out.user_id)
        link.updated_at = now
        if out.user_id in sent.ok:
            hubspot_id, _ = sent.ok[out.user_id]
            holder = holder_of(session, workspace_id, hubspot_id)
            if holder is not None and holder.user_id != out.user_id:
                link.state, link.reason = "excluded", "another user is linked to this contact"
                link.next_attempt_at = None
                continue
            if link.hubspot_id is None:
                link.matched_by = "email"
            elif link.hubspot_id != hubspot_id:
                link.hubspot_list_id = None
            link.hubspot_id = hubspot_id
            props = {k: v for k, v in out.props.items() if k != contact_marks.DELETED_PROPERTY}
            link.snapshot = {**(link.snapshot or {}), **props}
            link.marked_deleted = False
            record_success(link)
            link.last_synced_at = now
            link.settings_version = version
        elif out.user_id in sent.gone:
            link.hubspot_id = None
            link.hubspot_list_id = None
            link.snapshot = {}
            link.marked_deleted = False
            record_failure(link, "the HubSpot contact was deleted or merged away", now=now)
        else:
            reason = sent.failed.get(out.user_id, "not sent")
            record_failure(link, reason, now=now, transient=out.user_id in sent.transient)
        session.flush()
    for user_id, (note_id, digest) in sent.notes.items():
        link = link_for(session, workspace_id, user_id)
        link.note_id, link.note_hash = note_id, digest
    _store_unchanged(session, workspace_id, plan, sent)
    _store_list_adds(session, workspace_id, sent, now)
    for user_id, _ in plan.archive:
        link = link_for(session, workspace_id, user_id)
        if user_id in sent.archived:
            link.hubspot_id, link.snapshot, link.hubspot_list_id = None, {}, None
            link.state, link.reason = "excluded", "deleted in Spoke; archived in HubSpot"
            link.next_attempt_at = None
        else:
            reason = sent.failed.get(user_id, "not archived")
            record_failure(link, reason, now=now, transient=user_id in sent.transient)
        link.updated_at = now
    for user_id in plan.mark_deleted:
        link = link_for(session, workspace_id, user_id)
        if user_id in sent.marked:
            link.marked_deleted = True
            link.state = "excluded"
            link.reason = "deleted in Spoke; marked spoke_deleted in HubSpot"
            link.next_attempt_at = None
        else:
            reason = sent.failed.get(user_id, "not marked deleted")
            record_failure(link, reason, now=now, transient=user_id in sent.transient)
        link.updated_at = now
    if sent.created_property:
        contact_marks.remember_deleted_property(session, workspace_id)
    session.flush()


def _store_unchanged(session: Session, workspace_id: str, plan: Plan, sent: Sent) -> None:
    """A failing record found to have nothing left to send: an outbound failure is over; a
    HubSpot value Spoke refused (`from HubSpot: …`) stays failing, but retrying from this
    side cannot fix it, so no automatic retry is scheduled."""
    for user_id in plan.unchanged:
        if user_id in sent.list_failed:
            continue
        link = link_for(session, workspace_id, user_id)
        if link.state != "failing":
            continue
        if (link.reason or "").startswith("from HubSpot"):
            link.next_attempt_at = None
        else:
            record_success(link)


def _store_list_adds(session: Session, workspace_id: str, sent: Sent, now: datetime) -> None:
    for user_id, list_id in sent.listed.items():
        link = link_for(session, workspace_id, user_id)
        link.hubspot_list_id = list_id
        if link.state == "failing" and user_id not in sent.failed and user_id not in sent.gone:
            record_success(link)  # the list add was all that was left to do
    for user_id, reason in sent.list_failed.items():
        link = link_for(session, workspace_id, user_id)
        record_failure(link, reason, now=now, transient=user_id in sent.transient)


__all__ = [
    "BATCH",
    "Out",
    "Plan",
    "Sent",
    "plan_outbound",
    "send",
    "store_outbound",
    "update_split",
    "upsert_split",
]
