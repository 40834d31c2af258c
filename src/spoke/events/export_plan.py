"""One chunk of an export run, from items to recorded outcome, in two transactions.

`prepare` finds each item's contact and definition, renders its completion, counts the
sendable ones against the monthly cap and — in one transaction — records the batches it is
about to send (`event_export_batches`, with the lease renewed). The batches then go out
(`sender`), and `finish` records what happened in one more transaction: the batch rows are
deleted, the items are marked (sent, waiting with a reason, rejected with a reason), the
usage not consumed is given back, and the source's checkpoint moves (the scan's cursor,
a rollup's state). A crash between the two leaves the batch rows: the next run reads back
which of their uuids landed before it sends anything (`export_run.resolve_unknown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core import bulk, leases
from spoke.core.clock import utcnow
from spoke.core.db import session_scope, table_of
from spoke.events import cap, identity, naming, rollup
from spoke.events.definitions import DefKey
from spoke.events.export_context import Context
from spoke.events.export_models import (
    EventExportBatch,
    EventExportMark,
    EventExportRollup,
    EventExportRun,
    EventExportSettings,
)
from spoke.events.identity import Who
from spoke.events.sender import Outcome, Wire, deliver_all
from spoke.hubspot.models import EVENT_BATCH_LIMIT

Disposition = dict[int, tuple[str, str | None]]  # item id -> (reason, detail)


@dataclass(slots=True)
class Item:
    """One completion to be: a product event (`each`) or a daily rollup, with its user as
    the event named them (`key` is `identity.identity_key` of the two)."""

    kind: str  # event | rollup
    id: int
    key: str
    external_id: str | None
    email: str | None
    event_type: str
    event_name: str
    occurred_at: datetime
    properties: Mapping[str, Any]


@dataclass
class Plan:
    source: str  # scan | waiting | rollups
    items: list[Item]
    cursor_to: int | None = None  # scan: where the cursor goes once this chunk is recorded
    rollup_events: list[rollup.Occurrence] = field(default_factory=list)
    batches: list[list[Wire]] = field(default_factory=list)
    batch_ids: list[int] = field(default_factory=list)
    month: str = ""
    reserved: int = 0
    waiting: Disposition = field(default_factory=dict)
    rejected: Disposition = field(default_factory=dict)
    previous: dict[int, str | None] = field(default_factory=dict)  # waiting: reason before
    future: Future[list[Outcome]] | None = None

    @property
    def keys(self) -> dict[int, str]:
        return {item.id: item.key for item in self.items}


def _wanted(items: Sequence[Item], matched: set[str]) -> dict[DefKey, dict[str, Any]]:
    wanted: dict[DefKey, dict[str, Any]] = {}
    for item in items:
        if item.key not in matched:
            continue
        samples = wanted.setdefault((item.event_type, item.event_name, item.kind == "rollup"), {})
        if item.properties.keys() <= samples.keys():
            continue  # the usual case: nothing new (a C-level check)
        for prop, value in item.properties.items():  # in the app's order: the first 50 win
            if value is not None and prop not in samples:
                samples[prop] = value
    return wanted


def _render(ctx: Context, item: Item, specs: Mapping[str, tuple[str, str, int]]) -> Any:
    """The completion's properties, or the reason it is rejected."""
    props: dict[str, str] = {}
    for prop, value in item.properties.items():
        spec = specs.get(prop)
        if spec is None:
            continue  # over the 50-property limit (listed on the definition)
        hs_name, kind, limit = spec
        if kind == "string" and type(value) is str:
            text: str | None = value
        else:
            text = naming.render(value, kind)
        if text is None:
            continue  # does not fit the property's type
        if len(text) > limit:
            if ctx.config.long_values == "reject":
                return ("value_too_long", f"{prop}: {len(text)} characters, limit {limit}")
            text = text[:limit]
        props[hs_name] = text
    return props


def prepare(ctx: Context, plan: Plan) -> Plan:
    """Resolve, render, count and record the chunk's batches; then start sending them."""
    # Users this run already matched skip `identity.resolve`: after the first chunks that is
    # nearly everyone, and building their lookups again was a fifth of this function.
    known = ctx.contacts
    users: dict[str, Who] = {}
    for item in plan.items:
        if item.key not in known and item.key not in users:
            users[item.key] = Who(item.key, item.external_id, item.email)
    matches = identity.resolve(
        ctx.sessions,
        ctx.hs,
        ctx.workspace_id,
        users,
        create_contacts=ctx.config.create_contacts,
        recheck=ctx.recheck,
        known=known,
    )
    unmatched = {k: m.reason or "unmatched" for k, m in matches.items() if not m.hubspot_id}
    matched = {item.key for item in plan.items if item.key not in unmatched}
    definitions = ctx.definitions.ensure(_wanted(plan.items, matched))
    wires: list[Wire] = []
    for item in plan.items:
        contact = known.get(item.key)
        if contact is None:
            plan.waiting[item.id] = (unmatched.get(item.key, "unmatched"), None)
            continue
        definition = definitions[(item.event_type, item.event_name, item.kind == "rollup")]
        if definition.failed is not None or definition.fully_qualified_name is None:
            plan.rejected[item.id] = ("definition_failed", definition.failed)
            continue
        props = _render(ctx, item, definition.properties)
        if isinstance(props, tuple):
            plan.rejected[item.id] = props
            continue
        uuid = naming.completion_uuid(ctx.workspace_id, item.kind, item.id)
        body = {
            "eventName": definition.fully_qualified_name,
            "objectId": contact,
            "occurredAt": naming.iso_ms(item.occurred_at),
            "properties": props,
            "uuid": uuid,
        }
        wires.append(Wire(item.id, uuid, item.key, body))
    plan.month = cap.month_of(utcnow())
    with session_scope(ctx.sessions) as session:
        leases.renew(session, EventExportRun, ctx.run_id, ctx.owner, ctx.lease_seconds)
        granted = cap.reserve(
            session, ctx.portal_id, plan.month, ctx.config.monthly_cap, len(wires)
        )
        for wire in wires[granted:]:
            plan.waiting[wire.item_id] = ("cap", f"the monthly cap of {ctx.config.monthly_cap}")
        wires = wires[:granted]
        plan.reserved = granted
        plan.batches = [
            wires[i : i + EVENT_BATCH_LIMIT] for i in range(0, len(wires), EVENT_BATCH_LIMIT)
        ]
        kind = "rollup" if plan.source == "rollups" else "event"
        rows = [
            {
                "workspace_id": ctx.workspace_id,
                "run_id": ctx.run_id,
                "kind": kind,
                "item_ids": [w.item_id for w in batch],
                "from_waiting": plan.source == "waiting",
                "month": plan.month,
                "created_at": utcnow(),
            }
            for batch in plan.batches
        ]
        plan.batch_ids = [
            r["id"] for r in bulk.insert(session, table_of(EventExportBatch), rows, ["id"])
        ]
        if kind == "rollup" and wires:
            session.execute(
                sa.update(EventExportRollup)
                .where(EventExportRollup.id.in_([w.item_id for w in wires]))
                .values(state="sending")
            )
    if plan.batches:
        batches, concurrency, policy = plan.batches, ctx.concurrency, ctx.policy
        plan.future = ctx.hs.submit(lambda c: deliver_all(c, batches, concurrency, policy))
    return plan


def finish(ctx: Context, plan: Plan) -> None:
    """Wait for the chunk's batches and record their outcome with the checkpoint.

    Raises:
        UnknownOutcome: some batch's outcome stayed unknown; its row stays for the next run.
        HubSpotError: the run cannot go on (e.g. the token lost a scope).
    """
    outcome = Outcome()
    if plan.future is not None:
        for one in plan.future.result():
            outcome.merge(one)
    waiting: Disposition = {**plan.waiting, **outcome.waiting}
    rejected: Disposition = {**plan.rejected, **outcome.rejected}
    sent = outcome.sent
    with session_scope(ctx.sessions) as session:
        leases.renew(session, EventExportRun, ctx.run_id, ctx.owner, ctx.lease_seconds)
        if plan.batch_ids:
            session.execute(
                sa.delete(EventExportBatch).where(EventExportBatch.id.in_(plan.batch_ids))
            )
        cap.give_back(session, ctx.portal_id, plan.month, plan.reserved - len(sent))
        identity.forget(session, ctx.workspace_id, outcome.gone_contacts)
        for key in outcome.gone_contacts:
            ctx.contacts.pop(key, None)
        run = session.get(EventExportRun, ctx.run_id)
        settings = session.get(EventExportSettings, ctx.workspace_id)
        assert run is not None
        assert settings is not None
        run.sent += len(sent)
        run.waiting += len(waiting)  # still waiting at the end of this run's pass
        run.rejected += len(rejected)
        run.resolved += outcome.resolved
        run.batches += len(plan.batches)
        settings.sent_total += len(sent)
        keys = plan.keys
        if plan.source == "scan":
            _mark(session, ctx.workspace_id, waiting, rejected, keys)
            rollup.add(session, ctx.workspace_id, plan.rollup_events)
            if plan.cursor_to is not None and plan.cursor_to > settings.cursor_event_id:
                settings.cursor_event_id = plan.cursor_to
                session.execute(
                    sa.delete(EventExportMark).where(
                        EventExportMark.workspace_id == ctx.workspace_id,
                        EventExportMark.state == "sent",
                        EventExportMark.event_id <= plan.cursor_to,
                    )
                )
        elif plan.source == "waiting":
            changed = {i: w for i, w in waiting.items() if plan.previous.get(i) != w[0]}
            _remark(session, ctx.workspace_id, sent, changed, rejected)
        else:
            rollup.settle(session, sent, waiting, rejected)


def _mark(
    session: Session,
    workspace_id: str,
    waiting: Disposition,
    rejected: Disposition,
    keys: Mapping[int, str],
) -> None:
    now = utcnow()
    rows = [
        {
            "workspace_id": workspace_id,
            "event_id": event_id,
            "state": state,
            "reason": reason,
            "detail": detail,
            "identity_key": keys.get(event_id),
            "updated_at": now,
        }
        for state, found in (("waiting", waiting), ("rejected", rejected))
        for event_id, (reason, detail) in found.items()
    ]
    bulk.insert(session, table_of(EventExportMark), rows)


def _remark(
    session: Session,
    workspace_id: str,
    sent: Sequence[int],
    waiting: Disposition,
    rejected: Disposition,
) -> None:
    """Events that were waiting: sent ones lose their mark, the others get their new state."""
    marks = table_of(EventExportMark)
    if sent:
        bulk.delete(
            session,
            marks,
            ["workspace_id", "event_id"],
            [{"workspace_id": workspace_id, "event_id": i} for i in sent],
        )
    now = utcnow()
    changed = [
        {
            "workspace_id": workspace_id,
            "event_id": event_id,
            "state": state,
            "reason": reason,
            "detail": detail,
            "updated_at": now,
        }
        for state, found in (("waiting", waiting), ("rejected", rejected))
        for event_id, (reason, detail) in found.items()
    ]
    bulk.update(session, marks, ["workspace_id", "event_id"], changed)
