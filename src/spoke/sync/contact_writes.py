"""Write a page of contacts to HubSpot in as few requests as the outcome allows.

The per-portal budget (190 requests per 10 s) is what bounds a backfill, so every request
must carry a full batch. The cheapest path for each kind of record:

- linked users (contact id known): one batch update by id; a contact that vanished (404 /
  OBJECT_NOT_FOUND) falls through to the unlinked path;
- unlinked users: one batch *create* carrying the initial lead status, with a unique
  `objectWriteTraceId` per input so HubSpot answers 207 item by item; the inputs it refuses
  (mostly "already exists" for contacts made by someone else) are upserted by email, which
  cannot duplicate and never touches their lead status.

A first backfill into an empty portal thus costs one request per 100 records instead of two
(upsert, then a second write for the lead status of the created ones). A create that fails
as a whole or in transit is not retried as a create (it may have happened): it is upserted
by email, which is idempotent.
"""

from __future__ import annotations

from spoke.hubspot import BlockingClient, HubSpotError, ObjectCreate
from spoke.sync.engine import _Out, _Sent, _update_split, _upsert_split


def write_contacts(
    hs: BlockingClient, outs: list[_Out], sent: _Sent, *, lead_status: str | None
) -> None:
    """Send every out (≤ 100) and record per-user outcomes in `sent`."""
    linked = [o for o in outs if o.hubspot_id and o.props]
    fresh = [o for o in outs if not o.hubspot_id and o.props]
    if linked:
        _update_split(hs, linked, sent)
        for o in linked:
            if o.user_id in sent.gone:  # the linked contact is gone: find or make it by email
                sent.gone.discard(o.user_id)
                fresh.append(_Out(o.user_id, o.external_id, o.email, None, o.props, o.desired))
    if fresh:
        _create_then_upsert(hs, fresh, sent, lead_status)


def _create_then_upsert(
    hs: BlockingClient, outs: list[_Out], sent: _Sent, lead_status: str | None
) -> None:
    extra = {"hs_lead_status": lead_status} if lead_status else {}
    inputs = [
        ObjectCreate(properties={**o.props, **extra}, object_write_trace_id=str(o.user_id))
        for o in outs
    ]
    try:
        result = hs.call(lambda c: c.contacts.batch_create(inputs))
    except HubSpotError:
        # Refused as a whole (one bad value) or lost in transit (maybe created): upserting by
        # email is safe either way, and splits to isolate a bad record.
        _upsert_split(hs, outs, sent)
        return
    made = {r.object_write_trace_id: r for r in result.results if r.object_write_trace_id}
    retry: list[_Out] = []
    for o in outs:
        found = made.get(str(o.user_id))
        if found is not None:
            sent.ok[o.user_id] = (found.id, True)
        else:
            retry.append(o)  # refused (usually: already exists) or unanswered
    if retry:
        _upsert_split(hs, retry, sent)


__all__ = ["write_contacts"]
