"""CRM objects v3 batch routes: read, create, update, upsert, archive (at most 100 inputs).

Whole-batch failures (bad JSON, invalid property values, too many inputs) answer 400 and write
nothing. Per-record failures (missing ids; create conflicts when every input has an
`objectWriteTraceId`) answer 207 with `numErrors` and `errors`.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm, errors
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.http import JSON, Call, api_route, no_content
from spoke.sandbox.hubspot.schema import ObjectType
from spoke.sandbox.hubspot.store import Record
from spoke.sandbox.hubspot.timefmt import iso_ms

BASE = "/crm/v3/objects/{objectType}/batch"
MAX_INPUTS = 100
JSONDict = dict[str, Any]


def _inputs(call: Call, body: JSONDict) -> list[JSONDict]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise errors.validation("Invalid input JSON: `inputs` must be an array")
    if len(inputs) > MAX_INPUTS:
        raise errors.validation(
            f"Batch input size {len(inputs)} exceeds the maximum of {MAX_INPUTS}",
            context={"maxSize": [str(MAX_INPUTS)]},
        )
    for item in inputs:
        if not isinstance(item, dict):
            raise errors.validation("Invalid input JSON: each input must be an object")
    return inputs


def _result(
    call: Call,
    results: list[JSONDict],
    failures: list[JSONDict],
    status: int,
) -> Response:
    stamp = iso_ms(call.now)
    body: JSONDict = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": stamp,
        "completedAt": stamp,
    }
    if failures:
        body["numErrors"] = len(failures)
        body["errors"] = failures
        return JSON(body, status_code=207)
    return JSON(body, status_code=status)


def _missing(otype: ObjectType, ids: list[str]) -> JSONDict:
    return {
        "status": "error",
        "category": "OBJECT_NOT_FOUND",
        "message": (
            f"Could not get some {otype.singular.upper()} objects, they may be deleted or not "
            "exist. Check that ids are valid."
        ),
        "context": {"ids": ids},
        "errors": [],
        "links": {},
    }


def _no_duplicates(ids: list[str]) -> None:
    seen: set[str] = set()
    dupes = []
    for key in ids:
        low = key.lower()
        if low in seen:
            dupes.append(key)
        seen.add(low)
    if dupes:
        raise errors.validation(
            f"Duplicate IDs found in batch input: {dupes}. IDs must be unique",
            context={"ids": dupes},
        )


def batch_read(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.read_scopes)
    body = call.json_object()
    inputs = _inputs(call, body)
    props = body.get("properties") or None
    history = body.get("propertiesWithHistory") or None
    id_property = body.get("idProperty") or None
    archived = call.q_bool("archived")
    results, missing, seen = [], [], set()
    for item in inputs:
        key = str(item.get("id", ""))
        rec = crm.find(call.portal, otype, key, id_property, archived=archived)
        if rec is None:
            missing.append(key)
        elif rec.id not in seen:
            seen.add(rec.id)
            results.append(crm.to_json(call.portal, otype, rec, props, history))
    return _result(call, results, [_missing(otype, missing)] if missing else [], 200)


def batch_create(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    portal = call.portal
    inputs = _inputs(call, call.json_object())
    trace_ids = [item.get("objectWriteTraceId") for item in inputs]
    # Partial success only when every input carries a unique objectWriteTraceId (contract §1).
    partial = bool(inputs) and all(trace_ids) and len(set(trace_ids)) == len(trace_ids)
    prepared = []
    for item in inputs:
        values = crm.validate_properties(portal, otype, item.get("properties", {}))
        crm.require_timestamp(portal, otype, values)
        links = crm.inline_associations(portal, otype, "", item.get("associations"))
        prepared.append((item, values, links))
    if not partial:
        _check_batch_unique(call, otype, [values for _, values, _ in prepared])
    results, failures = [], []
    for item, values, links in prepared:
        try:
            rec = crm.create(portal, otype, values, call.now, call.source)
        except SandboxError as err:
            failures.append(
                err.standard_error(
                    context={
                        **(err.context or {}),
                        "objectWriteTraceId": [str(item["objectWriteTraceId"])],
                    }
                )
            )
            continue
        for to_type, to_id, type_ids in links:
            crm.add_association(portal, otype.name, rec.id, to_type, to_id, type_ids)
        out = crm.to_json(portal, otype, rec, list(values))
        if partial:
            out["objectWriteTraceId"] = item["objectWriteTraceId"]
        results.append(out)
    return _result(call, results, failures, 201)


def _check_batch_unique(call: Call, otype: ObjectType, batch: list[crm.Values]) -> None:
    """Without trace ids a batch create is all-or-nothing: fail before writing anything."""
    tbl = call.portal.tables[otype.name]
    for prop, idx in tbl.unique.items():
        seen: set[str] = set()
        for values in batch:
            value = values.get(prop)
            if not value:
                continue
            low = value.lower()
            existing = idx.get(low)
            if existing is not None:
                if otype.name == "contacts" and prop == "email":
                    raise errors.contact_exists(existing)
                raise errors.conflict(f"Duplicate value {value!r} for unique property {prop}")
            if low in seen:
                raise errors.validation(f"Duplicate value {value!r} for unique property {prop}")
            seen.add(low)


def batch_update(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    portal = call.portal
    inputs = _inputs(call, call.json_object())
    _no_duplicates([str(item.get("id", "")) for item in inputs])
    prepared: list[tuple[Record, crm.Values]] = []
    missing = []
    for item in inputs:
        key = str(item.get("id", ""))
        values = crm.validate_properties(portal, otype, item.get("properties", {}))
        rec = crm.find(portal, otype, key, item.get("idProperty") or None)
        if rec is None:
            missing.append(key)
        else:
            prepared.append((rec, values))
    results = []
    for rec, values in prepared:
        crm.update(portal, otype, rec, values, call.now, call.source)
        results.append(crm.to_json(portal, otype, rec, list(values)))
    return _result(call, results, [_missing(otype, missing)] if missing else [], 200)


def batch_upsert(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    portal = call.portal
    tbl = portal.tables[otype.name]
    inputs = _inputs(call, call.json_object())
    keys = [str(item.get("id", "")) for item in inputs]
    _no_duplicates(keys)
    # Email upserts are all-or-nothing ("partial upserts are not supported"): validate everything
    # first, then write.
    prepared: list[tuple[str, str, crm.Values]] = []
    for key, item in zip(keys, inputs, strict=True):
        id_property = item.get("idProperty")
        if not id_property or id_property not in tbl.unique:
            raise errors.validation(
                f"Upsert requires idProperty to be a unique property of {otype.name}; "
                f"got {id_property!r}",
            )
        values = crm.validate_properties(portal, otype, item.get("properties", {}))
        prepared.append((key, id_property, values))
    results = []
    for key, id_property, values in prepared:
        rec = crm.find(portal, otype, key, id_property)
        if rec is None:
            if not values.get(id_property):
                if id_property == "email":
                    values = {**values, "email": key.lower()}
                else:
                    values = {**values, id_property: key}
            crm.require_timestamp(portal, otype, values)
            rec = crm.create(portal, otype, values, call.now, call.source)
            is_new = True
        else:
            crm.update(portal, otype, rec, values, call.now, call.source)
            is_new = False
        out = crm.to_json(portal, otype, rec, list(values))
        out["new"] = is_new
        results.append(out)
    return _result(call, results, [], 200)


def batch_archive(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.write_scopes)
    inputs = _inputs(call, call.json_object())
    for item in inputs:
        rec = crm.find(call.portal, otype, str(item.get("id", "")))
        if rec is not None:
            crm.archive(call.portal, otype, rec, call.now, call.source)
    return no_content()


routes: list[Route] = [
    api_route("POST", BASE + "/read", batch_read),
    api_route("POST", BASE + "/create", batch_create),
    api_route("POST", BASE + "/update", batch_update),
    api_route("POST", BASE + "/upsert", batch_upsert),
    api_route("POST", BASE + "/archive", batch_archive),
]
