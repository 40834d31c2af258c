"""CRM objects v3, single-record routes: list, get, create, update, archive, merge, GDPR delete."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm, errors
from spoke.sandbox.hubspot.http import JSON, Call, api_route, no_content

BASE = "/crm/v3/objects/{objectType}"


def list_objects(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.read_scopes)
    limit = call.q_int("limit", 10, maximum=100)
    start = call.q_int("after", 0)
    archived = call.q_bool("archived")
    props = call.q_list("properties")
    history = call.q_list("propertiesWithHistory")
    wanted_assoc = call.q_list("associations")
    tbl = call.portal.tables[otype.name]
    order, records = tbl.order, tbl.records
    results: list[dict[str, object]] = []
    pos = start
    while pos < len(order) and len(results) < limit:
        rec = records.get(order[pos])
        pos += 1
        if rec is None or rec.archived != archived or rec.merged_into is not None:
            continue
        item = crm.to_json(call.portal, otype, rec, props, history)
        if wanted_assoc:
            assoc = crm.v3_associations(call.portal, otype, rec.id, wanted_assoc)
            if assoc:
                item["associations"] = assoc
        results.append(item)
    body: dict[str, object] = {"results": results}
    # Only offer a cursor when a further live record exists, so the last page has no `paging`.
    while pos < len(order):
        rec = records.get(order[pos])
        if rec is not None and rec.archived == archived and rec.merged_into is None:
            body["paging"] = {"next": {"after": str(pos), "link": call.link(str(pos))}}
            break
        pos += 1
    return JSON(body)


def get_object(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.read_scopes)
    rec = crm.get_or_404(
        call.portal,
        otype,
        call.path["objectId"],
        call.query.get("idProperty"),
        archived=call.q_bool("archived"),
    )
    out = crm.to_json(
        call.portal, otype, rec, call.q_list("properties"), call.q_list("propertiesWithHistory")
    )
    wanted_assoc = call.q_list("associations")
    if wanted_assoc:
        assoc = crm.v3_associations(call.portal, otype, rec.id, wanted_assoc)
        if assoc:
            out["associations"] = assoc
    return JSON(out)


def create_object(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    body = call.json_object()
    values = crm.validate_properties(call.portal, otype, body.get("properties", {}))
    crm.require_timestamp(call.portal, otype, values)
    # Validate associations before writing so a bad association leaves nothing behind.
    links = crm.inline_associations(call.portal, otype, "", body.get("associations"))
    rec = crm.create(call.portal, otype, values, call.now, call.source)
    for to_type, to_id, type_ids in links:
        crm.add_association(call.portal, otype.name, rec.id, to_type, to_id, type_ids)
    return JSON(crm.to_json(call.portal, otype, rec, list(values)), status_code=201)


def update_object(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    body = call.json_object()
    rec = crm.get_or_404(call.portal, otype, call.path["objectId"], call.query.get("idProperty"))
    values = crm.validate_properties(call.portal, otype, body.get("properties", {}))
    crm.update(call.portal, otype, rec, values, call.now, call.source)
    return JSON(crm.to_json(call.portal, otype, rec, list(values)))


def archive_object(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    rec = crm.find(call.portal, otype, call.path["objectId"])
    # HubSpot answers 204 whether or not the record existed.
    if rec is not None:
        crm.archive(call.portal, otype, rec, call.now, call.source)
    return no_content()


def merge_objects(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    if not otype.mergeable:
        raise errors.validation(f"Merging is not supported for {otype.name}")
    body = call.json_object()
    primary_id = str(body.get("primaryObjectId", ""))
    other_id = str(body.get("objectIdToMerge", ""))
    if not primary_id or not other_id:
        raise errors.validation("primaryObjectId and objectIdToMerge are required")
    primary = crm.get_or_404(call.portal, otype, primary_id)
    other = crm.get_or_404(call.portal, otype, other_id)
    if primary.id == other.id:
        raise errors.validation("Cannot merge an object with itself")
    crm.merge(call.portal, otype, primary, other, call.now, call.source)
    return JSON(crm.to_json(call.portal, otype, primary))


def gdpr_delete(call: Call) -> Response:
    otype = call.object_type()
    if otype.name != "contacts":
        raise errors.resource_not_found()
    call.require(otype.write_scopes)
    body = call.json_object()
    rec = crm.get_or_404(
        call.portal, otype, str(body.get("objectId", "")), body.get("idProperty") or None
    )
    # A privacy deletion fires `privacyDeletion` and then, through the archive, `deletion`
    # (contract §5).
    if call.portal.listening:
        call.portal.changes.append(
            {
                "kind": "privacyDeletion",
                "type": otype.name,
                "id": rec.id,
                "at": call.now,
                "source": call.source,
            }
        )
    crm.archive(call.portal, otype, rec, call.now, call.source)
    tbl = call.portal.tables[otype.name]
    del tbl.records[rec.id]
    tbl.purged.add(rec.id)
    for to_type, to_id in list(call.portal.assoc.get((otype.name, rec.id), {})):
        crm.remove_association(call.portal, otype.name, rec.id, to_type, to_id, None)
    call.portal.timeline.pop(rec.id, None)
    return no_content()


routes: list[Route] = [
    api_route("GET", BASE, list_objects),
    api_route("POST", BASE, create_object),
    api_route("POST", BASE + "/merge", merge_objects),
    api_route("POST", BASE + "/gdpr-delete", gdpr_delete),
    api_route("GET", BASE + "/{objectId}", get_object),
    api_route("PATCH", BASE + "/{objectId}", update_object),
    api_route("DELETE", BASE + "/{objectId}", archive_object),
]
