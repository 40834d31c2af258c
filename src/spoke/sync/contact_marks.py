"""What the sync does to HubSpot contacts besides their mapped properties.

- **The settings' HubSpot list** (`hubspot_list_id`, a MANUAL or SNAPSHOT list): every
  contact Spoke sends (created, matched by email, or updated), in real time or by a manual
  sync to HubSpot (`backfill_list`), is added once; the list id is kept on the link
  (`contact_links.hubspot_list_id`), so it is not added again unless the setting names
  another list (then each contact joins the new list on its next send, or at the next
  manual sync to HubSpot) or the link moves to another contact. Adds go in batches of
  `LIST_BATCH` ids through the lists v3 membership call (idempotent: HubSpot ignores ids
  already in the list, so the client's retries of 429/5xx and a killed run's repeated page
  are safe); a failed add marks the link failing and the backoff retries it.

  Contacts that only came *from* HubSpot (inbound real time, reconcile, a manual sync to
  Spoke) are not added: the list marks what Spoke transferred into HubSpot, as in the
  integration this sync follows ("transfer prospects from Snov.io to your HubSpot list",
  with a list on the other side, here `receive_list_id`, "to store the prospects synced
  from HubSpot"), and like the `to_hubspot` constants it tells a HubSpot user which contacts
  came from Spoke; HubSpot's own contacts would blur that, and a contact created in HubSpot
  is already where it belongs. Such a contact joins the list as soon as Spoke sends it (a
  change made in Spoke, or a manual sync to HubSpot, which sends every user).
- **Soft deletes** (`delete_policy = soft`): a user deleted in Spoke sets the contact's
  `spoke_deleted` property to `true`; restoring the user clears it. The property (a single
  checkbox in a `spoke` property group) is created in the portal the first time it is
  needed, which takes the `crm.schemas.contacts.write` scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from spoke.config import Settings
from spoke.connections.models import HubSpotConnection
from spoke.connections.service import request_client
from spoke.core.crypto import Encryptor
from spoke.core.errors import ServiceUnavailable
from spoke.hubspot import (
    BatchResult,
    BlockingClient,
    Conflict,
    HubSpotError,
    MembershipsUpdate,
    MissingScopes,
    ObjectNotFound,
    ObjectUpdate,
    PropertyCreate,
    PropertyOption,
    SimplePublicObject,
)
from spoke.sync.links import error_text, is_transient
from spoke.sync.settings import Effective

if TYPE_CHECKING:
    from spoke.sync.outbound import Sent

DELETED_PROPERTY = "spoke_deleted"
GROUP = "spoke"
LIST_BATCH = 100
CONTACT_LISTS = "0-1"
STATIC_LISTS = ("MANUAL", "SNAPSHOT")
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
                sent.fail(user_id, f"marking deleted in HubSpot failed: {error_text(exc)}", exc)
            continue
        done = {r.id for r in result.results}
        reasons = {i: e.message for e in result.errors for i in e.ids}
        for user_id, hubspot_id in chunk:
            if hubspot_id in done:
                sent.marked.add(user_id)
            else:
                sent.failed[user_id] = reasons.get(hubspot_id, "HubSpot returned no result")


class HubSpotUnavailable(ServiceUnavailable):
    code = "hubspot_unavailable"
    title = "HubSpot could not be reached"


def check_list(
    session: Session, settings: Settings, encryptor: Encryptor, workspace_id: str, list_id: str
) -> str | None:
    """What is wrong with HubSpot list `list_id` as the sync's list (None: it will do): it
    must exist, hold contacts, and be MANUAL or SNAPSHOT (HubSpot lets apps add members
    only to those), and the connection needs the lists scopes.

    Raises:
        HubSpotUnavailable: HubSpot could not answer.
    """
    conn = session.get(HubSpotConnection, workspace_id)
    missing = [s for s in ("crm.lists.read", "crm.lists.write") if conn and s not in conn.scopes]
    if missing:
        return (
            f"the HubSpot connection lacks {', '.join(missing)}; reconnect granting "
            "it to use a HubSpot list"
        )
    try:
        with request_client(session, settings, encryptor, workspace_id) as hs:
            found = hs.call(lambda c: c.lists.get(list_id))
    except ObjectNotFound:
        return f"HubSpot has no list {list_id}"
    except MissingScopes:
        return "the HubSpot connection may not read lists; reconnect granting crm.lists.read"
    except HubSpotError as exc:
        raise HubSpotUnavailable(f"HubSpot did not answer about list {list_id}: {exc}") from exc
    if found.deleted_at is not None:
        return f"HubSpot list {list_id} ({found.name}) is deleted"
    if found.object_type_id != CONTACT_LISTS:
        return f"HubSpot list {list_id} ({found.name}) does not hold contacts"
    if found.processing_type not in STATIC_LISTS:
        return (
            f"HubSpot list {list_id} ({found.name}) is a {found.processing_type} list; "
            "HubSpot lets apps add contacts only to MANUAL (static) lists"
        )
    return None


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
                if is_transient(exc):
                    sent.transient.add(user_id)
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
    "HubSpotUnavailable",
    "add_to_list",
    "check_list",
    "ensure_deleted_property",
    "mark_deleted",
    "remember_deleted_property",
]
