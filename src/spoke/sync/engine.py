"""The real-time contact sync engine of one workspace.

One job, `sync.run`, does all the moving for a workspace, under a short lease on its
settings row so that exactly one worker at a time touches that workspace's links:

1. **Inbound.** Verified webhook batches (`hubspot_webhook_batches`) name contact ids. The
   engine batch-reads the contacts' current state from HubSpot (never trusting the payload's
   values) and applies what differs from the link's snapshot through `users.service.
   write_users` with origin `sync.hubspot`.
2. **Outbound.** The users change feed is read from the workspace's cursor (`cursor_seq`).
   Changes whose origin is this sync are skipped (the loop gate). For the other users the
   values are read now, compared with the snapshot, and only what differs is sent: linked
   contacts by id (`batch/update`), unlinked ones by email (`batch/upsert`, ≤100, one input
   per email). Every result is checked against its input; a refused batch is split in
   halves until the bad record is isolated, and that record is marked failing with
   HubSpot's reason. The cursor moves only after the results are stored.

Echo: a value we wrote is in the snapshot, so when HubSpot reports it back (or our own
inbound write shows up in the feed) nothing differs and nothing is written. Writes made
with the OAuth app's token carry our app id as `sourceId` and are dropped before any read.

HubSpot calls happen outside database transactions; each step's results commit together
with the cursor or the batch marks, so a killed worker repeats at most one step, and
repeating a step is harmless because the writes are by key and the comparison is against
the snapshot.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.connections import service as connections
from spoke.connections.models import HubSpotConnection
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import rowcount, session_scope
from spoke.hubspot import (
    AssociationInput,
    BatchResult,
    BlockingClient,
    Filter,
    FilterGroup,
    FilterOperator,
    HubSpotClient,
    HubSpotError,
    HubSpotResponseError,
    ObjectCreate,
    ObjectUpdate,
    ObjectUpsert,
    SearchRequest,
    SimplePublicObject,
    UpsertedObject,
)
from spoke.sync import mapping as fm
from spoke.sync.models import (
    ContactLink,
    ContactSyncRun,
    ContactSyncSettings,
    HubSpotWebhookBatch,
)
from spoke.sync.settings import Effective, effective
from spoke.users import lists as user_lists
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.changes import feed as read_feed
from spoke.users.models import STANDARD_FIELDS, ListMembership, User, UserList, UserTag
from spoke.users.schemas import UserFields
from spoke.workspaces.models import Workspace

log = structlog.get_logger("spoke.sync")

ORIGIN = "sync.hubspot"
LEASE_SECONDS = 60.0
FEED_PAGE = 500
BATCH = 100
WEBHOOK_BATCHES_PER_STEP = 50
MAX_RETRIES = 10
MAX_CONFLICTS_KEPT = 20
NOTE_TO_CONTACT = 202  # HubSpot-defined association type: note → contact
RECONCILE_LOOKBACK_MS = 5 * 60 * 1000


def manual_run_active(session: Session, workspace_id: str) -> bool:
    return (
        session.scalar(
            sa.select(ContactSyncRun.id)
            .where(
                ContactSyncRun.workspace_id == workspace_id,
                ContactSyncRun.status.in_(("queued", "running")),
            )
            .limit(1)
        )
        is not None
    )


# -- the lease ---------------------------------------------------------------------------------


def _claim(session: Session, workspace_id: str, owner: str) -> bool:
    now = utcnow()
    table = ContactSyncSettings.__table__
    result = session.execute(
        sa.update(ContactSyncSettings)
        .where(
            ContactSyncSettings.workspace_id == workspace_id,
            sa.or_(
                ContactSyncSettings.push_owner.is_(None),
                ContactSyncSettings.push_expires_at < now,
                ContactSyncSettings.push_owner == owner,
            ),
        )
        .values(push_owner=owner, push_expires_at=now + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    )
    del table
    return rowcount(result) == 1


def _renew(session: Session, workspace_id: str, owner: str) -> bool:
    result = session.execute(
        sa.update(ContactSyncSettings)
        .where(
            ContactSyncSettings.workspace_id == workspace_id,
            ContactSyncSettings.push_owner == owner,
        )
        .values(push_expires_at=utcnow() + timedelta(seconds=LEASE_SECONDS))
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def _release(session: Session, workspace_id: str, owner: str) -> None:
    session.execute(
        sa.update(ContactSyncSettings)
        .where(
            ContactSyncSettings.workspace_id == workspace_id,
            ContactSyncSettings.push_owner == owner,
        )
        .values(push_owner=None, push_expires_at=None)
        .execution_options(synchronize_session=False)
    )


class LeaseLost(Exception):
    """Another worker holds this workspace's sync now; stop without writing."""


@dataclass
class Engine:
    """One `sync.run` of one workspace."""

    sessions: sessionmaker[Session]
    settings: Settings
    encryptor: Encryptor
    workspace_id: str
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)

    def run(self) -> bool:
        """Drain inbound batches and the outbound feed. Returns True when work is left
        (another run holds the lease, or more arrived meanwhile): enqueue again."""
        with session_scope(self.sessions) as session:
            row = session.get(ContactSyncSettings, self.workspace_id)
            conn = session.get(HubSpotConnection, self.workspace_id)
            if row is None or conn is None or conn.status != "connected":
                return False
            if not _claim(session, self.workspace_id, self.owner):
                return False  # the holder re-checks for work after releasing
        try:
            self._drain()
        finally:
            with session_scope(self.sessions) as session:
                _release(session, self.workspace_id, self.owner)
        return self.has_work()

    def has_work(self) -> bool:
        with session_scope(self.sessions) as session:
            row = session.get(ContactSyncSettings, self.workspace_id)
            if row is None or row.state != "active":
                return False
            if manual_run_active(session, self.workspace_id):
                return False
            top = session.scalar(
                sa.select(Workspace.change_seq).where(Workspace.id == self.workspace_id)
            )
            pending = session.scalar(
                sa.select(HubSpotWebhookBatch.id)
                .where(
                    HubSpotWebhookBatch.workspace_id == self.workspace_id,
                    HubSpotWebhookBatch.processed_at.is_(None),
                )
                .limit(1)
            )
            return bool((top or 0) > row.cursor_seq or pending is not None)

    def _drain(self) -> None:
        with connections.open_client(
            self.sessions, self.settings, self.encryptor, self.workspace_id
        ) as hs:
            while True:
                moved_in = self._inbound_step(hs)
                moved_out = self._outbound_step(hs)
                if not moved_in and not moved_out:
                    return

    def _lease(self, session: Session) -> None:
        if not _renew(session, self.workspace_id, self.owner):
            raise LeaseLost(f"sync lease of {self.workspace_id} was taken over")

    def _load(self, session: Session) -> tuple[ContactSyncSettings, Effective, int] | None:
        row = session.get(ContactSyncSettings, self.workspace_id)
        conn = session.get(HubSpotConnection, self.workspace_id)
        if row is None or conn is None or conn.status != "connected" or row.state != "active":
            return None
        if manual_run_active(session, self.workspace_id):
            return None  # `syncing`: real-time changes wait for the manual run
        return row, effective(session, row), conn.app_id or self.settings.hubspot.app_id or 0

    # -- reconcile -----------------------------------------------------------------------------

    def reconcile(self) -> int:
        """Re-read contacts HubSpot modified since the last reconcile (minus a look-back for
        search lag) and apply what differs: catches whatever webhooks missed. Returns how
        many contacts were read; 0 when another run holds the workspace."""
        with session_scope(self.sessions) as session:
            loaded = self._load(session)
            if loaded is None or not loaded[1].receives:
                return 0
            if not _claim(session, self.workspace_id, self.owner):
                return 0
            row = loaded[0]
            started_ms = int(utcnow().timestamp() * 1000)
            since = (row.reconcile_from_ms or started_ms) - RECONCILE_LOOKBACK_MS
            props = sorted({m.hubspot for m in loaded[1].mappings} | {"email"})
        read = 0
        try:
            request = SearchRequest(
                filter_groups=[
                    FilterGroup(
                        filters=[
                            Filter(
                                property_name="lastmodifieddate",
                                operator=FilterOperator.GTE,
                                value=str(since),
                            )
                        ]
                    )
                ],
                properties=props,
                limit=200,
            )
            with connections.open_client(
                self.sessions, self.settings, self.encryptor, self.workspace_id
            ) as hs:
                chunk: list[SimplePublicObject] = []
                for contact in hs.iterate(lambda c: c.contacts.search_all(request)):
                    chunk.append(contact)
                    if len(chunk) == BATCH:
                        self._apply_chunk(chunk)
                        read += len(chunk)
                        chunk = []
                if chunk:
                    self._apply_chunk(chunk)
                    read += len(chunk)
            with session_scope(self.sessions) as session:
                self._lease(session)
                settings_row = session.get(ContactSyncSettings, self.workspace_id)
                assert settings_row is not None
                # Never past the start of this pass: later changes are the next pass's.
                settings_row.reconcile_from_ms = started_ms
        finally:
            with session_scope(self.sessions) as session:
                _release(session, self.workspace_id, self.owner)
        return read

    def _apply_chunk(self, contacts: list[SimplePublicObject]) -> None:
        with session_scope(self.sessions) as session:
            self._lease(session)
            loaded = self._load(session)
            if loaded is not None:
                _apply_inbound(session, loaded[1], contacts)

    # -- outbound ------------------------------------------------------------------------------

    def _outbound_step(self, hs: BlockingClient) -> bool:
        with session_scope(self.sessions) as session:
            loaded = self._load(session)
            if loaded is None:
                return False
            row, eff, _ = loaded
            changes = read_feed(
                session, self.workspace_id, after_seq=row.cursor_seq, limit=FEED_PAGE
            )
            retry_ids = _failing_user_ids(session, self.workspace_id) if eff.sends else []
            if not changes and not retry_ids:
                return False
            end_seq = changes[-1].seq if changes else row.cursor_seq
            if not eff.sends:
                self._lease(session)
                row.cursor_seq = end_seq
                return True
            wanted = list(
                dict.fromkeys([c.user_id for c in changes if c.origin != ORIGIN] + list(retry_ids))
            )
            plan = _plan_outbound(session, eff, wanted)
        sent = _send(hs, plan, eff)
        with session_scope(self.sessions) as session:
            self._lease(session)
            _store_outbound(session, self.workspace_id, eff.row.version, plan, sent)
            row2 = session.get(ContactSyncSettings, self.workspace_id)
            assert row2 is not None
            row2.cursor_seq = max(row2.cursor_seq, end_seq)
        return bool(changes)

    # -- inbound -------------------------------------------------------------------------------

    def _inbound_step(self, hs: BlockingClient) -> bool:
        with session_scope(self.sessions) as session:
            loaded = self._load(session)
            if loaded is None:
                return False
            _, eff, app_id = loaded
            batches = session.scalars(
                sa.select(HubSpotWebhookBatch)
                .where(
                    HubSpotWebhookBatch.workspace_id == self.workspace_id,
                    HubSpotWebhookBatch.processed_at.is_(None),
                )
                .order_by(HubSpotWebhookBatch.id)
                .limit(WEBHOOK_BATCHES_PER_STEP)
            ).all()
            if not batches:
                return False
            batch_ids = [b.id for b in batches]
            events = [e for b in batches for e in b.events]
            work = _inbound_work(events, app_id) if eff.receives else _InboundWork()
            props = sorted({m.hubspot for m in eff.mappings} | {"email"})
        contacts: list[SimplePublicObject] = []
        if work.read_ids:
            result = hs.call(
                lambda c: c.contacts.batch_read(sorted(work.read_ids), properties=props)
            )
            contacts = result.results
        with session_scope(self.sessions) as session:
            self._lease(session)
            loaded = self._load(session)
            if loaded is not None and eff.receives:
                _, eff, _ = loaded
                _apply_merges(session, self.workspace_id, work.merges)
                _apply_inbound(session, eff, contacts)
                _apply_deletes(session, eff, work.deleted, work.restored)
            session.execute(
                sa.update(HubSpotWebhookBatch)
                .where(
                    HubSpotWebhookBatch.id.in_(batch_ids),
                    HubSpotWebhookBatch.processed_at.is_(None),
                )
                .values(processed_at=utcnow())
                .execution_options(synchronize_session=False)
            )
        return True


# -- outbound helpers --------------------------------------------------------------------------


@dataclass
class _Out:
    user_id: int
    external_id: str
    email: str
    hubspot_id: str | None
    props: dict[str, str]  # what to send
    desired: dict[str, str]  # the full mapped state, for the snapshot


@dataclass
class _Plan:
    sends: list[_Out] = field(default_factory=list)
    archive: list[tuple[int, str]] = field(default_factory=list)  # (user_id, hubspot id)
    excluded: dict[int, str] = field(default_factory=dict)
    unchanged: list[int] = field(default_factory=list)
    # Tags travel as one HubSpot note per contact: user -> (body, hash, existing note id).
    notes: dict[int, tuple[str, str, str | None]] = field(default_factory=dict)
    linked: dict[int, str] = field(default_factory=dict)  # user -> contact id, known now


@dataclass
class _Sent:
    ok: dict[int, tuple[str, bool]] = field(default_factory=dict)  # user -> (hubspot id, new)
    failed: dict[int, str] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)  # linked contact no longer exists
    notes: dict[int, tuple[str, str]] = field(default_factory=dict)  # user -> (note id, hash)
    archived: set[int] = field(default_factory=set)


def _failing_user_ids(session: Session, workspace_id: str) -> list[int]:
    return list(
        session.scalars(
            sa.select(ContactLink.user_id)
            .where(
                ContactLink.workspace_id == workspace_id,
                ContactLink.state == "failing",
                ContactLink.failures < MAX_RETRIES,
            )
            .order_by(ContactLink.id)
            .limit(BATCH)
        )
    )


def _links_by_user(
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


def _plan_outbound(session: Session, eff: Effective, user_ids: Sequence[int]) -> _Plan:
    plan = _Plan()
    if not user_ids:
        return plan
    workspace_id = eff.row.workspace_id
    rows = session.scalars(
        sa.select(User).where(User.workspace_id == workspace_id, User.id.in_(list(user_ids)))
    ).all()
    links = _links_by_user(session, workspace_id, user_ids)
    members: set[int] | None = None
    if eff.row.send_list_ids is not None:
        members = set(
            session.scalars(
                sa.select(ListMembership.user_id).where(
                    ListMembership.list_id.in_(eff.row.send_list_ids),
                    ListMembership.user_id.in_(list(user_ids)),
                )
            )
        )
    constants: dict[str, str] = dict((eff.row.constants or {}).get("to_hubspot", {}))
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
            if eff.row.delete_policy == "propagate" and link and link.hubspot_id:
                plan.archive.append((user.id, link.hubspot_id))
            continue
        if members is not None and user.id not in members:
            plan.excluded[user.id] = "not in a list selected for sync"
            continue
        if not user.email:
            plan.excluded[user.id] = "no email address"
            continue
        email = user.email.strip().lower()
        if email in seen_emails:
            plan.excluded[user.id] = "another user with this email is synced"
            continue
        seen_emails[email] = user.id
        profile = {name: getattr(user, name) for name in STANDARD_FIELDS}
        desired = {
            m.hubspot: fm.to_hubspot(
                fm.read_user_value(m, profile, user.custom or {}), m.spoke_type
            )
            for m in eff.mappings
        }
        desired["email"] = email
        desired.update(constants)
        snapshot = link.snapshot if link is not None and link.hubspot_id else {}
        props = {
            name: value
            for name, value in desired.items()
            if value != "" and value != snapshot.get(name)  # blanks never overwrite
        }
        body = tags_note(tags.get(user.id, {}))
        digest = hashlib.sha256(body.encode()).hexdigest()
        had_note = link is not None and link.note_id is not None
        if (tags.get(user.id) or had_note) and (link is None or link.note_hash != digest):
            plan.notes[user.id] = (body, digest, link.note_id if link is not None else None)
        if link is not None and link.hubspot_id:
            plan.linked[user.id] = link.hubspot_id
        if link is not None and link.hubspot_id and not props:
            plan.unchanged.append(user.id)
            continue
        plan.sends.append(
            _Out(
                user.id, user.external_id, email, link.hubspot_id if link else None, props, desired
            )
        )
    return plan


def tags_note(tags: dict[str, str]) -> str:
    """The body of the HubSpot note that mirrors a user's tags."""
    if not tags:
        return "Spoke tags: (none)"
    return "Spoke tags: " + ", ".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _create_notes(
    hs: BlockingClient, inputs: list[ObjectCreate]
) -> BatchResult[SimplePublicObject]:
    return hs.call(lambda c: c.notes.batch_create(inputs))


def _update_notes(
    hs: BlockingClient, inputs: list[ObjectUpdate]
) -> BatchResult[SimplePublicObject]:
    return hs.call(lambda c: c.notes.batch_update(inputs))


def _send_notes(hs: BlockingClient, plan: _Plan, sent: _Sent) -> None:
    creates: list[tuple[int, str, str, str]] = []  # user, contact, body, hash
    updates: list[tuple[int, str, str, str]] = []  # user, note, body, hash
    for user_id, (body, digest, note_id) in plan.notes.items():
        contact_id = sent.ok[user_id][0] if user_id in sent.ok else plan.linked.get(user_id)
        if contact_id is None or user_id in sent.failed or user_id in sent.gone:
            continue
        if note_id is None:
            creates.append((user_id, contact_id, body, digest))
        else:
            updates.append((user_id, note_id, body, digest))
    stamp = utcnow().isoformat()
    for i in range(0, len(creates), BATCH):
        chunk = creates[i : i + BATCH]
        inputs = [
            ObjectCreate(
                properties={"hs_note_body": body, "hs_timestamp": stamp},
                associations=[AssociationInput.to_id(contact_id, NOTE_TO_CONTACT)],
                object_write_trace_id=str(user_id),
            )
            for user_id, contact_id, body, _ in chunk
        ]
        try:
            created = _create_notes(hs, inputs)
        except HubSpotError:
            log.warning("sync.notes_failed", count=len(chunk), exc_info=True)
            continue
        by_trace = {r.object_write_trace_id: r.id for r in created.results}
        for user_id, _, _, digest in chunk:
            note_id = by_trace.get(str(user_id))
            if note_id is not None:
                sent.notes[user_id] = (note_id, digest)
    for i in range(0, len(updates), BATCH):
        chunk = updates[i : i + BATCH]
        changes = [
            ObjectUpdate(id=note_id, properties={"hs_note_body": body})
            for _, note_id, body, _ in chunk
        ]
        try:
            done = _update_notes(hs, changes)
        except HubSpotError:
            log.warning("sync.notes_failed", count=len(chunk), exc_info=True)
            continue
        ok = {r.id for r in done.results}
        for user_id, note_id, _, digest in chunk:
            if note_id in ok:
                sent.notes[user_id] = (note_id, digest)


def _error_text(exc: Exception) -> str:
    return str(exc)[:500] or type(exc).__name__


def _send(hs: BlockingClient, plan: _Plan, eff: Effective) -> _Sent:
    sent = _Sent()
    updates = [o for o in plan.sends if o.hubspot_id]
    upserts = [o for o in plan.sends if not o.hubspot_id]
    for i in range(0, len(upserts), BATCH):
        _upsert_split(hs, upserts[i : i + BATCH], sent)
    for i in range(0, len(updates), BATCH):
        _update_split(hs, updates[i : i + BATCH], sent)
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
        _send_notes(hs, plan, sent)
    if plan.archive:
        ids = [h for _, h in plan.archive]
        try:
            hs.call(lambda c: c.contacts.batch_archive(ids))
            sent.archived.update(u for u, _ in plan.archive)
        except HubSpotError as exc:
            for user_id, _ in plan.archive:
                sent.failed[user_id] = f"archiving in HubSpot failed: {_error_text(exc)}"
    return sent


def _upsert_split(hs: BlockingClient, items: list[_Out], sent: _Sent) -> None:
    inputs = [ObjectUpsert(id=o.email, properties=o.props) for o in items]
    try:
        result: BatchResult[UpsertedObject] = hs.call(lambda c: c.contacts.batch_upsert(inputs))
    except HubSpotResponseError as exc:
        if len(items) > 1 and exc.status_code < 500 and exc.status_code != 429:
            half = len(items) // 2
            _upsert_split(hs, items[:half], sent)
            _upsert_split(hs, items[half:], sent)
            return
        for o in items:
            sent.failed[o.user_id] = _error_text(exc)
        return
    except HubSpotError as exc:
        for o in items:
            sent.failed[o.user_id] = _error_text(exc)
        return
    by_email = {(r.properties.get("email") or "").strip().lower(): r for r in result.results}
    reasons = {i.lower(): e.message for e in result.errors for i in e.ids}
    leftover: list[_Out] = []
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
                _upsert_split(hs, leftover[i : i + 1], sent)
        else:
            message = "; ".join(e.message for e in result.errors) or "HubSpot returned no result"
            for o in leftover:
                if len(items) > 1:
                    _upsert_split(hs, [o], sent)
                else:
                    sent.failed[o.user_id] = message


def _update_split(hs: BlockingClient, items: list[_Out], sent: _Sent) -> None:
    inputs = [ObjectUpdate(id=str(o.hubspot_id), properties=o.props) for o in items]
    try:
        result = hs.call(lambda c: c.contacts.batch_update(inputs))
    except HubSpotResponseError as exc:
        if len(items) > 1 and exc.status_code < 500 and exc.status_code != 429:
            half = len(items) // 2
            _update_split(hs, items[:half], sent)
            _update_split(hs, items[half:], sent)
            return
        for o in items:
            if exc.status_code == 404:
                sent.gone.add(o.user_id)
            else:
                sent.failed[o.user_id] = _error_text(exc)
        return
    except HubSpotError as exc:
        for o in items:
            sent.failed[o.user_id] = _error_text(exc)
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
            _update_split(hs, [o], sent)
        else:
            sent.failed[o.user_id] = "HubSpot returned no result"


def _link(session: Session, workspace_id: str, user_id: int) -> ContactLink:
    found = session.scalar(
        sa.select(ContactLink).where(
            ContactLink.workspace_id == workspace_id, ContactLink.user_id == user_id
        )
    )
    if found is None:
        found = ContactLink(
            workspace_id=workspace_id,
            user_id=user_id,
            snapshot={},
            conflicts=[],
            failures=0,
            state="in_sync",
            updated_at=utcnow(),
        )
        session.add(found)
    return found


def _holder_of(session: Session, workspace_id: str, hubspot_id: str) -> ContactLink | None:
    return session.scalar(
        sa.select(ContactLink).where(
            ContactLink.workspace_id == workspace_id, ContactLink.hubspot_id == hubspot_id
        )
    )


def _store_outbound(
    session: Session, workspace_id: str, version: int, plan: _Plan, sent: _Sent
) -> None:
    now = utcnow()
    for user_id, reason in plan.excluded.items():
        link = _link(session, workspace_id, user_id)
        link.state, link.reason, link.updated_at = "excluded", reason, now
    for out in plan.sends:
        link = _link(session, workspace_id, out.user_id)
        link.updated_at = now
        if out.user_id in sent.ok:
            hubspot_id, _ = sent.ok[out.user_id]
            holder = _holder_of(session, workspace_id, hubspot_id)
            if holder is not None and holder.user_id != out.user_id:
                link.state, link.reason = "excluded", "another user is linked to this contact"
                continue
            if link.hubspot_id is None:
                link.matched_by = "email"
            link.hubspot_id = hubspot_id
            link.snapshot = {**(link.snapshot or {}), **out.props}
            link.state, link.reason, link.failures = "in_sync", None, 0
            link.last_synced_at = now
            link.settings_version = version
        elif out.user_id in sent.gone:
            link.hubspot_id = None
            link.snapshot = {}
            link.state, link.reason = "failing", "the HubSpot contact was deleted or merged away"
            link.failures += 1
        else:
            link.state = "failing"
            link.reason = sent.failed.get(out.user_id, "not sent")
            link.failures += 1
        session.flush()
    for user_id, (note_id, digest) in sent.notes.items():
        link = _link(session, workspace_id, user_id)
        link.note_id, link.note_hash = note_id, digest
    for user_id, _ in plan.archive:
        link = _link(session, workspace_id, user_id)
        if user_id in sent.archived:
            link.hubspot_id, link.snapshot = None, {}
            link.state, link.reason = "excluded", "deleted in Spoke; archived in HubSpot"
        else:
            link.state, link.reason = "failing", sent.failed.get(user_id, "not archived")
            link.failures += 1
        link.updated_at = now
    session.flush()


# -- inbound helpers ---------------------------------------------------------------------------


@dataclass
class _InboundWork:
    read_ids: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    restored: set[str] = field(default_factory=set)
    merges: list[tuple[str, list[str]]] = field(default_factory=list)  # (survivor, merged ids)
    dropped_echoes: int = 0


def _inbound_work(events: Iterable[dict[str, Any]], app_id: int) -> _InboundWork:
    work = _InboundWork()
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


def _apply_merges(session: Session, workspace_id: str, merges: list[tuple[str, list[str]]]) -> None:
    for survivor, merged in merges:
        holder = _holder_of(session, workspace_id, survivor)
        for old in merged:
            link = _holder_of(session, workspace_id, old)
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


def _apply_inbound(
    session: Session, eff: Effective, contacts: Sequence[SimplePublicObject]
) -> None:
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
    linked_users = _links_by_user(session, workspace_id, [u.id for u in by_email.values()])
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
    created_ids: list[str] = []
    now = utcnow()
    for (item, link, agreed, creating, contact_id), outcome in zip(pending, outcomes, strict=True):
        if outcome.error is not None:
            _mark_failing(session, link, contact_id, None, outcome.error.detail)
            continue
        if link.user_id == 0:
            user_id = session.scalar(
                sa.select(User.id).where(
                    User.workspace_id == workspace_id, User.external_id == item.external_id
                )
            )
            assert user_id is not None
            link.user_id = user_id
            session.add(link)
        link.hubspot_id = contact_id
        link.snapshot = {**(link.snapshot or {}), **agreed}
        link.state, link.reason, link.failures = "in_sync", None, 0
        link.last_synced_at = now
        link.settings_version = eff.row.version
        link.updated_at = now
        if creating:
            created_ids.append(item.external_id)
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
    link.state, link.reason = "failing", f"from HubSpot: {reason}"[:1000]
    link.failures += 1
    link.updated_at = utcnow()
    session.flush()


def _apply_deletes(session: Session, eff: Effective, deleted: set[str], restored: set[str]) -> None:
    if not deleted and not restored:
        return
    workspace_id = eff.row.workspace_id
    policy = eff.row.delete_policy
    origin = Origin(workspace_id, ORIGIN, "hubspot:delete")
    for hubspot_id in sorted(deleted | restored):
        link = _holder_of(session, workspace_id, hubspot_id)
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
        link.updated_at = utcnow()
    session.flush()


__all__ = ["ORIGIN", "Engine", "HubSpotClient", "LeaseLost"]
