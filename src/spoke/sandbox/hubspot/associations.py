"""Associations v4 (contract §2): default and labelled associations, batch ops, labels."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm, errors
from spoke.sandbox.hubspot.http import JSON, Call, api_route, no_content
from spoke.sandbox.hubspot.schema import BUILTIN_ASSOCIATIONS, ObjectType
from spoke.sandbox.hubspot.timefmt import iso_ms

JSONDict = dict[str, Any]
OBJ = "/crm/v4/objects/{objectType}/{objectId}/associations"
BATCH = "/crm/v4/associations/{fromObjectType}/{toObjectType}"
MAX_READ_INPUTS = 1000
MAX_WRITE_INPUTS = 2000  # UNCONFIRMED in the contract; a third-party connector says 2,000


def _num(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _spec(call: Call, from_type: str, to_type: str, type_id: int) -> JSONDict:
    info = crm.association_info(call.portal, from_type, to_type, type_id)
    category, label = (info[0], info[1]) if info else ("HUBSPOT_DEFINED", None)
    return {"category": category, "typeId": type_id, "label": label}


def _types(raw: object) -> list[int]:
    if not isinstance(raw, list) or not raw:
        raise errors.validation(
            "Invalid input JSON: expected a non-empty array of association specs"
        )
    out = []
    for spec in raw:
        type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
        category = spec.get("associationCategory") if isinstance(spec, dict) else None
        if not isinstance(type_id, int) or category not in (
            "HUBSPOT_DEFINED",
            "USER_DEFINED",
            "INTEGRATOR_DEFINED",
            "WORK",
        ):
            raise errors.validation("Each spec needs associationCategory and associationTypeId")
        out.append(type_id)
    return out


def _labels_pair(call: Call, ft: ObjectType, fid: str, tt: ObjectType, tid: str) -> JSONDict:
    ids = call.portal.assoc.get((ft.name, fid), {}).get((tt.name, tid), set())
    labels = []
    for type_id in sorted(ids):
        info = crm.association_info(call.portal, ft.name, tt.name, type_id)
        if info is not None and info[1]:
            labels.append(info[1])
    return {
        "fromObjectTypeId": ft.type_id,
        "fromObjectId": _num(fid),
        "toObjectTypeId": tt.type_id,
        "toObjectId": _num(tid),
        "labels": labels,
    }


def _both_exist(call: Call, ft: ObjectType, fid: str, tt: ObjectType, tid: str) -> tuple[str, str]:
    a = crm.get_or_404(call.portal, ft, fid)
    b = crm.get_or_404(call.portal, tt, tid)
    return a.id, b.id


def _default_results(
    call: Call, ft: ObjectType, fid: str, tt: ObjectType, tid: str
) -> list[JSONDict]:
    type_id = crm.default_type_id(ft.name, tt.name)
    if type_id is None:
        raise errors.validation(
            f"There is no default association type between {ft.type_id} and {tt.type_id}"
        )
    crm.add_association(call.portal, ft.name, fid, tt.name, tid, [type_id])
    info = crm.association_info(call.portal, ft.name, tt.name, type_id)
    assert info is not None
    return [
        {
            "from": {"id": fid},
            "to": {"id": tid},
            "associationSpec": {"associationCategory": info[0], "associationTypeId": type_id},
        },
        {
            "from": {"id": tid},
            "to": {"id": fid},
            "associationSpec": {"associationCategory": info[0], "associationTypeId": info[3]},
        },
    ]


def _batch_body(call: Call, results: list[JSONDict], failures: list[JSONDict]) -> JSONDict:
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
    return body


# -- per record ----------------------------------------------------------------------------------


def create_default(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.write_scopes)
    fid, tid = _both_exist(call, ft, call.path["fromObjectId"], tt, call.path["toObjectId"])
    return JSON(_batch_body(call, _default_results(call, ft, fid, tt, tid), []))


def create_labelled(call: Call) -> Response:
    ft, tt = call.object_type(), call.object_type("toObjectType")
    call.require(ft.write_scopes)
    type_ids = _types(call.json())
    fid, tid = _both_exist(call, ft, call.path["objectId"], tt, call.path["toObjectId"])
    crm.add_association(call.portal, ft.name, fid, tt.name, tid, type_ids)
    return JSON(_labels_pair(call, ft, fid, tt, tid), status_code=201)


def list_for_record(call: Call) -> Response:
    ft, tt = call.object_type(), call.object_type("toObjectType")
    call.require(ft.read_scopes)
    rec = crm.get_or_404(call.portal, ft, call.path["objectId"])
    limit = call.q_int("limit", 500, maximum=500)
    start = call.q_int("after", 0)
    items = crm.associations_of(call.portal, ft.name, rec.id, tt.name)
    page = items[start : start + limit]
    out: JSONDict = {
        "results": [
            {
                "toObjectId": _num(tid),
                "associationTypes": [_spec(call, ft.name, tt.name, i) for i in sorted(ids)],
            }
            for tid, ids in page
        ]
    }
    if start + limit < len(items):
        out["paging"] = {
            "next": {"after": str(start + limit), "link": call.link(str(start + limit))}
        }
    return JSON(out)


def remove_pair(call: Call) -> Response:
    ft, tt = call.object_type(), call.object_type("toObjectType")
    call.require(ft.write_scopes)
    crm.remove_association(
        call.portal, ft.name, call.path["objectId"], tt.name, call.path["toObjectId"], None
    )
    return no_content()


# -- batch ---------------------------------------------------------------------------------------


def _batch_inputs(call: Call, maximum: int) -> list[JSONDict]:
    inputs = call.json_object().get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise errors.validation("Invalid input JSON: `inputs` must be an array of objects")
    if len(inputs) > maximum:
        raise errors.validation(f"Batch input size {len(inputs)} exceeds the maximum of {maximum}")
    return inputs


def _id_of(raw: object) -> str:
    return str(raw.get("id", "")) if isinstance(raw, dict) else ""


def batch_create(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.write_scopes)
    results: list[JSONDict] = []
    missing: list[str] = []
    for item in _batch_inputs(call, MAX_WRITE_INPUTS):
        fid, tid = _id_of(item.get("from")), _id_of(item.get("to"))
        type_ids = _types(item.get("types"))
        a, b = crm.find(call.portal, ft, fid), crm.find(call.portal, tt, tid)
        if a is None or b is None:
            missing.extend(x for x, r in ((fid, a), (tid, b)) if r is None)
            continue
        crm.add_association(call.portal, ft.name, a.id, tt.name, b.id, type_ids)
        results.append(_labels_pair(call, ft, a.id, tt, b.id))
    failures = [errors.not_found(m).standard_error() for m in missing]
    return JSON(_batch_body(call, results, failures), status_code=207 if failures else 201)


def batch_default(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.write_scopes)
    results: list[JSONDict] = []
    missing: list[str] = []
    for item in _batch_inputs(call, MAX_WRITE_INPUTS):
        fid, tid = _id_of(item.get("from")), _id_of(item.get("to"))
        a, b = crm.find(call.portal, ft, fid), crm.find(call.portal, tt, tid)
        if a is None or b is None:
            missing.extend(x for x, r in ((fid, a), (tid, b)) if r is None)
            continue
        results.extend(_default_results(call, ft, a.id, tt, b.id)[:1])
    failures = [errors.not_found(m).standard_error() for m in missing]
    return JSON(_batch_body(call, results, failures), status_code=207 if failures else 200)


def batch_read(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.read_scopes)
    results: list[JSONDict] = []
    missing: list[str] = []
    for item in _batch_inputs(call, MAX_READ_INPUTS):
        key = str(item.get("id", ""))
        rec = crm.find(call.portal, ft, key)
        if rec is None:
            missing.append(key)
            continue
        items = crm.associations_of(call.portal, ft.name, rec.id, tt.name)
        if not items:
            missing.append(key)
            continue
        start = int(item.get("after") or 0)
        page = items[start : start + 500]
        entry: JSONDict = {
            "from": {"id": rec.id},
            "to": [
                {
                    "toObjectId": _num(tid),
                    "associationTypes": [_spec(call, ft.name, tt.name, i) for i in sorted(ids)],
                }
                for tid, ids in page
            ],
        }
        if start + 500 < len(items):
            entry["paging"] = {"next": {"after": str(start + 500)}}
        results.append(entry)
    failures = [
        {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
            "message": f"No {tt.singular} is associated with {ft.singular} {m}.",
            "context": {"fromObjectId": [m]},
            "errors": [],
            "links": {},
        }
        for m in missing
    ]
    return JSON(_batch_body(call, results, failures), status_code=207 if failures else 200)


def batch_archive(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.write_scopes)
    for item in _batch_inputs(call, MAX_WRITE_INPUTS):
        fid = _id_of(item.get("from"))
        targets = item.get("to")
        for target in targets if isinstance(targets, list) else []:
            crm.remove_association(call.portal, ft.name, fid, tt.name, _id_of(target), None)
    return no_content()


def batch_archive_labels(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.write_scopes)
    for item in _batch_inputs(call, MAX_WRITE_INPUTS):
        fid, tid = _id_of(item.get("from")), _id_of(item.get("to"))
        crm.remove_association(call.portal, ft.name, fid, tt.name, tid, _types(item.get("types")))
    return no_content()


# -- labels --------------------------------------------------------------------------------------


def list_labels(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.read_scopes)
    results = [
        {"category": a.category, "typeId": a.type_id, "label": a.label}
        for a in BUILTIN_ASSOCIATIONS
        if a.from_type == ft.name and a.to_type == tt.name
    ]
    results.extend(
        {"category": d["category"], "typeId": type_id, "label": d["label"]}
        for type_id, d in sorted(call.portal.labels.items())
        if d["fromType"] == ft.name and d["toType"] == tt.name
    )
    return JSON({"results": results})


def create_label(call: Call) -> Response:
    ft, tt = call.object_type("fromObjectType"), call.object_type("toObjectType")
    call.require(ft.schema_write_scopes)
    body = call.json_object()
    label, name = body.get("label"), body.get("name")
    if not isinstance(label, str) or not label or not isinstance(name, str) or not name:
        raise errors.validation("label and name are required")
    inverse_label = body.get("inverseLabel") or label
    portal = call.portal
    forward, backward = portal.next_label_id, portal.next_label_id + 1
    portal.next_label_id += 2
    for type_id, a, b, lbl, inv in (
        (forward, ft, tt, label, backward),
        (backward, tt, ft, str(inverse_label), forward),
    ):
        portal.labels[type_id] = {
            "fromType": a.name,
            "toType": b.name,
            "label": lbl,
            "name": name,
            "category": "USER_DEFINED",
            "inverseTypeId": inv,
        }
    return JSON(
        {
            "results": [
                {"category": "USER_DEFINED", "typeId": forward, "label": label},
                {"category": "USER_DEFINED", "typeId": backward, "label": inverse_label},
            ]
        }
    )


def delete_label(call: Call) -> Response:
    ft = call.object_type("fromObjectType")
    call.require(ft.schema_write_scopes)
    try:
        type_id = int(call.path["associationTypeId"])
    except ValueError:
        raise errors.validation("associationTypeId must be an integer") from None
    d = call.portal.labels.pop(type_id, None)
    if d is None:
        raise errors.resource_not_found(f"Association type {type_id} not found")
    call.portal.labels.pop(d["inverseTypeId"], None)
    return no_content()


routes: list[Route] = [
    api_route(
        "PUT",
        "/crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}",
        create_default,
    ),
    api_route("PUT", OBJ + "/{toObjectType}/{toObjectId}", create_labelled),
    api_route("DELETE", OBJ + "/{toObjectType}/{toObjectId}", remove_pair),
    api_route("GET", OBJ + "/{toObjectType}", list_for_record),
    api_route("POST", BATCH + "/batch/create", batch_create),
    api_route("POST", BATCH + "/batch/associate/default", batch_default),
    api_route("POST", BATCH + "/batch/read", batch_read),
    api_route("POST", BATCH + "/batch/archive", batch_archive),
    api_route("POST", BATCH + "/batch/labels/archive", batch_archive_labels),
    api_route("GET", BATCH + "/labels", list_labels),
    api_route("POST", BATCH + "/labels", create_label),
    api_route("DELETE", BATCH + "/labels/{associationTypeId}", delete_label),
]
