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

The pieces live by idea: `inbound` (applying HubSpot's contacts, merges, deletes),
`outbound` (planning, sending, storing; `notes` for tags, `contact_marks` for the HubSpot
list and soft-delete marks), `selection` (which users are sent), `links` (failure
bookkeeping and backoff), `webhooks` (due and parked batches). This module keeps the loop.

HubSpot calls happen outside database transactions; each step's results commit together
with the cursor or the batch marks, so a killed worker repeats at most one step, and
repeating a step is harmless because the writes are by key and the comparison is against
the snapshot.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.connections import service as connections
from spoke.connections.models import HubSpotConnection
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import rowcount, session_scope
from spoke.hubspot import (
    BlockingClient,
    Filter,
    FilterGroup,
    FilterOperator,
    HubSpotClient,
    SearchRequest,
    SimplePublicObject,
)
from spoke.sync import webhooks
from spoke.sync.inbound import (
    ORIGIN,
    InboundWork,
    apply_deletes,
    apply_inbound,
    apply_merges,
    inbound_work,
    validated,
)
from spoke.sync.links import due_retry_user_ids, link_for
from spoke.sync.models import ContactSyncRun, ContactSyncSettings, HubSpotWebhookBatch
from spoke.sync.outbound import BATCH, Out, Sent, plan_outbound, send, store_outbound, upsert_split
from spoke.sync.settings import Effective, effective
from spoke.users.changes import feed as read_feed
from spoke.workspaces.models import Workspace

log = structlog.get_logger("spoke.sync")

LEASE_SECONDS = 60.0
FEED_PAGE = 500
WEBHOOK_BATCHES_PER_STEP = 50
RECONCILE_LOOKBACK_MS = 5 * 60 * 1000

# runs.py (manual sync) uses these under their historical names.
_link = link_for
_Out = Out
_Sent = Sent
_upsert_split = upsert_split


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
            # Paused, or a manual run under way: nothing would move (`_load`), so neither
            # the lease nor a HubSpot client is worth taking. A manual run's page commits
            # enqueue this job for every batch of users they write; the run enqueues it
            # once more when it ends, and what waited drains then.
            if self._ready(session) is None:
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
                    webhooks.pending_clause(utcnow()),
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

    def _ready(self, session: Session) -> tuple[ContactSyncSettings, HubSpotConnection] | None:
        """The settings and connection, if real-time sync may move anything now."""
        row = session.get(ContactSyncSettings, self.workspace_id)
        conn = session.get(HubSpotConnection, self.workspace_id)
        if row is None or conn is None or conn.status != "connected" or row.state != "active":
            return None
        if manual_run_active(session, self.workspace_id):
            return None  # `syncing`: real-time changes wait for the manual run
        return row, conn

    def _load(self, session: Session) -> tuple[ContactSyncSettings, Effective, int] | None:
        ready = self._ready(session)
        if ready is None:
            return None
        row, conn = ready
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
                apply_inbound(session, loaded[1], contacts)

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
            retry_ids = due_retry_user_ids(session, self.workspace_id, BATCH) if eff.sends else []
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
            plan = plan_outbound(session, eff, wanted)
        sent = send(hs, plan, eff)
        with session_scope(self.sessions) as session:
            self._lease(session)
            store_outbound(session, eff, plan, sent)
            row2 = session.get(ContactSyncSettings, self.workspace_id)
            assert row2 is not None
            row2.cursor_seq = max(row2.cursor_seq, end_seq)
        return bool(changes)

    # -- inbound -------------------------------------------------------------------------------

    def _inbound_step(self, hs: BlockingClient) -> bool:
        """Apply the due webhook batches, up to `WEBHOOK_BATCHES_PER_STEP` together. When
        that fails for a reason of the batches' own, each is tried alone so the failure is
        pinned on the right one (which backs off, then parks); the others apply."""
        with session_scope(self.sessions) as session:
            if self._load(session) is None:
                return False
            batch_ids = webhooks.due_batch_ids(session, self.workspace_id, WEBHOOK_BATCHES_PER_STEP)
        if not batch_ids:
            return False
        try:
            self._apply_batches(hs, batch_ids)
        except Exception as exc:
            if not webhooks.is_batch_fault(exc) or isinstance(exc, LeaseLost):
                raise
            for batch_id in batch_ids if len(batch_ids) > 1 else []:
                try:
                    self._apply_batches(hs, [batch_id])
                except Exception as one:
                    if not webhooks.is_batch_fault(one) or isinstance(one, LeaseLost):
                        raise
                    self._batch_failed(batch_id, one)
            if len(batch_ids) == 1:
                self._batch_failed(batch_ids[0], exc)
        return True

    def _batch_failed(self, batch_id: int, exc: BaseException) -> None:
        log.warning("sync.webhook_batch_failed", batch_id=batch_id, error=str(exc)[:200])
        with session_scope(self.sessions) as session:
            self._lease(session)
            webhooks.record_failure(session, batch_id, exc)

    def _apply_batches(self, hs: BlockingClient, batch_ids: list[int]) -> None:
        with session_scope(self.sessions) as session:
            loaded = self._load(session)
            if loaded is None:
                return
            _, eff, app_id = loaded
            batches = session.scalars(
                sa.select(HubSpotWebhookBatch)
                .where(
                    HubSpotWebhookBatch.id.in_(batch_ids),
                    HubSpotWebhookBatch.processed_at.is_(None),
                )
                .order_by(HubSpotWebhookBatch.id)
            ).all()
            events = [e for b in batches for e in b.events]
            work = inbound_work(events, app_id) if eff.receives else InboundWork()
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
                apply_merges(session, self.workspace_id, work.merges)
                apply_inbound(session, eff, contacts)
                apply_deletes(session, eff, work.deleted, work.restored)
            session.execute(
                sa.update(HubSpotWebhookBatch)
                .where(
                    HubSpotWebhookBatch.id.in_(batch_ids),
                    HubSpotWebhookBatch.processed_at.is_(None),
                )
                .values(processed_at=utcnow(), next_attempt_at=None)
                .execution_options(synchronize_session=False)
            )


__all__ = [
    "ORIGIN",
    "Effective",
    "Engine",
    "HubSpotClient",
    "LeaseLost",
    "_Out",
    "_Sent",
    "_link",
    "_upsert_split",
    "validated",
]
