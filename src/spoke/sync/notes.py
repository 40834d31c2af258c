"""Tags travel to HubSpot as one note per contact (`Spoke tags: k=v, …`).

The note is created on the contact's first sync (associated with it) and updated in place
when the tags change; its id and a hash of its body are kept on the link, so unchanged tags
write nothing. A failed note write is logged and tried again the next time the user is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from spoke.core.clock import utcnow
from spoke.hubspot import (
    AssociationInput,
    BatchResult,
    BlockingClient,
    HubSpotError,
    ObjectCreate,
    ObjectUpdate,
    SimplePublicObject,
)

if TYPE_CHECKING:
    from spoke.sync.outbound import Plan, Sent

log = structlog.get_logger("spoke.sync")

BATCH = 100
NOTE_TO_CONTACT = 202  # HubSpot-defined association type: note → contact


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


def send_notes(hs: BlockingClient, plan: Plan, sent: Sent) -> None:
    """Create or update the tag notes the plan names, for contacts that synced."""
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
