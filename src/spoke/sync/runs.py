"""Manual sync (backfill) runs: copy what exists from one app to the other.

`POST /v1/sync/contacts/runs` queues a run; `sync.manual_run` processes it one page (≤100
records) at a time. Records are paired by email; on a conflict the source app's values win
(by default the sending app), and a blank never overwrites. A dry run writes nothing and
counts what would happen: creates, updates, duplicates (records found on both sides by
email) and conflicts, with samples field by field.

While a run is queued or running the workspace's state is `syncing`: real-time changes wait
(webhooks are stored, the users feed is not read) and drain when the run ends. One run at a
time per workspace. Each page commits with the run's checkpoint and a lease renewal, so a
run survives `kill -9` of its worker: the sweeper re-enqueues it when the lease runs out
and it resumes after the last committed page. Re-doing a page is harmless (upserts by
email, writes by key, comparisons against current values).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.connections import service as connections
from spoke.connections.models import HubSpotConnection
from spoke.core import leases
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import session_scope
from spoke.core.errors import Conflict, NotFound
from spoke.core.ids import new_id
from spoke.hubspot import BlockingClient, ObjectPage, SearchRequest, SimplePublicObject
from spoke.sync import mapping as fm
from spoke.sync.engine import ORIGIN, _link, _Out, _Sent, _upsert_split, validated
from spoke.sync.models import ContactLink, ContactSyncRun, ContactSyncSettings
from spoke.sync.settings import Effective, effective, ensure_row
from spoke.users import lists as user_lists
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import STANDARD_FIELDS, ListMembership, User, UserList

log = structlog.get_logger("spoke.sync.runs")

PAGE = 100
SAMPLE_CAP = 50
ACTIVE = ("queued", "running")
RUN_JOB = "sync.manual_run"


class RunInProgress(Conflict):
    code = "sync_run_in_progress"
    title = "A manual sync is already running"


class RunNotFound(NotFound):
    code = "sync_run_not_found"


def active_run(session: Session, workspace_id: str) -> ContactSyncRun | None:
    return session.scalar(
        sa.select(ContactSyncRun)
        .where(ContactSyncRun.workspace_id == workspace_id, ContactSyncRun.status.in_(ACTIVE))
        .limit(1)
    )


def start(
    session: Session,
    workspace_id: str,
    *,
    direction: str,
    source_app: str | None,
    dry_run: bool,
    actor: str,
) -> ContactSyncRun:
    """Queue a run; refuses a second one while one is active."""
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is None or conn.status != "connected":
        raise connections.NotConnected("Connect HubSpot before running a manual sync.")
    row = ensure_row(session, workspace_id)
    # Lock the settings row: two requests at once must not both start a run.
    session.execute(
        sa.select(ContactSyncSettings.workspace_id)
        .where(ContactSyncSettings.workspace_id == row.workspace_id)
        .with_for_update()
    )
    if active_run(session, workspace_id) is not None:
        raise RunInProgress("A manual sync is already queued or running for this workspace.")
    sender = "spoke" if direction == "to_hubspot" else "hubspot"
    run = ContactSyncRun(
        id=new_id("run"),
        workspace_id=workspace_id,
        direction=direction,
        source_app=source_app or sender,
        dry_run=dry_run,
        requested_by=actor,
        status="queued",
        checkpoint={},
        samples={"conflicts": [], "errors": []},
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    return run


def get_run(session: Session, workspace_id: str, run_id: str) -> ContactSyncRun:
    run = session.get(ContactSyncRun, run_id)
    if run is None or run.workspace_id != workspace_id:
        raise RunNotFound(f"No sync run {run_id!r}.")
    return run


def list_runs(session: Session, workspace_id: str, limit: int = 20) -> list[ContactSyncRun]:
    return list(
        session.scalars(
            sa.select(ContactSyncRun)
            .where(ContactSyncRun.workspace_id == workspace_id)
            .order_by(ContactSyncRun.created_at.desc(), ContactSyncRun.id.desc())
            .limit(limit)
        )
    )


# -- processing --------------------------------------------------------------------------------


@dataclass
class _Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates: int = 0
    conflicts: int = 0
    excluded: int = 0
    failed: int = 0
    done: int = 0
    conflict_samples: list[dict[str, Any]] = field(default_factory=list)
    error_samples: list[dict[str, Any]] = field(default_factory=list)

    def conflict(self, record: str, name: str, spoke: Any, hubspot: Any, winner: str) -> None:
        self.conflicts += 1
        self.conflict_samples.append(
            {"record": record, "field": name, "spoke": spoke, "hubspot": hubspot, "kept": winner}
        )

    def error(self, record: str, reason: str) -> None:
        self.failed += 1
        self.error_samples.append({"record": record, "reason": reason[:500]})

    def add_to(self, run: ContactSyncRun) -> None:
        for name in (
            "created",
            "updated",
            "unchanged",
            "duplicates",
            "conflicts",
            "excluded",
            "failed",
            "done",
        ):
            setattr(run, name, getattr(run, name) + getattr(self, name))
        samples = dict(run.samples or {})
        samples["conflicts"] = [*samples.get("conflicts", []), *self.conflict_samples][:SAMPLE_CAP]
        samples["errors"] = [*samples.get("errors", []), *self.error_samples][:SAMPLE_CAP]
        run.samples = samples


def process(
    sessions: sessionmaker[Session],
    settings: Settings,
    encryptor: Encryptor,
    run_id: str,
    *,
    owner: str | None = None,
    lease_seconds: float = 60.0,
) -> bool:
    """Claim the run and process it to the end; returns False if someone else holds it."""
    owner = owner or uuid.uuid4().hex
    with session_scope(sessions) as session:
        if not leases.claim(session, ContactSyncRun, run_id, owner, lease_seconds):
            return False
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        workspace_id = run.workspace_id
        if run.started_at is None:
            run.started_at = utcnow()
    try:
        with connections.open_client(sessions, settings, encryptor, workspace_id) as hs:
            with session_scope(sessions) as session:
                run = session.get(ContactSyncRun, run_id)
                assert run is not None
                if run.total is None:
                    run.total = _total(session, hs, run)
            while _page(sessions, hs, run_id, owner, lease_seconds):
                pass
    except connections.NotConnected as exc:
        with session_scope(sessions) as session:
            run = session.get(ContactSyncRun, run_id)
            assert run is not None
            run.error = str(exc)
            run.finished_at = utcnow()
            leases.release(session, ContactSyncRun, run_id, owner, "failed")
        return True
    with session_scope(sessions) as session:
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        run.finished_at = utcnow()
        leases.release(session, ContactSyncRun, run_id, owner, "succeeded")
    return True


def _total(session: Session, hs: BlockingClient, run: ContactSyncRun) -> int:
    if run.direction == "to_hubspot":
        return int(
            session.scalar(
                sa.select(sa.func.count())
                .select_from(User)
                .where(User.workspace_id == run.workspace_id, User.deleted_at.is_(None))
            )
            or 0
        )
    page = hs.call(lambda c: c.contacts.search(SearchRequest(limit=1)))
    return page.total


def _page(
    sessions: sessionmaker[Session],
    hs: BlockingClient,
    run_id: str,
    owner: str,
    lease_seconds: float,
) -> bool:
    """Process one page; returns True while pages remain."""
    with session_scope(sessions) as session:
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        if run.checkpoint.get("finished"):
            return False
        row = ensure_row(session, run.workspace_id)
        eff = effective(session, row)
        direction = run.direction
        checkpoint = dict(run.checkpoint)
        if direction == "to_hubspot":
            after = int(checkpoint.get("after_user_id", 0))
            plan = _plan_to_hubspot_page(session, eff, after)
        else:
            after_cursor = checkpoint.get("after")
    if direction == "to_hubspot":
        return _to_hubspot(sessions, hs, run_id, owner, lease_seconds, eff, plan)
    props = sorted({m.hubspot for m in eff.mappings} | {"email"})
    page: ObjectPage = hs.call(
        lambda c: c.contacts.list(limit=PAGE, after=after_cursor, properties=props)
    )
    with session_scope(sessions) as session:
        leases.renew(session, ContactSyncRun, run_id, owner, lease_seconds)
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        counts = _apply_to_spoke_page(session, run, effective(session, eff.row), page.results)
        counts.add_to(run)
        nxt = page.next_after
        run.checkpoint = {"after": nxt} if nxt else {"finished": True}
        return nxt is not None


# -- Spoke → HubSpot ---------------------------------------------------------------------------


@dataclass
class _PagePlan:
    users: list[User]
    last_id: int
    excluded: set[int]


def _plan_to_hubspot_page(session: Session, eff: Effective, after: int) -> _PagePlan:
    rows = list(
        session.scalars(
            sa.select(User)
            .where(
                User.workspace_id == eff.row.workspace_id,
                User.deleted_at.is_(None),
                User.id > after,
            )
            .order_by(User.id)
            .limit(PAGE)
        )
    )
    excluded: set[int] = set()
    if eff.row.send_list_ids is not None and rows:
        members = set(
            session.scalars(
                sa.select(ListMembership.user_id).where(
                    ListMembership.list_id.in_(eff.row.send_list_ids),
                    ListMembership.user_id.in_([u.id for u in rows]),
                )
            )
        )
        excluded = {u.id for u in rows if u.id not in members}
    for user in rows:
        session.expunge(user)
    return _PagePlan(rows, rows[-1].id if rows else after, excluded)


def _desired(eff: Effective, user: User) -> dict[str, str]:
    profile = {name: getattr(user, name) for name in STANDARD_FIELDS}
    out = {
        m.hubspot: fm.to_hubspot(fm.read_user_value(m, profile, user.custom or {}), m.spoke_type)
        for m in eff.mappings
    }
    out["email"] = (user.email or "").strip().lower()
    out.update((eff.row.constants or {}).get("to_hubspot", {}))
    return out


def _to_hubspot(
    sessions: sessionmaker[Session],
    hs: BlockingClient,
    run_id: str,
    owner: str,
    lease_seconds: float,
    eff: Effective,
    plan: _PagePlan,
) -> bool:
    counts = _Counts()
    with session_scope(sessions) as session:
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        source, dry = run.source_app, run.dry_run
    sendable: list[User] = []
    seen: set[str] = set()
    for user in plan.users:
        counts.done += 1
        email = (user.email or "").strip().lower()
        if user.id in plan.excluded or not email or email in seen:
            counts.excluded += 1
            continue
        seen.add(email)
        sendable.append(user)
    props = sorted({m.hubspot for m in eff.mappings} | {"email"})
    existing: dict[str, SimplePublicObject] = {}
    if sendable:
        found = hs.call(
            lambda c: c.contacts.batch_read(
                [(u.email or "").strip().lower() for u in sendable],
                properties=props,
                id_property="email",
            )
        )
        existing = {(c.properties.get("email") or "").lower(): c for c in found.results}
    outs: list[_Out] = []
    for user in sendable:
        desired = _desired(eff, user)
        email = desired["email"]
        remote = existing.get(email)
        if remote is None:
            send = {k: v for k, v in desired.items() if v != ""}
            counts.created += 1
            outs.append(_Out(user.id, user.external_id, email, None, send, desired))
            continue
        counts.duplicates += 1
        send = {}
        for name, value in desired.items():
            theirs = remote.properties.get(name) or ""
            if value == "" or value == theirs:
                continue  # a blank never overwrites
            if theirs != "":
                winner = source
                counts.conflict(user.external_id, name, value, theirs, winner)
                if winner == "hubspot":
                    continue
            send[name] = value
        if send:
            counts.updated += 1
            outs.append(_Out(user.id, user.external_id, email, remote.id, send, desired))
        else:
            counts.unchanged += 1
            outs.append(_Out(user.id, user.external_id, email, remote.id, {}, desired))
    sent = _Sent()
    to_send = [o for o in outs if o.props]
    if not dry:
        for i in range(0, len(to_send), PAGE):
            _upsert_split(hs, to_send[i : i + PAGE], sent)
    with session_scope(sessions) as session:
        leases.renew(session, ContactSyncRun, run_id, owner, lease_seconds)
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        if not dry:
            _store_links_to_hubspot(session, eff, outs, existing, sent, counts)
        counts.add_to(run)
        more = len(plan.users) == PAGE
        run.checkpoint = {"after_user_id": plan.last_id} if more else {"finished": True}
        return more


def _store_links_to_hubspot(
    session: Session,
    eff: Effective,
    outs: list[_Out],
    existing: dict[str, SimplePublicObject],
    sent: _Sent,
    counts: _Counts,
) -> None:
    now = utcnow()
    workspace_id = eff.row.workspace_id
    for out in outs:
        remote = existing.get(out.email)
        if out.props and out.user_id not in sent.ok:
            reason = sent.failed.get(out.user_id, "not sent")
            counts.error(out.external_id, reason)
            link = _link(session, workspace_id, out.user_id)
            link.state, link.reason, link.updated_at = "failing", reason, now
            link.failures += 1
            continue
        hubspot_id = sent.ok[out.user_id][0] if out.props else (remote.id if remote else None)
        if hubspot_id is None:
            continue
        holder = session.scalar(
            sa.select(ContactLink).where(
                ContactLink.workspace_id == workspace_id, ContactLink.hubspot_id == hubspot_id
            )
        )
        link = _link(session, workspace_id, out.user_id)
        if holder is not None and holder.user_id != out.user_id:
            link.state, link.reason = "excluded", "another user is linked to this contact"
            continue
        agreed = {
            name: (remote.properties.get(name) or "") if remote else "" for name in out.desired
        }
        agreed.update(out.props)
        link.hubspot_id = hubspot_id
        link.snapshot = agreed
        link.state, link.reason, link.failures = "in_sync", None, 0
        link.last_synced_at = link.updated_at = now
        link.settings_version = eff.row.version
        session.flush()


# -- HubSpot → Spoke ---------------------------------------------------------------------------


def _apply_to_spoke_page(
    session: Session, run: ContactSyncRun, eff: Effective, contacts: list[SimplePublicObject]
) -> _Counts:
    counts = _Counts()
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
    for (item, contact, creating, agreed), outcome in zip(pending, outcomes, strict=True):
        if outcome.error is not None:
            counts.error(item.external_id, outcome.error.detail)
            continue
        user_id = session.scalar(
            sa.select(User.id).where(
                User.workspace_id == workspace_id, User.external_id == item.external_id
            )
        )
        assert user_id is not None
        holder = links.get(contact.id)
        link = holder if holder is not None else _link(session, workspace_id, user_id)
        if link.hubspot_id not in (None, contact.id):
            continue  # the user follows another contact; leave that pairing alone
        link.hubspot_id = contact.id
        link.snapshot = agreed
        link.state, link.reason, link.failures = "in_sync", None, 0
        link.last_synced_at = link.updated_at = now
        link.settings_version = eff.row.version
        if creating:
            created.append(item.external_id)
        session.flush()
    if created and eff.row.receive_list_id:
        target = session.get(UserList, eff.row.receive_list_id)
        if target is not None and target.workspace_id == workspace_id:
            user_lists.change_membership(session, origin, target, created, add=True)
    return counts


def progress(run: ContactSyncRun) -> dict[str, Any]:
    """done/total, records per second and the estimated seconds left."""
    started = run.started_at
    end = run.finished_at or utcnow()
    elapsed = (end - started).total_seconds() if started else 0.0
    rate = run.done / elapsed if elapsed > 0 else 0.0
    left = max(0, (run.total or 0) - run.done)
    eta = left / rate if rate > 0 and run.status in ACTIVE else None
    return {
        "done": run.done,
        "total": run.total,
        "rate_per_second": round(rate, 2),
        "eta_seconds": round(eta, 1) if eta is not None else None,
    }


__all__ = ["RUN_JOB", "RunInProgress", "RunNotFound", "active_run", "process", "start"]
