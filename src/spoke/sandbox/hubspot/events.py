"""Custom behavioural events (contract §4): definitions, send, batch send, and the events query.

Completions land on the contact's timeline (read through the admin API or `GET /events/v3/events`).
Send is exempt from the ten-secondly and daily limits; a monthly cap applies instead.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm, errors
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.http import JSON, Call, api_route, no_content
from spoke.sandbox.hubspot.limits import rate_limited
from spoke.sandbox.hubspot.schema import OBJECT_TYPES
from spoke.sandbox.hubspot.timefmt import iso_ms, parse_ms

JSONDict = dict[str, Any]
DEFINE = ("behavioral_events.event_definitions.read_write",)
SEND = ("analytics.behavioral_events.send",)
MAX_BATCH = 500
MAX_PROPERTIES = 50
MAX_DEFINITIONS = 500
EVENT_TYPES = frozenset({"string", "number", "enumeration", "datetime"})
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _internal_name(label: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", label.lower()).strip("_")
    return name if name and name[0].isalpha() else f"event_{name}"


def _property(raw: object) -> JSONDict:
    if not isinstance(raw, dict) or not raw.get("label"):
        raise errors.validation("Each property definition needs a label")
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        raise errors.validation(f"Property type must be one of {sorted(EVENT_TYPES)}")
    label = str(raw["label"])
    name = str(raw.get("name") or _internal_name(label))
    if len(name) > 50 or len(label) > 50 or not _NAME.match(name):
        raise errors.validation(
            f"Property name {name!r} must be at most 50 characters of [a-z0-9_], starting with "
            "a letter"
        )
    return {
        "name": name,
        "label": label,
        "type": kind,
        "description": str(raw.get("description", "")),
        "options": raw.get("options") or [],
        "hubspotDefined": False,
        "archived": False,
    }


def _definition_json(defn: JSONDict) -> JSONDict:
    return {k: v for k, v in defn.items() if not k.startswith("_")}


def _find_definition(call: Call, event_name: str) -> JSONDict:
    defs = call.portal.event_defs
    defn = defs.get(event_name)
    if defn is None:
        defn = next((d for d in defs.values() if d["fullyQualifiedName"] == event_name), None)
    if defn is None or defn["archived"]:
        raise SandboxError(
            404,
            f"Event definition {event_name} does not exist",
            "OBJECT_NOT_FOUND",
            context={"eventName": [event_name]},
        )
    return defn


def create_definition(call: Call) -> Response:
    call.require(DEFINE)
    body = call.json_object()
    label = body.get("label")
    if not isinstance(label, str) or not label:
        raise errors.validation("label is required")
    live = [d for d in call.portal.event_defs.values() if not d["archived"]]
    if len(live) >= MAX_DEFINITIONS:
        raise errors.validation(f"An account can have at most {MAX_DEFINITIONS} event definitions")
    name = str(body.get("name") or _internal_name(label))
    if not _NAME.match(name):
        raise errors.validation(f"Event name {name!r} must use only [a-z0-9_]")
    if name in call.portal.event_defs and not call.portal.event_defs[name]["archived"]:
        raise errors.conflict(f"An event definition named {name} already exists")
    primary = str(body.get("primaryObject") or "CONTACT").upper()
    if primary not in ("CONTACT", "COMPANY"):
        raise errors.validation("The sandbox supports primaryObject CONTACT and COMPANY")
    props = [_property(p) for p in body.get("propertyDefinitions") or []]
    stamp = iso_ms(call.now)
    def_id = call.portal.next_event_def_id
    call.portal.next_event_def_id += 1
    defn: JSONDict = {
        "id": str(def_id),
        "name": name,
        "fullyQualifiedName": f"pe{call.portal.id}_{name}",
        "labels": {"singular": label, "plural": label},
        "description": str(body.get("description", "")),
        "primaryObject": primary,
        "primaryObjectId": "0-1" if primary == "CONTACT" else "0-2",
        "objectTypeId": f"6-{def_id}",
        "includeDefaultProperties": bool(body.get("includeDefaultProperties", True)),
        "properties": props,
        "associations": [],
        "archived": False,
        "trackingType": "MANUAL",
        "createdAt": stamp,
        "updatedAt": stamp,
        "createdUserId": call.token.user_id,
    }
    call.portal.event_defs[name] = defn
    return JSON(_definition_json(defn), status_code=201)


def list_definitions(call: Call) -> Response:
    call.require(DEFINE)
    needle = (call.query.get("searchString") or "").lower()
    limit = call.q_int("limit", 100, maximum=100)
    start = call.q_int("after", 0)
    include_props = call.q_bool("includeProperties")
    hits = [
        d
        for d in call.portal.event_defs.values()
        if not d["archived"] and (needle in d["name"] or needle in d["labels"]["singular"].lower())
    ]
    page = hits[start : start + limit]
    results = []
    for d in page:
        out = _definition_json(d)
        if not include_props:
            out["properties"] = []
        results.append(out)
    body: JSONDict = {"total": len(hits), "results": results}
    if start + limit < len(hits):
        body["paging"] = {"next": {"after": str(start + limit)}}
    return JSON(body)


def get_definition(call: Call) -> Response:
    call.require(DEFINE)
    return JSON(_definition_json(_find_definition(call, call.path["eventName"])))


def update_definition(call: Call) -> Response:
    call.require(DEFINE)
    defn = _find_definition(call, call.path["eventName"])
    body = call.json_object()
    if "label" in body:
        defn["labels"] = {"singular": str(body["label"]), "plural": str(body["label"])}
    if "description" in body:
        defn["description"] = str(body["description"])
    defn["updatedAt"] = iso_ms(call.now)
    return JSON(_definition_json(defn))


def archive_definition(call: Call) -> Response:
    call.require(DEFINE)
    _find_definition(call, call.path["eventName"])["archived"] = True
    return no_content()


def add_property(call: Call) -> Response:
    call.require(DEFINE)
    defn = _find_definition(call, call.path["eventName"])
    prop = _property(call.json())
    if any(p["name"] == prop["name"] for p in defn["properties"]):
        raise errors.conflict(f"Property {prop['name']} already exists on this event")
    defn["properties"].append(prop)
    return JSON(prop, status_code=201)


def delete_property(call: Call) -> Response:
    call.require(DEFINE)
    defn = _find_definition(call, call.path["eventName"])
    name = call.path["propertyName"]
    defn["properties"] = [p for p in defn["properties"] if p["name"] != name]
    return no_content()


# -- send ----------------------------------------------------------------------------------------


def _prepare(call: Call, raw: object) -> tuple[JSONDict, str, JSONDict] | None:
    """Validate one completion; returns (definition, record id, timeline entry), or None for a
    duplicate `uuid` (the first one wins).

    Raises:
        SandboxError: 400 for an unknown event, an unknown property or no resolvable object.
    """
    if not isinstance(raw, dict):
        raise errors.validation("Each event must be an object")
    name = raw.get("eventName")
    if not isinstance(name, str):
        raise errors.validation("eventName is required")
    defn = _find_definition(call, name)
    props = raw.get("properties") or {}
    if not isinstance(props, dict):
        raise errors.validation("properties must be an object")
    if len(props) > MAX_PROPERTIES:
        raise errors.validation(f"At most {MAX_PROPERTIES} properties per event")
    known = {p["name"]: p for p in defn["properties"]}
    unknown = [k for k in props if k not in known and not k.startswith("hs_")]
    if unknown:
        raise errors.validation(
            f"Properties {unknown} are not defined on event {defn['fullyQualifiedName']}",
            context={"propertyName": unknown},
        )
    for key, value in props.items():
        if isinstance(value, str) and len(value) > 65_536:
            raise errors.validation(f"Value of {key} is too long")
    occurred = raw.get("occurredAt")
    occurred_ms = parse_ms(str(occurred)) if occurred else call.now
    if occurred_ms is None:
        raise errors.validation("occurredAt must be an ISO-8601 timestamp")
    record_id = _resolve_object(call, defn, raw)
    event_uuid = raw.get("uuid")
    if event_uuid is not None:
        key = str(event_uuid)
        if key in call.portal.event_uuids:
            return None
    entry = {
        "type": "CUSTOM_EVENT",
        "id": str(event_uuid or f"{int(time.time() * 1e6)}-{call.portal.event_count}"),
        "eventType": defn["fullyQualifiedName"],
        "objectType": defn["primaryObject"].lower(),
        "objectId": record_id,
        "timestamp": iso_ms(occurred_ms),
        "properties": {k: str(v) for k, v in props.items()},
    }
    if event_uuid is not None:
        entry["uuid"] = str(event_uuid)
    return defn, record_id, entry


def _resolve_object(call: Call, defn: JSONDict, raw: JSONDict) -> str:
    otype = OBJECT_TYPES["contacts" if defn["primaryObject"] == "CONTACT" else "companies"]
    object_id, email = raw.get("objectId"), raw.get("email")
    if object_id is not None:
        rec = crm.find(call.portal, otype, str(object_id))
        if rec is None:
            raise errors.validation(f"{otype.singular} {object_id} does not exist")
        return rec.id
    if otype.name == "contacts" and isinstance(email, str) and email:
        rec = crm.find(call.portal, otype, email, "email")
        if rec is None:
            # An unknown email creates the contact, as HubSpot does for event completions.
            values = crm.validate_properties(call.portal, otype, {"email": email})
            rec = crm.create(call.portal, otype, values, call.now, call.source)
        return rec.id
    if raw.get("utk"):
        raise errors.validation("The sandbox cannot resolve `utk`; send objectId or email")
    raise errors.validation("One of objectId, email or utk is required")


def _count(call: Call, n: int) -> None:
    month = iso_ms(call.now)[:7]
    portal = call.portal
    if month != portal.event_month:
        portal.event_month, portal.event_count = month, 0
    cap = portal.settings.custom_event_monthly_cap
    if portal.event_count + n > cap:
        raise rate_limited(
            "MONTHLY_EVENT_COMPLETIONS",
            f"This account has used its {cap} custom event completions for the month.",
            {},
            None,
        )
    portal.event_count += n


def _record(call: Call, prepared: list[tuple[JSONDict, str, JSONDict]]) -> None:
    for defn, record_id, entry in prepared:
        if defn["primaryObject"] == "CONTACT":
            call.portal.timeline.setdefault(record_id, []).append(entry)
        else:
            call.portal.timeline.setdefault(f"company:{record_id}", []).append(entry)
        if "uuid" in entry:
            call.portal.event_uuids.add(entry["uuid"])


def send(call: Call) -> Response:
    call.require(SEND)
    prepared = _prepare(call, call.json())
    call.portal.event_received += 1
    if prepared is None:
        call.portal.event_duplicate_uuids += 1
        raise errors.validation("An event with this uuid was already accepted")
    _count(call, 1)
    _record(call, [prepared])
    return no_content()


def send_batch(call: Call) -> Response:
    call.require(SEND)
    inputs = call.json_object().get("inputs")
    if not isinstance(inputs, list):
        raise errors.validation("inputs must be an array")
    if len(inputs) > MAX_BATCH:
        raise errors.validation(
            f"Batch input size {len(inputs)} exceeds the maximum of {MAX_BATCH}"
        )
    prepared = []
    seen: set[str] = set()
    for item in inputs:
        one = _prepare(call, item)
        if one is None or one[2].get("uuid") in seen:
            continue  # a uuid seen before: the first completion wins
        if "uuid" in one[2]:
            seen.add(one[2]["uuid"])
        prepared.append(one)
    _count(call, len(prepared))
    call.portal.event_received += len(inputs)
    call.portal.event_duplicate_uuids += len(inputs) - len(prepared)
    _record(call, prepared)
    return no_content()


def query_events(call: Call) -> Response:
    object_type = (call.query.get("objectType") or "contact").lower()
    otype = OBJECT_TYPES[
        "companies" if object_type in ("company", "companies", "0-2") else "contacts"
    ]
    call.require(otype.read_scopes)
    object_id = call.query.get("objectId")
    event_type = call.query.get("eventType")
    # `id` (repeatable or comma-separated): only these event instances; a sent `uuid` is the
    # instance's id here.
    wanted = set(call.q_list("id") or ())
    limit = call.q_int("limit", 100, maximum=1000)
    start = call.q_int("after", 0)
    prefix = "" if otype.name == "contacts" else "company:"
    keys = (
        [prefix + object_id]
        if object_id
        else [k for k in call.portal.timeline if k.startswith(prefix) if prefix or ":" not in k]
    )
    entries = [
        e
        for k in keys
        for e in call.portal.timeline.get(k, [])
        if e.get("type") == "CUSTOM_EVENT"
        and (not event_type or e["eventType"] == event_type)
        and (not wanted or e["id"] in wanted)
    ]
    entries.sort(key=lambda e: (e["timestamp"], e["id"]))
    page = entries[start : start + limit]
    body: JSONDict = {
        "results": [
            {
                "id": e["id"],
                "eventType": e["eventType"],
                "objectType": e["objectType"],
                "objectId": e["objectId"],
                "occurredAt": e["timestamp"],
                "properties": e["properties"],
            }
            for e in page
        ]
    }
    if start + limit < len(entries):
        body["paging"] = {"next": {"after": str(start + limit)}}
    return JSON(body)


D = "/events/v3/event-definitions"
routes: list[Route] = [
    api_route("POST", "/events/v3/send", send, limit="events"),
    api_route("POST", "/events/v3/send/batch", send_batch, limit="events"),
    api_route("GET", "/events/v3/events", query_events),
    api_route("GET", "/events/v3/events/", query_events),
    api_route("POST", D, create_definition),
    api_route("GET", D, list_definitions),
    api_route("GET", D + "/{eventName}", get_definition),
    api_route("PATCH", D + "/{eventName}", update_definition),
    api_route("DELETE", D + "/{eventName}", archive_definition),
    api_route("POST", D + "/{eventName}/property", add_property),
    api_route("DELETE", D + "/{eventName}/property/{propertyName}", delete_property),
]
