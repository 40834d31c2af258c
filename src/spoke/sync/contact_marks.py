"""What the sync does to HubSpot contacts besides their mapped properties.

- **The settings' HubSpot list** (`hubspot_list_id`, a MANUAL or SNAPSHOT list): every
  contact the sync sends (created, matched by email, or updated) is added once; the list id
  is kept on the link (`contact_links.hubspot_list_id`), so it is not added again unless the
  setting names another list. Adds go in batches of `LIST_BATCH` ids through the lists v3
  membership call (idempotent: HubSpot ignores ids already in the list, so the client's
  retries of 429/5xx are safe); a failed add marks the link failing and the backoff
  retries it.
- **Soft deletes** (`delete_policy = soft`): a user deleted in Spoke sets the contact's
  `spoke_deleted` property to `true`; restoring the user clears it. The property (a single
  checkbox in a `spoke` property group) is created in the portal the first time it is
  needed, which takes the `crm.schemas.contacts.write` scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from spoke.connections.models import HubSpotConnection
from spoke.hubspot import (
    BatchResult,
    BlockingClient,
    Conflict,
    HubSpotError,
    MembershipsUpdate,
    MissingScopes,
    ObjectUpdate,
    PropertyCreate,
    PropertyOption,
    SimplePublicObject,
)
from spoke.sync.links import error_text
from spoke.sync.settings import Effective

if TYPE_CHECKING:
    from spoke.sync.outbound import Sent

DELETED_PROPERTY = "spoke_deleted"
GROUP = "spoke"
LIST_BATCH = 100
BATCH = 100

_DELETED_DEFINITION: dict[str, Any] = {
    "name": DELETED_PROPERTY,
    "label": "Deleted in Spoke",
    "type": "bool",
    "field_type": "booleancheckbox",
    "read_only": False,
    "options": ["true", "false"],
}


def ensure_deleted_property(hs: BlockingClient, eff: Effective, sent: Sent) -> str | None:
    """Create `spoke_deleted` (and its group) unless the portal has it; None when it
    exists now, else why it could not be created."""
    if DELETED_PROPERTY in eff.hubspot_properties or sent.created_property:
        return None
    try:
        hs.call(lambda c: c.properties.create_group("contacts", GROUP, "Spoke"))
    except Conflict:
        pass  # made by an earlier run
    except MissingScopes:
        return (
            f"cannot create the HubSpot property {DELETED_PROPERTY}: the connection lacks "
            "the crm.schemas.contacts.write scope (reconnect to grant it)"
        )
    except HubSpotError as exc:
        return f"cannot create the HubSpot property group {GROUP}: {error_text(exc)}"
    definition = PropertyCreate(
        name=DELETED_PROPERTY,
        label="Deleted in Spoke",
        type="bool",
        field_type="booleancheckbox",
        group_name=GROUP,
        description="Set by Spoke when the user was deleted in Spoke; cleared on restore.",
        options=[
            PropertyOption(label="Yes", value="true", display_order=0),
            PropertyOption(label="No", value="false", display_order=1),
        ],
    )
    try:
        hs.call(lambda c: c.properties.create("contacts", definition))
    except Conflict:
        pass
    except HubSpotError as exc:
        return f"cannot create the HubSpot property {DELETED_PROPERTY}: {error_text(exc)}"
    sent.created_property = True
    return None


def remember_deleted_property(session: Session, workspace_id: str) -> None:
    """List the created property among the connection's properties, so later runs know."""
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is not None and all(p.get("name") != DELETED_PROPERTY for p in conn.properties):
        conn.properties = [*conn.properties, dict(_DELETED_DEFINITION)]


def mark_deleted(hs: BlockingClient, eff: Effective, marks: dict[int, str], sent: Sent) -> None:
    """Set `spoke_deleted=true` on the contacts of users deleted in Spoke."""
    problem = ensure_deleted_property(hs, eff, sent)
    if problem is not None:
        for user_id in marks:
            sent.failed[user_id] = problem
        return
    pairs = list(marks.items())
    for i in range(0, len(pairs), BATCH):
        chunk = pairs[i : i + BATCH]
        inputs = [ObjectUpdate(id=h, properties={DELETED_PROPERTY: "true"}) for _, h in chunk]
        try:
            result = _update(hs, inputs)
        except HubSpotError as exc:
            for user_id, _ in chunk:
                sent.failed[user_id] = f"marking deleted in HubSpot failed: {error_text(exc)}"
            continue
        done = {r.id for r in result.results}
        reasons = {i: e.message for e in result.errors for i in e.ids}
        for user_id, hubspot_id in chunk:
            if hubspot_id in done:
                sent.marked.add(user_id)
            else:
                sent.failed[user_id] = reasons.get(hubspot_id, "HubSpot returned no result")


def _update(hs: BlockingClient, inputs: list[ObjectUpdate]) -> BatchResult[SimplePublicObject]:
    return hs.call(lambda c: c.contacts.batch_update(inputs))


def _add_members(hs: BlockingClient, list_id: str, ids: list[str]) -> MembershipsUpdate:
    return hs.call(lambda c: c.lists.add_members(list_id, ids))


def add_to_list(hs: BlockingClient, list_id: str, contacts: dict[int, str], sent: Sent) -> None:
    """Add the contacts (user → contact id) to HubSpot list `list_id`."""
    pairs = [(u, h) for u, h in contacts.items() if u not in sent.failed and u not in sent.gone]
    for i in range(0, len(pairs), LIST_BATCH):
        chunk = pairs[i : i + LIST_BATCH]
        ids = [h for _, h in chunk]
        try:
            result = _add_members(hs, list_id, ids)
        except HubSpotError as exc:
            for user_id, _ in chunk:
                sent.list_failed[user_id] = (
                    f"adding to HubSpot list {list_id} failed: {error_text(exc)}"
                )
            continue
        missing = set(result.record_ids_missing)
        for user_id, hubspot_id in chunk:
            if hubspot_id in missing:
                sent.list_failed[user_id] = f"HubSpot list {list_id}: contact {hubspot_id} missing"
            else:
                sent.listed[user_id] = list_id


__all__ = [
    "DELETED_PROPERTY",
    "GROUP",
    "LIST_BATCH",
    "add_to_list",
    "ensure_deleted_property",
    "mark_deleted",
    "remember_deleted_property",
]
