"""Lists v3: manual (and snapshot) lists of contacts or companies, with membership edits.

Dynamic (filter-based) lists are not implemented; creating one answers 400.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm, errors
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.http import JSON, Call, api_route, no_content
from spoke.sandbox.hubspot.schema import ObjectType, resolve_object_type
from spoke.sandbox.hubspot.store import ManualList
from spoke.sandbox.hubspot.timefmt import iso_ms

JSONDict = dict[str, Any]
READ = ("crm.lists.read",)
WRITE = ("crm.lists.write",)
PROCESSING_TYPES = ("MANUAL", "SNAPSHOT")


def _json(call: Call, lst: ManualList) -> JSONDict:
    out: JSONDict = {
        "listId": lst.list_id,
        "listVersion": lst.version,
        "name": lst.name,
        "processingType": lst.processing_type,
        "processingStatus": "COMPLETE",
        "objectTypeId": lst.object_type_id,
        "createdAt": iso_ms(lst.created_ms),
        "updatedAt": iso_ms(lst.updated_ms),
        "filtersUpdatedAt": iso_ms(lst.created_ms),
        "createdById": str(call.token.user_id),
        "updatedById": str(call.token.user_id),
        "size": len(lst.members),
    }
    if lst.deleted_ms is not None:
        out["deletedAt"] = iso_ms(lst.deleted_ms)
    return out


def _get(call: Call, *, deleted: bool = False) -> ManualList:
    list_id = call.path["listId"]
    lst = call.portal.lists.get(list_id)
    if lst is None or (lst.deleted_ms is not None) != deleted:
        raise SandboxError(
            404,
            f"List {list_id} does not exist.",
            "OBJECT_NOT_FOUND",
            context={"listId": [list_id]},
        )
    return lst


def _object_type(lst: ManualList) -> ObjectType:
    otype = resolve_object_type(lst.object_type_id)
    assert otype is not None
    return otype


def create_list(call: Call) -> Response:
    call.require(WRITE)
    body = call.json_object()
    name = body.get("name")
    type_id = body.get("objectTypeId")
    processing = body.get("processingType")
    if not isinstance(name, str) or not name.strip():
        raise errors.validation("name is required")
    otype = resolve_object_type(str(type_id)) if type_id else None
    if otype is None or otype.name not in ("contacts", "companies"):
        raise errors.validation(f"objectTypeId {type_id!r} is not supported for lists")
    if processing not in PROCESSING_TYPES:
        raise errors.validation(
            f"processingType {processing!r} is not supported by the sandbox; use MANUAL or SNAPSHOT"
        )
    for other in call.portal.lists.values():
        if other.deleted_ms is None and other.name.lower() == name.lower():
            raise errors.validation(
                f"A list named {name!r} already exists.", sub_category="ILS.DUPLICATE_LIST_NAMES"
            )
    list_id = str(call.portal.next_list_id)
    call.portal.next_list_id += 1
    lst = ManualList(list_id, name, otype.type_id, processing, call.now, call.now)
    call.portal.lists[list_id] = lst
    return JSON({"list": _json(call, lst)})


def get_list(call: Call) -> Response:
    call.require(READ)
    return JSON({"list": _json(call, _get(call))})


def get_lists(call: Call) -> Response:
    call.require(READ)
    wanted = call.q_list("listIds") or []
    found = [call.portal.lists.get(i) for i in wanted]
    return JSON(
        {"lists": [_json(call, lst) for lst in found if lst is not None and lst.deleted_ms is None]}
    )


def get_by_name(call: Call) -> Response:
    call.require(READ)
    name = call.path["listName"]
    otype = call.object_type("objectTypeId")
    for lst in call.portal.lists.values():
        if lst.deleted_ms is None and lst.name == name and lst.object_type_id == otype.type_id:
            return JSON({"list": _json(call, lst)})
    raise SandboxError(404, f"List {name} does not exist.", "OBJECT_NOT_FOUND")


def search_lists(call: Call) -> Response:
    call.require(READ)
    body = call.json_object() if call.body else {}
    query = str(body.get("query") or "").lower()
    offset = int(body.get("offset") or 0)
    count = min(int(body.get("count") or 20), 500)
    ids = {str(i) for i in body.get("listIds") or []}
    kinds = set(body.get("processingTypes") or [])
    hits = [
        lst
        for lst in call.portal.lists.values()
        if lst.deleted_ms is None
        and query in lst.name.lower()
        and (not ids or lst.list_id in ids)
        and (not kinds or lst.processing_type in kinds)
    ]
    page = hits[offset : offset + count]
    return JSON(
        {
            "lists": [{**_json(call, lst), "additionalProperties": {}} for lst in page],
            "total": len(hits),
            "offset": offset + len(page),
            "hasMore": offset + count < len(hits),
        }
    )


def rename_list(call: Call) -> Response:
    call.require(WRITE)
    lst = _get(call)
    name = call.query.get("listName")
    if not name:
        raise errors.validation("listName is required")
    lst.name = name
    lst.updated_ms = call.now
    lst.version += 1
    return JSON({"updatedList": _json(call, lst)})


def delete_list(call: Call) -> Response:
    call.require(WRITE)
    _get(call).deleted_ms = call.now
    return no_content()


def restore_list(call: Call) -> Response:
    call.require(WRITE)
    _get(call, deleted=True).deleted_ms = None
    return no_content()


def _ids(raw: object) -> list[str]:
    if not isinstance(raw, list):
        raise errors.validation("Invalid input JSON: expected an array of record ids")
    return [str(v) for v in raw]


def _add(call: Call, lst: ManualList, ids: list[str]) -> tuple[list[str], list[str]]:
    otype = _object_type(lst)
    added, missing = [], []
    for rid in ids:
        rec = crm.find(call.portal, otype, rid)
        if rec is None:
            missing.append(rid)
        elif rec.id not in lst.members:
            lst.members[rec.id] = call.now
            added.append(rec.id)
    return added, missing


def _remove(lst: ManualList, ids: list[str]) -> tuple[list[str], list[str]]:
    removed, missing = [], []
    for rid in ids:
        if lst.members.pop(rid, None) is None:
            missing.append(rid)
        else:
            removed.append(rid)
    return removed, missing


def _editable(lst: ManualList) -> None:
    if lst.processing_type != "MANUAL" and lst.processing_type != "SNAPSHOT":
        raise errors.validation(f"List {lst.list_id} is not a manual list")


def add_members(call: Call) -> Response:
    call.require(WRITE)
    lst = _get(call)
    _editable(lst)
    added, missing = _add(call, lst, _ids(call.json()))
    lst.updated_ms = call.now
    # The spec's response model spells it `recordsIdsAdded`; both spellings are sent.
    return JSON({"recordIdsAdded": added, "recordsIdsAdded": added, "recordIdsMissing": missing})


def remove_members(call: Call) -> Response:
    call.require(WRITE)
    lst = _get(call)
    _editable(lst)
    removed, missing = _remove(lst, _ids(call.json()))
    lst.updated_ms = call.now
    return JSON({"recordIdsRemoved": removed, "recordIdsMissing": missing})


def add_and_remove(call: Call) -> Response:
    call.require(WRITE)
    lst = _get(call)
    _editable(lst)
    body = call.json_object()
    added, missing_add = _add(call, lst, _ids(body.get("recordIdsToAdd") or []))
    removed, missing_rm = _remove(lst, _ids(body.get("recordIdsToRemove") or []))
    lst.updated_ms = call.now
    return JSON(
        {
            "recordIdsAdded": added,
            "recordsIdsAdded": added,
            "recordIdsRemoved": removed,
            "recordIdsMissing": missing_add + missing_rm,
        }
    )


def clear_members(call: Call) -> Response:
    call.require(WRITE)
    lst = _get(call)
    _editable(lst)
    lst.members.clear()
    return no_content()


def read_members(call: Call) -> Response:
    call.require(READ)
    lst = _get(call)
    limit = call.q_int("limit", 100, maximum=250)
    start = call.q_int("after", 0)
    ordered = sorted(lst.members.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
    page = ordered[start : start + limit]
    out: JSONDict = {
        "results": [{"recordId": rid, "membershipTimestamp": iso_ms(ts)} for rid, ts in page],
        "total": len(ordered),
    }
    if start + limit < len(ordered):
        out["paging"] = {"next": {"after": str(start + limit)}}
    return JSON(out)


def record_memberships(call: Call) -> Response:
    call.require(READ)
    otype = call.object_type("objectTypeId")
    rid = call.path["recordId"]
    results = [
        {
            "listId": lst.list_id,
            "listVersion": lst.version,
            "firstAddedTimestamp": iso_ms(lst.members[rid]),
            "lastAddedTimestamp": iso_ms(lst.members[rid]),
        }
        for lst in call.portal.lists.values()
        if lst.deleted_ms is None and lst.object_type_id == otype.type_id and rid in lst.members
    ]
    return JSON({"results": results, "total": len(results)})


BASE = "/crm/v3/lists"
routes: list[Route] = [
    api_route("POST", BASE, create_list),
    api_route("POST", BASE + "/", create_list),
    api_route("GET", BASE, get_lists),
    api_route("GET", BASE + "/", get_lists),
    api_route("POST", BASE + "/search", search_lists),
    api_route("GET", BASE + "/object-type-id/{objectTypeId}/name/{listName}", get_by_name),
    api_route("GET", BASE + "/records/{objectTypeId}/{recordId}/memberships", record_memberships),
    api_route("GET", BASE + "/{listId}", get_list),
    api_route("DELETE", BASE + "/{listId}", delete_list),
    api_route("PUT", BASE + "/{listId}/restore", restore_list),
    api_route("PUT", BASE + "/{listId}/update-list-name", rename_list),
    api_route("PUT", BASE + "/{listId}/memberships/add", add_members),
    api_route("PUT", BASE + "/{listId}/memberships/remove", remove_members),
    api_route("PUT", BASE + "/{listId}/memberships/add-and-remove", add_and_remove),
    api_route("GET", BASE + "/{listId}/memberships", read_members),
    api_route("GET", BASE + "/{listId}/memberships/join-order", read_members),
    api_route("DELETE", BASE + "/{listId}/memberships", clear_members),
]
