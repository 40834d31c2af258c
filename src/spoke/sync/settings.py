"""Reading and saving the contact sync settings, with their checks.

Saving checks every mapping against the portal's HubSpot properties (as listed at connect
time) and the workspace's fields: both ends exist, types are compatible, each field is
mapped once, the locked mappings stay. A changed configuration gets a new `version`; the
engine compares it with what each record was last synced under.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.connections.models import HubSpotConnection
from spoke.connections.service import NotConnected
from spoke.core.clock import utcnow
from spoke.core.errors import InvalidInput
from spoke.sync import mapping as fm
from spoke.sync.models import ContactSyncSettings
from spoke.sync.schemas import Constants, MappingOut, SettingsIn, SettingsOut, StoppedMapping
from spoke.users import fields as custom_fields
from spoke.users import lists as user_lists
from spoke.users.models import STANDARD_FIELDS, ListUsage, UserList
from spoke.workspaces.models import Workspace

LIST_CONSUMER = "sync.hubspot.contacts"


@dataclass
class Effective:
    """Settings as the engine uses them: mappings resolved against current field types."""

    row: ContactSyncSettings
    mappings: list[fm.Mapping]
    stopped: list[StoppedMapping]
    hubspot_properties: dict[str, dict[str, Any]]

    @property
    def sends(self) -> bool:
        return self.row.direction in ("two_way", "to_hubspot")

    @property
    def receives(self) -> bool:
        return self.row.direction in ("two_way", "to_spoke")


def _properties(conn: HubSpotConnection | None) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in (conn.properties if conn is not None else [])}


def _custom_types(session: Session, workspace_id: str) -> dict[str, str]:
    return {n: d.type for n, d in custom_fields.definitions(session, workspace_id).items()}


def default_row(workspace_id: str, props: dict[str, dict[str, Any]]) -> ContactSyncSettings:
    mappings = [
        {"spoke": s, "hubspot": h, "locked": (s, h) in fm.LOCKED}
        for s, h in fm.DEFAULTS
        if (s, h) in fm.LOCKED or h in props
    ]
    now = utcnow()
    return ContactSyncSettings(
        workspace_id=workspace_id,
        version=1,
        state="active",
        direction="two_way",
        mappings=mappings,
        constants={"to_hubspot": {}, "to_spoke": {}},
        send_list_ids=None,
        receive_list_id=None,
        lead_status="CONNECTED",
        delete_policy="soft",
        conflict_winner="hubspot",
        cursor_seq=0,
        created_at=now,
        updated_at=now,
    )


def ensure_row(session: Session, workspace_id: str) -> ContactSyncSettings:
    """The settings row, created with the defaults; a new row starts the outbound cursor at
    the feed's current end ("after connecting, only new changes sync")."""
    row = session.get(ContactSyncSettings, workspace_id)
    if row is None:
        conn = session.get(HubSpotConnection, workspace_id)
        row = default_row(workspace_id, _properties(conn))
        row.cursor_seq = int(
            session.scalar(sa.select(Workspace.change_seq).where(Workspace.id == workspace_id)) or 0
        )
        session.add(row)
        session.flush()
    return row


def effective(session: Session, row: ContactSyncSettings) -> Effective:
    conn = session.get(HubSpotConnection, row.workspace_id)
    props = _properties(conn)
    types = _custom_types(session, row.workspace_id)
    mappings: list[fm.Mapping] = []
    stopped: list[StoppedMapping] = []
    for item in row.mappings:
        spoke, hubspot = item["spoke"], item["hubspot"]
        kind = fm.spoke_type(spoke, types)
        if kind is None:
            stopped.append(
                StoppedMapping(spoke=spoke, hubspot=hubspot, reason="the Spoke field was deleted")
            )
            continue
        if props and hubspot not in props:
            stopped.append(
                StoppedMapping(
                    spoke=spoke, hubspot=hubspot, reason="the HubSpot property no longer exists"
                )
            )
            continue
        mappings.append(fm.Mapping(spoke, hubspot, kind, bool(item.get("locked"))))
    return Effective(row, mappings, stopped, props)


def stopped_mappings(session: Session, workspace_id: str) -> list[StoppedMapping]:
    """The saved mappings that no longer sync (none before the settings are saved)."""
    row = session.get(ContactSyncSettings, workspace_id)
    return effective(session, row).stopped if row is not None else []


def render(session: Session, row: ContactSyncSettings, *, state: str | None = None) -> SettingsOut:
    from spoke.sync import webhooks
    from spoke.sync.engine import manual_run_active

    eff = effective(session, row)
    if state is None and manual_run_active(session, row.workspace_id):
        state = "syncing"
    top = int(
        session.scalar(sa.select(Workspace.change_seq).where(Workspace.id == row.workspace_id)) or 0
    )
    return SettingsOut(
        version=row.version,
        state=state or row.state,
        direction=row.direction,  # type: ignore[arg-type]
        mappings=[
            MappingOut(spoke=m.spoke, hubspot=m.hubspot, type=m.spoke_type, locked=m.locked)
            for m in eff.mappings
        ],
        stopped_mappings=eff.stopped,
        constants=Constants.model_validate(row.constants or {}),
        send_list_ids=row.send_list_ids,
        receive_list_id=row.receive_list_id,
        hubspot_list_id=row.hubspot_list_id,
        lead_status=row.lead_status,
        delete_policy=row.delete_policy,
        conflict_winner=row.conflict_winner,
        pending_changes=max(0, top - row.cursor_seq) if row.state != "new" else 0,
        parked_webhook_batches=webhooks.count_parked(session, row.workspace_id),
        updated_at=row.updated_at,
    )


def get_settings(session: Session, workspace_id: str) -> SettingsOut:
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is None:
        raise NotConnected("Connect HubSpot before configuring the contact sync.")
    row = session.get(ContactSyncSettings, workspace_id)
    if row is None:
        row = default_row(workspace_id, _properties(conn))
        row.cursor_seq = int(
            session.scalar(sa.select(Workspace.change_seq).where(Workspace.id == workspace_id)) or 0
        )
        return render(session, row)
    return render(session, row)


class _Problems:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, field: str, message: str, kind: str) -> None:
        self.errors.append({"field": field, "message": message, "type": kind})

    def raise_if_any(self) -> None:
        if self.errors:
            raise InvalidInput(
                "The sync settings are not valid: " + "; ".join(e["message"] for e in self.errors),
                errors=self.errors,
            )


def _check_mappings(
    session: Session,
    workspace_id: str,
    body: SettingsIn,
    props: dict[str, dict[str, Any]],
    problems: _Problems,
) -> tuple[list[dict[str, Any]], list[tuple[str, str, list[str] | None]]]:
    types = _custom_types(session, workspace_id)
    wanted = (
        [(m.spoke, m.hubspot, m.create_field) for m in body.mappings]
        if body.mappings is not None
        else [(s, h, False) for s, h in fm.DEFAULTS if (s, h) in fm.LOCKED or h in props]
    )
    for spoke, hubspot in fm.LOCKED:
        for index, (s, h, _) in enumerate(wanted):
            if (s == spoke) != (h == hubspot):
                problems.add(
                    f"body.mappings.{index}",
                    f"{spoke} ↔ {hubspot} is locked and cannot be changed",
                    "locked_mapping",
                )
        if (spoke, hubspot, False) not in wanted and (spoke, hubspot, True) not in wanted:
            wanted.insert(0, (spoke, hubspot, False))
    out: list[dict[str, Any]] = []
    to_create: list[tuple[str, str, list[str] | None]] = []
    seen_spoke: set[str] = set()
    seen_hubspot: set[str] = set()
    writes_hubspot = body.direction in ("two_way", "to_hubspot")
    for index, (spoke, hubspot, create) in enumerate(wanted):
        where = f"body.mappings.{index}"
        if spoke in seen_spoke or hubspot in seen_hubspot:
            problems.add(where, f"{spoke} ↔ {hubspot}: each field may be mapped once", "duplicate")
            continue
        seen_spoke.add(spoke)
        seen_hubspot.add(hubspot)
        prop = props.get(hubspot)
        if prop is None:
            problems.add(where, f"HubSpot has no contact property {hubspot!r}", "unknown_property")
            continue
        if writes_hubspot and prop.get("read_only") and hubspot != "email":
            problems.add(where, f"HubSpot property {hubspot!r} is read-only", "read_only")
            continue
        kind = fm.spoke_type(spoke, types)
        if kind is None and create and spoke.startswith("custom."):
            name = spoke.removeprefix("custom.")
            kind = fm.CREATES.get(str(prop.get("type")))
            if kind is None:
                problems.add(where, f"cannot create a field for {hubspot!r}", "type_mismatch")
                continue
            options = list(prop.get("options") or []) if kind == "enumeration" else None
            to_create.append((name, kind, options))
        elif kind is None:
            problems.add(where, f"Spoke has no field {spoke!r}", "unknown_field")
            continue
        if str(prop.get("type")) not in fm.COMPATIBLE.get(kind, frozenset()):
            problems.add(
                where,
                f"{spoke} ({kind}) and {hubspot} ({prop.get('type')}) have different types",
                "type_mismatch",
            )
            continue
        out.append({"spoke": spoke, "hubspot": hubspot, "locked": (spoke, hubspot) in fm.LOCKED})
    return out, to_create


def _check_constants(
    body: SettingsIn,
    props: dict[str, dict[str, Any]],
    mapped: list[dict[str, Any]],
    types: dict[str, str],
    problems: _Problems,
) -> None:
    mapped_h = {m["hubspot"] for m in mapped}
    mapped_s = {m["spoke"] for m in mapped}
    for name in body.constants.to_hubspot:
        where = f"body.constants.to_hubspot.{name}"
        if name not in props:
            problems.add(where, f"HubSpot has no contact property {name!r}", "unknown_property")
        elif name in mapped_h:
            problems.add(where, f"{name!r} is mapped; it cannot also be a constant", "duplicate")
    for name in body.constants.to_spoke:
        where = f"body.constants.to_spoke.{name}"
        kind = fm.spoke_type(name, types)
        if kind != "string":
            problems.add(where, f"{name!r} is not a Spoke text field", "unknown_field")
        elif name in mapped_s:
            problems.add(where, f"{name!r} is mapped; it cannot also be a constant", "duplicate")


def _check_lists(
    session: Session, workspace_id: str, body: SettingsIn, problems: _Problems
) -> list[UserList]:
    ids = [*(body.send_list_ids or []), *([body.receive_list_id] if body.receive_list_id else [])]
    found = {
        lst.id: lst
        for lst in session.scalars(
            sa.select(UserList).where(UserList.workspace_id == workspace_id, UserList.id.in_(ids))
        )
    }
    for index, list_id in enumerate(body.send_list_ids or []):
        if list_id not in found:
            problems.add(f"body.send_list_ids.{index}", f"no list {list_id!r}", "unknown_list")
    if body.receive_list_id and body.receive_list_id not in found:
        problems.add("body.receive_list_id", f"no list {body.receive_list_id!r}", "unknown_list")
    return list(found.values())


ListCheck = Callable[[str], str | None]


def save_settings(
    session: Session, workspace_id: str, body: SettingsIn, check_list: ListCheck | None = None
) -> SettingsOut:
    """Check and save the settings. `check_list(list_id)` says what is wrong with a HubSpot
    list (None: it will do); without it a HubSpot list is not accepted."""
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is None:
        raise NotConnected("Connect HubSpot before configuring the contact sync.")
    props = _properties(conn)
    problems = _Problems()
    if body.hubspot_list_id is not None:
        problem = (
            check_list(body.hubspot_list_id)
            if check_list is not None
            else "HubSpot lists cannot be checked here"
        )
        if problem is not None:
            problems.add("body.hubspot_list_id", problem, "invalid_hubspot_list")
    mapped, to_create = _check_mappings(session, workspace_id, body, props, problems)
    types = _custom_types(session, workspace_id)
    for name, kind, _ in to_create:
        types[name] = kind
    _check_constants(body, props, mapped, types, problems)
    used_lists = _check_lists(session, workspace_id, body, problems)
    problems.raise_if_any()
    for name, kind, options in to_create:
        custom_fields.create_field(
            session, workspace_id, name=name, label="", type_=kind, options=options
        )
    row = ensure_row(session, workspace_id)
    new: dict[str, Any] = {
        "direction": body.direction,
        "state": body.state,
        "mappings": mapped,
        "constants": body.constants.model_dump(),
        "send_list_ids": body.send_list_ids,
        "receive_list_id": body.receive_list_id,
        "hubspot_list_id": body.hubspot_list_id,
        "lead_status": body.lead_status,
        "delete_policy": body.delete_policy,
        "conflict_winner": body.conflict_winner,
    }
    changed = {k for k, v in new.items() if getattr(row, k) != v}
    if changed:
        for key, value in new.items():
            setattr(row, key, value)
        if changed - {"state"}:
            row.version += 1
        row.updated_at = utcnow()
    session.execute(
        sa.delete(ListUsage).where(
            ListUsage.consumer == LIST_CONSUMER, ListUsage.reference == workspace_id
        )
    )
    for lst in used_lists:
        user_lists.add_usage(session, lst, LIST_CONSUMER, workspace_id)
    session.flush()
    return render(session, row)


__all__ = [
    "STANDARD_FIELDS",
    "Effective",
    "effective",
    "ensure_row",
    "get_settings",
    "save_settings",
]
