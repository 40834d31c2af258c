"""CRM engine: record writes, lookups, serialisation and associations.

Route modules call these functions with the portal lock held. Nothing here knows about HTTP except
that failures raise `SandboxError`s shaped as HubSpot shapes them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from spoke.sandbox.hubspot import errors
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.schema import (
    BUILTIN_BY_ID,
    DEFAULT_ASSOCIATION,
    IMPLIED_TYPES,
    OBJECT_TYPES,
    ObjectType,
    resolve_object_type,
)
from spoke.sandbox.hubspot.store import Portal, Record
from spoke.sandbox.hubspot.timefmt import iso_ms
from spoke.sandbox.hubspot.validation import Values as Values
from spoke.sandbox.hubspot.validation import check_lifecycle
from spoke.sandbox.hubspot.validation import require_timestamp as require_timestamp
from spoke.sandbox.hubspot.validation import validate_properties as validate_properties

JSONDict = dict[str, Any]
Source = tuple[str, str | None]  # (sourceType, sourceId) recorded in property history

# -- lookups -------------------------------------------------------------------------------------


def find(
    portal: Portal,
    otype: ObjectType,
    key: str,
    id_property: str | None = None,
    *,
    archived: bool = False,
) -> Record | None:
    """Find a record by id or by a unique property; merged ids resolve to the surviving record.

    Raises:
        SandboxError: 400 if `id_property` is not a unique property of the type.
    """
    tbl = portal.tables[otype.name]
    rec: Record | None
    if not id_property or id_property == "hs_object_id":
        rec = tbl.records.get(key)
        while rec is not None and rec.merged_into is not None:
            rec = tbl.records.get(rec.merged_into)
    else:
        idx = tbl.unique.get(id_property)
        if idx is None:
            raise errors.validation(
                f"Property {id_property} is not a unique identifier property for {otype.name}",
            )
        rid = idx.get(key.lower())
        rec = tbl.records.get(rid) if rid is not None else None
    if rec is None or rec.archived != archived:
        return None
    return rec


def get_or_404(
    portal: Portal,
    otype: ObjectType,
    key: str,
    id_property: str | None = None,
    *,
    archived: bool = False,
) -> Record:
    rec = find(portal, otype, key, id_property, archived=archived)
    if rec is None:
        raise errors.not_found(key)
    return rec


# -- writes --------------------------------------------------------------------------------------


def create(portal: Portal, otype: ObjectType, values: Values, now: int, source: Source) -> Record:
    """Create a record from validated values.

    Raises:
        SandboxError: 409 when a unique value (a contact's email) is already taken.
    """
    tbl = portal.tables[otype.name]
    for prop, idx in tbl.unique.items():
        value = values.get(prop)
        if value:
            existing = idx.get(value.lower())
            if existing is not None:
                raise _unique_conflict(otype, prop, value, existing)
    rid = portal.new_id()
    stamp = iso_ms(now)
    props = {k: v for k, v in values.items() if v is not None}
    props[otype.created_prop] = stamp
    props[otype.modified_prop] = stamp
    props["hs_object_id"] = rid
    rec = Record(rid, props, now)
    stype, sid = source
    rec.history = {k: [(v, now, stype, sid)] for k, v in props.items()}
    tbl.records[rid] = rec
    tbl.order.append(rid)
    for prop, idx in tbl.unique.items():
        value = props.get(prop)
        if value:
            idx[value.lower()] = rid
    tbl.schedule_index(rid, props, _visible_at(portal, now))
    if portal.listening:
        _emit(portal, "creation", otype, rid, now, source, changed=dict(props))
    return rec


def update(
    portal: Portal, otype: ObjectType, rec: Record, values: Values, now: int, source: Source
) -> Record:
    """Apply validated values to a record, keeping history and the unique indexes.

    Raises:
        SandboxError: 409 when a new unique value belongs to another record.
    """
    tbl = portal.tables[otype.name]
    old = rec.props
    for prop, idx in tbl.unique.items():
        value = values.get(prop)
        if value:
            existing = idx.get(value.lower())
            if existing is not None and existing != rec.id:
                raise _unique_conflict(otype, prop, value, existing)
    if otype.name == "contacts" and "lifecyclestage" in values:
        check_lifecycle(portal, rec, values)
    props = dict(old)
    history = rec.history
    stype, sid = source
    for name, value in values.items():
        previous = old.get(name)
        if value is None:
            if previous is not None:
                del props[name]
                history.setdefault(name, []).append(("", now, stype, sid))
        elif value != previous:
            props[name] = value
            history.setdefault(name, []).append((value, now, stype, sid))
    stamp = iso_ms(now)
    props[otype.modified_prop] = stamp
    history.setdefault(otype.modified_prop, []).append((stamp, now, stype, sid))
    for prop, idx in tbl.unique.items():
        before, after = old.get(prop), props.get(prop)
        if before != after:
            if before and idx.get(before.lower()) == rec.id:
                del idx[before.lower()]
            if after:
                idx[after.lower()] = rec.id
    rec.props = props
    rec.updated_ms = now
    tbl.schedule_index(rec.id, props, _visible_at(portal, now))
    if portal.listening:
        changed = {k: props.get(k, "") for k in values if old.get(k) != props.get(k)}
        if changed:
            _emit(portal, "propertyChange", otype, rec.id, now, source, changed=changed)
    return rec


def archive(
    portal: Portal, otype: ObjectType, rec: Record, now: int, source: Source | None = None
) -> None:
    tbl = portal.tables[otype.name]
    if rec.archived:
        return
    if portal.listening and rec.merged_into is None:
        _emit(portal, "deletion", otype, rec.id, now, source or ("CRM", None))
    rec.archived = True
    rec.archived_ms = now
    for prop, idx in tbl.unique.items():
        for value in _unique_values(rec, prop):
            if idx.get(value) == rec.id:
                del idx[value]
    tbl.schedule_index(rec.id, None, _visible_at(portal, now))


RECYCLE_BIN_MS = 90 * 24 * 3600 * 1000  # HubSpot keeps archived records restorable for 90 days


def restore(portal: Portal, otype: ObjectType, rec_id: str, now: int, source: Source) -> Record:
    """Bring an archived record back from the recycle bin, as HubSpot's UI does: same id,
    properties, history and associations. Its unique values (a contact's email) are taken again.

    Raises:
        SandboxError: 404 for an unknown or GDPR-deleted id; 400 for a live record, a merged-away
            record or one archived more than 90 days ago; 409 when one of its unique values now
            belongs to another live record (`Contact already exists. Existing ID: N`).
    """
    tbl = portal.tables[otype.name]
    rec = tbl.records.get(rec_id)
    if rec is None:
        if rec_id in tbl.purged:
            raise SandboxError(
                404,
                f"{otype.singular.capitalize()} {rec_id} was permanently deleted (GDPR delete) "
                "and cannot be restored.",
                "OBJECT_NOT_FOUND",
                context={"id": [rec_id]},
            )
        raise errors.not_found(rec_id)
    if rec.merged_into is not None:
        raise errors.validation(
            f"{otype.singular.capitalize()} {rec_id} was merged into {rec.merged_into} "
            "and cannot be restored.",
            context={"id": [rec_id], "mergedInto": [rec.merged_into]},
        )
    if not rec.archived:
        raise errors.validation(
            f"{otype.singular.capitalize()} {rec_id} is not archived; only archived objects "
            "can be restored.",
            context={"id": [rec_id]},
        )
    if now - rec.archived_ms > RECYCLE_BIN_MS:
        raise errors.validation(
            f"{otype.singular.capitalize()} {rec_id} was archived more than 90 days ago and can "
            "no longer be restored.",
            context={"id": [rec_id], "archivedAt": [iso_ms(rec.archived_ms)]},
        )
    for prop, idx in tbl.unique.items():
        for value in _unique_values(rec, prop):
            existing = idx.get(value)
            if existing is not None and existing != rec.id:
                raise _unique_conflict(otype, prop, value, existing)
    rec.archived = False
    rec.archived_ms = 0
    for prop, idx in tbl.unique.items():
        for value in _unique_values(rec, prop):
            idx[value] = rec.id
    tbl.schedule_index(rec.id, rec.props, _visible_at(portal, now))
    if portal.listening:
        _emit(portal, "restore", otype, rec.id, now, source)
    return rec


def merge(
    portal: Portal, otype: ObjectType, primary: Record, other: Record, now: int, source: Source
) -> Record:
    """Merge `other` into `primary`: primary's values win, blanks are filled from `other`,
    `other`'s email becomes an additional email, associations move, and `other`'s id resolves to
    the primary from then on."""
    fill: Values = {}
    skip = {*otype.always_props, "email", "hs_additional_emails", "hs_merged_object_ids"}
    for name, value in other.props.items():
        if name not in skip and name not in primary.props:
            fill[name] = value
    merged_ids = [i for i in primary.props.get("hs_merged_object_ids", "").split(";") if i]
    merged_ids.append(other.id)
    fill["hs_merged_object_ids"] = ";".join(merged_ids)
    extra_emails: list[str] = []
    if otype.name == "contacts":
        extra_emails = [e for e in primary.props.get("hs_additional_emails", "").split(";") if e]
        extra_emails.extend(_unique_values(other, "email"))
        if extra_emails:
            fill["hs_additional_emails"] = ";".join(extra_emails)
    if portal.listening:
        _emit(portal, "merge", otype, primary.id, now, source, merged=[other.id])
    other.merged_into = primary.id
    archive(portal, otype, other, now)
    update(portal, otype, primary, fill, now, source)
    if otype.name == "contacts":
        idx = portal.tables["contacts"].unique["email"]
        for email in extra_emails:
            idx[email.lower()] = primary.id
    for (to_type, to_id), ids in list(portal.assoc.get((otype.name, other.id), {}).items()):
        remove_association(portal, otype.name, other.id, to_type, to_id, None)
        if (to_type, to_id) != (otype.name, primary.id):
            add_association(portal, otype.name, primary.id, to_type, to_id, ids)
    return primary


def _emit(
    portal: Portal,
    kind: str,
    otype: ObjectType,
    rec_id: str,
    now: int,
    source: Source,
    **extra: Any,
) -> None:
    portal.changes.append(
        {"kind": kind, "type": otype.name, "id": rec_id, "at": now, "source": source, **extra}
    )


def _unique_values(rec: Record, prop: str) -> list[str]:
    out = []
    value = rec.props.get(prop)
    if value:
        out.append(value.lower())
    if prop == "email":
        out.extend(e.lower() for e in rec.props.get("hs_additional_emails", "").split(";") if e)
    return out


def _unique_conflict(otype: ObjectType, prop: str, value: str, existing: str) -> SandboxError:
    if otype.name == "contacts" and prop == "email":
        return errors.contact_exists(existing)
    return errors.conflict(
        f"A {otype.singular} with the value {value!r} for the unique property {prop!r} "
        f"already exists. Existing ID: {existing}"
    )


def _visible_at(portal: Portal, now: int) -> int:
    lag = portal.settings.search_lag_ms
    return now + lag if lag > 0 else 0


# -- serialisation -------------------------------------------------------------------------------


def to_json(
    portal: Portal,
    otype: ObjectType,
    rec: Record,
    props: list[str] | None = None,
    history: list[str] | None = None,
) -> JSONDict:
    """Render a record as HubSpot's `SimplePublicObject`."""
    out = props_json(portal, otype, rec.id, rec.props, props)
    if rec.archived:
        out["archived"] = True
        out["archivedAt"] = iso_ms(rec.archived_ms)
    if history:
        defs = portal.properties[otype.name]
        out["propertiesWithHistory"] = {
            name: [
                _history_entry(value, ts, stype, sid)
                for value, ts, stype, sid in reversed(rec.history.get(name, []))
            ]
            for name in history
            if name in defs
        }
    return out


def props_json(
    portal: Portal,
    otype: ObjectType,
    rec_id: str,
    values: dict[str, str],
    props: list[str] | None,
) -> JSONDict:
    """Render an id and a props dict (a record's or a search snapshot's) as an object."""
    out_props: dict[str, str | None] = {}
    if props is None:
        for name in otype.default_props:
            out_props[name] = values.get(name)
    else:
        defs = portal.properties[otype.name]
        for name in props:
            if name in defs:
                out_props[name] = values.get(name)
    created = values[otype.created_prop]
    updated = values[otype.modified_prop]
    out_props[otype.created_prop] = created
    out_props[otype.modified_prop] = updated
    out_props["hs_object_id"] = rec_id
    return {
        "id": rec_id,
        "properties": out_props,
        "createdAt": created,
        "updatedAt": updated,
        "archived": False,
    }


def _history_entry(value: str, ts: int, stype: str, sid: str | None) -> JSONDict:
    entry: JSONDict = {"value": value, "timestamp": iso_ms(ts), "sourceType": stype}
    if sid is not None:
        entry["sourceId"] = sid
    return entry


# -- associations --------------------------------------------------------------------------------


def association_info(
    portal: Portal, from_type: str, to_type: str, type_id: int
) -> tuple[str, str | None, str, int] | None:
    """(category, label, v3 name, inverse id) of an association type, or None if unknown."""
    builtin = BUILTIN_BY_ID.get((from_type, to_type, type_id))
    if builtin is not None:
        return builtin.category, builtin.label, builtin.name, builtin.inverse_id
    label = portal.labels.get(type_id)
    if label is not None and label["fromType"] == from_type and label["toType"] == to_type:
        return label["category"], label["label"], label["name"], label["inverseTypeId"]
    return None


def default_type_id(from_type: str, to_type: str) -> int | None:
    spec = DEFAULT_ASSOCIATION.get((from_type, to_type))
    return spec.type_id if spec else None


def add_association(
    portal: Portal, from_type: str, from_id: str, to_type: str, to_id: str, type_ids: Iterable[int]
) -> None:
    """Associate two records with the given type ids, storing both directions.

    Raises:
        SandboxError: 400 for a type id that does not exist between the two object types.
    """
    forward = portal.assoc.setdefault((from_type, from_id), {}).setdefault((to_type, to_id), set())
    backward = portal.assoc.setdefault((to_type, to_id), {}).setdefault((from_type, from_id), set())
    for type_id in list(type_ids):
        info = association_info(portal, from_type, to_type, type_id)
        if info is None:
            raise errors.validation(
                f"{type_id} is not a valid association type between "
                f"{OBJECT_TYPES[from_type].type_id} and {OBJECT_TYPES[to_type].type_id}"
            )
        if portal.listening and type_id not in forward:
            _emit_association(portal, from_type, from_id, to_type, to_id, type_id, removed=False)
        forward.add(type_id)
        backward.add(info[3])
        implied = IMPLIED_TYPES.get((from_type, to_type, type_id))
        if implied is not None:
            forward.add(implied)
            inverse = association_info(portal, from_type, to_type, implied)
            if inverse is not None:
                backward.add(inverse[3])


def remove_association(
    portal: Portal,
    from_type: str,
    from_id: str,
    to_type: str,
    to_id: str,
    type_ids: Iterable[int] | None,
) -> bool:
    """Remove the given type ids (all of them when None) in both directions. True if any existed."""
    targets = portal.assoc.get((from_type, from_id))
    forward = targets.get((to_type, to_id)) if targets else None
    if not forward or targets is None:
        return False
    back_targets = portal.assoc.get((to_type, to_id), {})
    backward = back_targets.get((from_type, from_id), set())
    removing = set(forward) if type_ids is None else set(type_ids) & forward
    for type_id in removing:
        if portal.listening:
            _emit_association(portal, from_type, from_id, to_type, to_id, type_id, removed=True)
        forward.discard(type_id)
        info = association_info(portal, from_type, to_type, type_id)
        if info is not None:
            backward.discard(info[3])
    if not forward:
        del targets[(to_type, to_id)]
    if not backward:
        back_targets.pop((from_type, from_id), None)
    return bool(removing)


def _emit_association(
    portal: Portal,
    from_type: str,
    from_id: str,
    to_type: str,
    to_id: str,
    type_id: int,
    *,
    removed: bool,
) -> None:
    portal.changes.append(
        {
            "kind": "associationChange",
            "type": from_type,
            "id": from_id,
            "at": 0,
            "source": ("INTEGRATION", None),
            "toType": to_type,
            "toId": to_id,
            "typeId": type_id,
            "removed": removed,
        }
    )


def associations_of(
    portal: Portal, from_type: str, from_id: str, to_type: str
) -> list[tuple[str, set[int]]]:
    """Live associations of one record to one object type, ordered by target id."""
    table = portal.tables[to_type].records
    out = []
    for (tt, tid), ids in portal.assoc.get((from_type, from_id), {}).items():
        if tt == to_type and ids:
            target = table.get(tid)
            if target is not None and not target.archived:
                out.append((tid, ids))
    out.sort(key=lambda item: int(item[0]) if item[0].isdigit() else 0)
    return out


def v3_associations(portal: Portal, otype: ObjectType, rec_id: str, wanted: list[str]) -> JSONDict:
    """The `associations` block of a v3 read (`?associations=companies`)."""
    out: JSONDict = {}
    for segment in wanted:
        to = resolve_object_type(segment)
        if to is None:
            continue
        results = []
        for to_id, ids in associations_of(portal, otype.name, rec_id, to.name):
            for type_id in sorted(ids):
                info = association_info(portal, otype.name, to.name, type_id)
                if info is not None:
                    results.append({"id": to_id, "type": info[2]})
        if results:
            out[segment] = {"results": results}
    return out


def inline_associations(
    portal: Portal, otype: ObjectType, rec_id: str, raw: object
) -> list[tuple[str, str, list[int]]]:
    """Validate the `associations` array of a create body; returns (to_type, to_id, type ids).

    Raises:
        SandboxError: 400 for a malformed entry, an unknown type id or a missing target.
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise errors.validation("Invalid input JSON: `associations` must be an array")
    out = []
    for item in raw:
        to = item.get("to") if isinstance(item, dict) else None
        types = item.get("types") if isinstance(item, dict) else None
        if not isinstance(to, dict) or not isinstance(types, list) or not types:
            raise errors.validation("Each association needs `to.id` and a non-empty `types`")
        to_id = str(to.get("id", ""))
        matched: list[int] = []
        target_type: str | None = None
        for spec in types:
            type_id = spec.get("associationTypeId") if isinstance(spec, dict) else None
            if not isinstance(type_id, int):
                raise errors.validation("associationTypeId must be an integer")
            for candidate in OBJECT_TYPES:
                if association_info(portal, otype.name, candidate, type_id) is not None:
                    target_type = candidate
                    break
            else:
                raise errors.validation(f"{type_id} is not a valid association type id")
            matched.append(type_id)
        assert target_type is not None
        if find(portal, OBJECT_TYPES[target_type], to_id) is None:
            raise errors.validation(
                f"One or more associations are invalid: {OBJECT_TYPES[target_type].singular} "
                f"{to_id} does not exist",
                sub_category="crm.associations.INVALID_OBJECT_IDS",
            )
        out.append((target_type, to_id, matched))
    return out
