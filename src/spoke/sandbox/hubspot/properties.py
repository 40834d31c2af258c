"""Properties v3 (contract §3): definitions and groups, plus owners v3."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import errors
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.http import JSON, Call, api_route, no_content
from spoke.sandbox.hubspot.schema import FIELD_TYPES, PROPERTY_TYPES, property_definition
from spoke.sandbox.hubspot.timefmt import iso_ms

JSONDict = dict[str, Any]
BASE = "/crm/v3/properties/{objectType}"
_UPDATABLE = {
    "label",
    "description",
    "groupName",
    "type",
    "fieldType",
    "options",
    "displayOrder",
    "hidden",
    "formField",
    "calculationFormula",
}


def _not_found(name: str, object_type: str) -> SandboxError:
    return SandboxError(
        404,
        f"Unable to find property {name} on object type {object_type}",
        "OBJECT_NOT_FOUND",
        context={"propertyName": [name]},
    )


def list_properties(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_read_scopes)
    archived = call.q_bool("archived")
    defs = call.portal.properties[otype.name].values()
    return JSON({"results": [d for d in defs if d["archived"] == archived]})


def get_property(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_read_scopes)
    name = call.path["propertyName"]
    d = call.portal.properties[otype.name].get(name)
    if d is None or d["archived"] != call.q_bool("archived"):
        raise _not_found(name, otype.singular.upper())
    return JSON(d)


def _validate_options(raw: object) -> list[JSONDict]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise errors.validation("options must be an array")
    out = []
    for i, opt in enumerate(raw):
        if not isinstance(opt, dict) or not opt.get("label") or "value" not in opt:
            raise errors.validation("Each option needs a label and a value")
        out.append(
            {
                "label": str(opt["label"]),
                "value": str(opt["value"]),
                "hidden": bool(opt.get("hidden", False)),
                "displayOrder": int(opt.get("displayOrder", i)),
                **({"description": str(opt["description"])} if opt.get("description") else {}),
            }
        )
    return out


def _create_one(call: Call, object_type: str, body: JSONDict) -> JSONDict:
    portal = call.portal
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        raise errors.validation(
            f"Missing required fields: {missing}", context={"missingFields": missing}
        )
    name = str(body["name"])
    if not name.replace("_", "").isalnum() or not name[0].isalpha() or name != name.lower():
        raise errors.validation(
            f"Property name {name!r} must start with a letter and use only a-z, 0-9 and _"
        )
    if body["type"] not in PROPERTY_TYPES:
        raise errors.validation(f"type must be one of {sorted(PROPERTY_TYPES)}")
    if body["fieldType"] not in FIELD_TYPES:
        raise errors.validation(f"fieldType must be one of {sorted(FIELD_TYPES)}")
    if body["groupName"] not in portal.groups[object_type]:
        raise errors.validation(f"Property group {body['groupName']} does not exist")
    existing = portal.properties[object_type].get(name)
    if existing is not None and not existing["archived"]:
        raise errors.conflict(f"Property named '{name}' already exists.")
    options = _validate_options(body.get("options"))
    if body["type"] == "enumeration" and body["fieldType"] != "booleancheckbox" and not options:
        raise errors.validation("Enumeration properties need at least one option")
    d = property_definition(
        name,
        str(body["label"]),
        body["type"],
        body["fieldType"],
        body["groupName"],
        unique=bool(body.get("hasUniqueValue", False)),
        hubspot_defined=False,
        description=str(body.get("description", "")),
    )
    d["options"] = options
    d["hidden"] = bool(body.get("hidden", False))
    d["formField"] = bool(body.get("formField", False))
    d["displayOrder"] = int(body.get("displayOrder", -1))
    stamp = iso_ms(call.now)
    d["createdAt"] = d["updatedAt"] = stamp
    d["createdUserId"] = d["updatedUserId"] = str(call.token.user_id)
    portal.properties[object_type][name] = d
    if d["hasUniqueValue"]:
        tbl = portal.tables[object_type]
        idx = tbl.unique.setdefault(name, {})
        for rec in tbl.records.values():
            value = rec.props.get(name)
            if value and not rec.archived:
                idx.setdefault(value.lower(), rec.id)
    return d


def create_property(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_write_scopes)
    return JSON(_create_one(call, otype.name, call.json_object()), status_code=201)


def update_property(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_write_scopes)
    name = call.path["propertyName"]
    d = call.portal.properties[otype.name].get(name)
    if d is None or d["archived"]:
        raise _not_found(name, otype.singular.upper())
    body = call.json_object()
    if "hasUniqueValue" in body and bool(body["hasUniqueValue"]) != d["hasUniqueValue"]:
        raise errors.validation("hasUniqueValue cannot be changed once set")
    if d["modificationMetadata"]["readOnlyDefinition"]:
        allowed = {"label", "description", "options", "displayOrder", "hidden", "groupName"}
        if name != "hubspot_owner_id" and set(body) - allowed - {"hasUniqueValue"}:
            raise errors.validation(
                f"The definition of HubSpot-defined property {name} is read-only"
            )
    unknown = set(body) - _UPDATABLE - {"hasUniqueValue"}
    if unknown:
        raise errors.validation(f"Unknown or unchangeable fields: {sorted(unknown)}")
    if "type" in body and body["type"] not in PROPERTY_TYPES:
        raise errors.validation(f"type must be one of {sorted(PROPERTY_TYPES)}")
    if "fieldType" in body and body["fieldType"] not in FIELD_TYPES:
        raise errors.validation(f"fieldType must be one of {sorted(FIELD_TYPES)}")
    if "groupName" in body and body["groupName"] not in call.portal.groups[otype.name]:
        raise errors.validation(f"Property group {body['groupName']} does not exist")
    for key, value in body.items():
        if key == "options":
            d["options"] = _validate_options(value)
        elif key != "hasUniqueValue":
            d[key] = value
    d["updatedAt"] = iso_ms(call.now)
    d["updatedUserId"] = str(call.token.user_id)
    return JSON(d)


def archive_property(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_write_scopes)
    name = call.path["propertyName"]
    d = call.portal.properties[otype.name].get(name)
    if d is None or d["archived"]:
        raise _not_found(name, otype.singular.upper())
    if not d["modificationMetadata"]["archivable"]:
        raise errors.validation(f"HubSpot-defined property {name} cannot be archived")
    d["archived"] = True
    d["archivedAt"] = iso_ms(call.now)
    call.portal.tables[otype.name].unique.pop(name, None)
    return no_content()


def batch_create_properties(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_write_scopes)
    inputs = call.json_object().get("inputs")
    if not isinstance(inputs, list):
        raise errors.validation("inputs must be an array")
    results = [_create_one(call, otype.name, item) for item in inputs]
    stamp = iso_ms(call.now)
    return JSON(
        {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp},
        status_code=201,
    )


def batch_read_properties(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_read_scopes)
    body = call.json_object()
    defs = call.portal.properties[otype.name]
    archived = bool(body.get("archived", False))
    results, missing = [], []
    for item in body.get("inputs") or []:
        name = item.get("name") if isinstance(item, dict) else None
        d = defs.get(str(name))
        if d is None or d["archived"] != archived:
            missing.append(str(name))
        else:
            results.append(d)
    stamp = iso_ms(call.now)
    out: JSONDict = {
        "status": "COMPLETE",
        "results": results,
        "startedAt": stamp,
        "completedAt": stamp,
    }
    if missing:
        out["numErrors"] = len(missing)
        out["errors"] = [_not_found(n, otype.singular.upper()).standard_error() for n in missing]
        return JSON(out, status_code=207)
    return JSON(out)


def batch_archive_properties(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_write_scopes)
    defs = call.portal.properties[otype.name]
    for item in call.json_object().get("inputs") or []:
        d = defs.get(str(item.get("name"))) if isinstance(item, dict) else None
        if d is not None and d["modificationMetadata"]["archivable"]:
            d["archived"] = True
            d["archivedAt"] = iso_ms(call.now)
    return no_content()


# -- groups --------------------------------------------------------------------------------------


def list_groups(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_read_scopes)
    groups = call.portal.groups[otype.name].values()
    return JSON({"results": [g for g in groups if not g["archived"]]})


def _group(call: Call) -> JSONDict:
    otype = call.object_type()
    name = call.path["groupName"]
    group = call.portal.groups[otype.name].get(name)
    if group is None or group["archived"]:
        raise SandboxError(
            404,
            f"Unable to find property group {name}",
            "OBJECT_NOT_FOUND",
            context={"groupName": [name]},
        )
    return group


def get_group(call: Call) -> Response:
    call.require(call.object_type().schema_read_scopes)
    return JSON(_group(call))


def create_group(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_write_scopes)
    body = call.json_object()
    name, label = body.get("name"), body.get("label")
    if not isinstance(name, str) or not name or not isinstance(label, str) or not label:
        raise errors.validation("name and label are required")
    groups = call.portal.groups[otype.name]
    if name in groups and not groups[name]["archived"]:
        raise errors.conflict(f"Property group '{name}' already exists.")
    group = {
        "name": name,
        "label": label,
        "displayOrder": int(body.get("displayOrder", -1)),
        "archived": False,
    }
    groups[name] = group
    return JSON(group, status_code=201)


def update_group(call: Call) -> Response:
    call.require(call.object_type().schema_write_scopes)
    group = _group(call)
    body = call.json_object()
    for key in ("label", "displayOrder"):
        if key in body:
            group[key] = body[key]
    return JSON(group)


def archive_group(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.schema_write_scopes)
    group = _group(call)
    in_use = [
        d["name"]
        for d in call.portal.properties[otype.name].values()
        if d["groupName"] == group["name"] and not d["archived"]
    ]
    if in_use:
        raise errors.validation(f"Property group {group['name']} still has properties: {in_use}")
    group["archived"] = True
    return no_content()


# -- owners --------------------------------------------------------------------------------------

OWNER_SCOPES = ("crm.objects.owners.read",)


def list_owners(call: Call) -> Response:
    call.require(OWNER_SCOPES)
    email = call.query.get("email")
    limit = call.q_int("limit", 100, maximum=500)
    start = call.q_int("after", 0)
    archived = call.q_bool("archived")
    owners = [
        o
        for o in call.portal.owners.values()
        if o["archived"] == archived and (not email or o["email"].lower() == email.lower())
    ]
    out: JSONDict = {"results": owners[start : start + limit]}
    if start + limit < len(owners):
        out["paging"] = {"next": {"after": str(start + limit)}}
    return JSON(out)


def get_owner(call: Call) -> Response:
    call.require(OWNER_SCOPES)
    key = call.path["ownerId"]
    by_user = call.query.get("idProperty") == "userId"
    for owner in call.portal.owners.values():
        if (str(owner["userId"]) if by_user else owner["id"]) == key:
            return JSON(owner)
    raise errors.resource_not_found(f"Owner {key} not found")


routes: list[Route] = [
    api_route("GET", BASE + "/groups", list_groups),
    api_route("POST", BASE + "/groups", create_group),
    api_route("GET", BASE + "/groups/{groupName}", get_group),
    api_route("PATCH", BASE + "/groups/{groupName}", update_group),
    api_route("DELETE", BASE + "/groups/{groupName}", archive_group),
    api_route("POST", BASE + "/batch/create", batch_create_properties),
    api_route("POST", BASE + "/batch/read", batch_read_properties),
    api_route("POST", BASE + "/batch/archive", batch_archive_properties),
    api_route("GET", BASE, list_properties),
    api_route("POST", BASE, create_property),
    api_route("GET", BASE + "/{propertyName}", get_property),
    api_route("PATCH", BASE + "/{propertyName}", update_property),
    api_route("DELETE", BASE + "/{propertyName}", archive_property),
    api_route("GET", "/crm/v3/owners", list_owners),
    api_route("GET", "/crm/v3/owners/", list_owners),
    api_route("GET", "/crm/v3/owners/{ownerId}", get_owner),
]
