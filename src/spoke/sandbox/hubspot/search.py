"""CRM search v3 (contract §1.2): filter groups, operators, one sort, free-text query, paging.

Search reads the table's *index*, not its records: writes reach the index only after the portal's
`search_lag_ms`, the way HubSpot's search is eventually consistent.
"""

from __future__ import annotations

import bisect
import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm, errors
from spoke.sandbox.hubspot.http import JSON, Call, api_route
from spoke.sandbox.hubspot.schema import ObjectType, resolve_object_type
from spoke.sandbox.hubspot.store import ObjectTable, Portal
from spoke.sandbox.hubspot.timefmt import iso_date, iso_ms, parse_ms

JSONDict = dict[str, Any]
Props = dict[str, str]
Predicate = Callable[[str, Props], bool]

MAX_LIMIT = 200
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
MAX_BODY_CHARS = 3000
OPERATORS = frozenset(
    {
        "EQ",
        "NEQ",
        "LT",
        "LTE",
        "GT",
        "GTE",
        "BETWEEN",
        "IN",
        "NOT_IN",
        "HAS_PROPERTY",
        "NOT_HAS_PROPERTY",
        "CONTAINS_TOKEN",
        "NOT_CONTAINS_TOKEN",
    }
)
QUERY_PROPS: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "email", "phone", "company", "hs_additional_emails"),
    "companies": ("name", "domain", "website", "phone"),
    "meetings": ("hs_meeting_title", "hs_meeting_body"),
    "notes": ("hs_note_body",),
}
_TOKEN_SPLIT = re.compile(r"[\s@,;.:/()\-_+]+")


def search(call: Call) -> Response:
    otype = call.object_type()
    call.require(otype.read_scopes)
    if len(call.body) > MAX_BODY_CHARS:
        raise errors.validation(
            f"Request body is {len(call.body)} characters; the maximum is {MAX_BODY_CHARS}"
        )
    body = call.json_object() if call.body else {}
    portal = call.portal
    limit = body.get("limit", 10)
    if not isinstance(limit, int) or limit < 0:
        raise errors.validation("limit must be a non-negative integer")
    if limit > MAX_LIMIT:
        raise errors.validation(
            f"Search limit {limit} is above the maximum of {MAX_LIMIT}",
            context={"limit": [str(limit)]},
        )
    try:
        offset = int(body.get("after") or 0)
    except (TypeError, ValueError):
        raise errors.validation("after must be an integer offset") from None
    cap = portal.settings.search_result_cap
    if offset >= cap:
        raise errors.validation(
            f"Search results are limited to {cap}; `after` {offset} is past that limit",
            context={"after": [str(offset)]},
        )
    predicate = _compile_groups(portal, otype, body.get("filterGroups") or [])
    query = body.get("query")
    sorts = body.get("sorts") or []
    if not isinstance(sorts, list) or len(sorts) > 1:
        raise errors.validation("At most one sort is supported")
    tbl = portal.tables[otype.name]
    tbl.refresh_index(call.now)
    by_id = _id_range(body.get("filterGroups"), query, sorts)
    if by_id is not None:
        return _id_range_page(portal, otype, tbl, by_id, offset, limit, body)
    matches = [
        (rid, props)
        for rid, props in tbl.index.items()
        if predicate is None or predicate(rid, props)
    ]
    if isinstance(query, str) and query.strip():
        matches = _free_text(otype, matches, query)
    total = len(matches)
    page = _sorted_page(portal, otype, matches, sorts[0] if sorts else None, offset + limit)
    page = page[offset : offset + limit]
    props = body.get("properties") or None
    results = [crm.props_json(portal, otype, rid, values, props) for rid, values in page]
    out: JSONDict = {"total": total, "results": results}
    next_offset = offset + limit
    if next_offset < total and next_offset < cap and limit > 0:
        out["paging"] = {"next": {"after": str(next_offset)}}
    return JSON(out)


_RANGE_OPERATORS = frozenset({"GT", "GTE", "LT", "LTE"})


@dataclass(frozen=True)
class _IdRange:
    """A search that is only a range of record ids, sorted by id."""

    filters: list[tuple[str, float]]
    descending: bool


def _id_range(groups: object, query: object, sorts: list[Any]) -> _IdRange | None:
    """The search as an id range, when it is one (the way clients walk a whole portal):
    one group of GT/GTE/LT/LTE filters on `hs_object_id`, no query, sorted by id or not
    at all. Filters already passed `_compile_groups`, so their values are numbers."""
    if isinstance(query, str) and query.strip():
        return None
    if not isinstance(groups, list) or len(groups) != 1 or not isinstance(groups[0], dict):
        return None
    filters = groups[0].get("filters")
    if not isinstance(filters, list) or not filters:
        return None
    bounds: list[tuple[str, float]] = []
    for spec in filters:
        if (
            not isinstance(spec, dict)
            or spec.get("propertyName") != "hs_object_id"
            or spec.get("operator") not in _RANGE_OPERATORS
        ):
            return None
        bounds.append((str(spec["operator"]), float(str(spec.get("value")))))
    if not sorts:
        return _IdRange(bounds, descending=False)
    spec = sorts[0]
    if isinstance(spec, str) and spec.lstrip("-") == "hs_object_id":
        return _IdRange(bounds, descending=spec.startswith("-"))
    if isinstance(spec, dict) and spec.get("propertyName") == "hs_object_id":
        direction = str(spec.get("direction", "ASCENDING")).upper()
        return _IdRange(bounds, descending=direction == "DESCENDING")
    return None


def _id_range_page(
    portal: Portal,
    otype: ObjectType,
    tbl: ObjectTable,
    by_id: _IdRange,
    offset: int,
    limit: int,
    body: JSONDict,
) -> Response:
    """The same answer as the general path (every record's `hs_object_id` is its id), by
    bisecting the sorted ids instead of testing and sorting every record of the portal: a
    search over 100,000 contacts took ~150 ms of the sandbox's only thread that way."""
    numbers, rids = tbl.ids_in_order()
    start, end = 0, len(numbers)
    for op, value in by_id.filters:
        if op == "GT":
            start = max(start, bisect.bisect_right(numbers, value))
        elif op == "GTE":
            start = max(start, bisect.bisect_left(numbers, value))
        elif op == "LT":
            end = min(end, bisect.bisect_left(numbers, value))
        else:
            end = min(end, bisect.bisect_right(numbers, value))
    total = max(0, end - start)
    if by_id.descending:
        first = end - offset
        chosen = rids[max(start, first - limit) : max(start, first)][::-1]
    else:
        first = start + offset
        chosen = rids[first : min(end, first + limit)]
    props = body.get("properties") or None
    results = [crm.props_json(portal, otype, rid, tbl.index[rid], props) for rid in chosen]
    out: JSONDict = {"total": total, "results": results}
    next_offset = offset + limit
    cap = portal.settings.search_result_cap
    if next_offset < total and next_offset < cap and limit > 0:
        out["paging"] = {"next": {"after": str(next_offset)}}
    return JSON(out)


def _compile_groups(portal: Portal, otype: ObjectType, groups: object) -> Predicate | None:
    if not isinstance(groups, list):
        raise errors.validation("filterGroups must be an array")
    if len(groups) > MAX_GROUPS:
        raise errors.validation(f"Too many filter groups: {len(groups)} (max {MAX_GROUPS})")
    count = 0
    compiled: list[list[Predicate]] = []
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list):
            raise errors.validation("Each filter group needs a `filters` array")
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise errors.validation(
                f"Too many filters in a group: {len(filters)} (max {MAX_FILTERS_PER_GROUP})"
            )
        count += len(filters)
        compiled.append([_compile(portal, otype, f) for f in filters])
    if count > MAX_FILTERS:
        raise errors.validation(f"Too many filters: {count} (max {MAX_FILTERS})")
    compiled = [g for g in compiled if g]
    if not compiled:
        return None

    if len(compiled) == 1 and len(compiled[0]) == 1:
        return compiled[0][0]

    # Plain loops, not any()/all() over generators: this runs once per record of the
    # portal for every search, and the generators cost more than the filters themselves.
    def predicate(rid: str, props: Props) -> bool:
        for group in compiled:
            for f in group:
                if not f(rid, props):
                    break
            else:
                return True
        return False

    return predicate


def _compile(portal: Portal, otype: ObjectType, spec: object) -> Predicate:
    if not isinstance(spec, dict):
        raise errors.validation("Each filter must be an object")
    name = spec.get("propertyName")
    op = spec.get("operator", "EQ")
    if not isinstance(name, str) or op not in OPERATORS:
        raise errors.validation(
            f"Invalid filter: propertyName {name!r}, operator {op!r}",
            context={"operator": [str(op)]},
        )
    if name.startswith("associations."):
        return _association_filter(portal, otype, name.split(".", 1)[1], op, spec)
    d = portal.properties[otype.name].get(name)
    kind = d["type"] if d else "string"
    if op == "HAS_PROPERTY":
        return lambda _rid, props: bool(props.get(name))
    if op == "NOT_HAS_PROPERTY":
        return lambda _rid, props: not props.get(name)
    if op in ("IN", "NOT_IN"):
        raw_values = spec.get("values")
        if not isinstance(raw_values, list):
            raise errors.validation(f"{op} needs `values`")
        # String IN matching is against lower-cased values: upper-case inputs never match.
        wanted = {_key(kind, str(v), lower=False) for v in raw_values}
        negate = op == "NOT_IN"
        return lambda _rid, props: (_cmp_value(kind, props.get(name)) in wanted) != negate
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        matcher = _token_matcher(str(spec.get("value", "")))
        negate = op == "NOT_CONTAINS_TOKEN"
        return lambda _rid, props: matcher(props.get(name)) != negate
    value = spec.get("value")
    if value is None:
        raise errors.validation(f"{op} needs `value`")
    target = _key(kind, str(value))
    if op == "BETWEEN":
        high = _key(kind, str(spec.get("highValue", "")))
        return lambda _rid, props: _between(kind, props.get(name), target, high)
    compare = _COMPARATORS[op]
    if op == "NEQ":
        return lambda _rid, props: (v := _cmp_value(kind, props.get(name))) is None or v != target
    return lambda _rid, props: (
        (v := _cmp_value(kind, props.get(name))) is not None and compare(v, target)
    )


_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
}


def _key(kind: str, raw: str, *, lower: bool = True) -> Any:
    """A filter value in the same comparable form as `_cmp_value` gives stored values."""
    if kind == "number":
        try:
            return float(raw)
        except ValueError:
            raise errors.validation(f"{raw} is not a valid number") from None
    if kind == "datetime":
        ms = parse_ms(raw)
        if ms is None:
            raise errors.validation(f"{raw} is not a valid datetime")
        return iso_ms(ms)
    if kind == "date":
        ms = parse_ms(raw)
        if ms is None:
            raise errors.validation(f"{raw} is not a valid date")
        return iso_date(ms)
    if kind == "enumeration":
        return raw  # enumeration filters are case-sensitive
    return raw.lower() if lower else raw


def _cmp_value(kind: str, stored: str | None) -> Any:
    if stored is None:
        return None
    if kind == "number":
        try:
            return float(stored)
        except ValueError:
            return None
    if kind in ("datetime", "date", "enumeration"):
        return stored
    return stored.lower()


def _between(kind: str, stored: str | None, low: Any, high: Any) -> bool:
    value = _cmp_value(kind, stored)
    return value is not None and bool(low <= value <= high)


def _token_matcher(raw: str) -> Callable[[str | None], bool]:
    needle = raw.lower().strip()
    if "*" in needle:
        pattern = re.compile("^" + ".*".join(re.escape(p) for p in needle.split("*")) + "$")

        def wildcard(value: str | None) -> bool:
            if not value:
                return False
            low = value.lower()
            return bool(pattern.match(low)) or any(
                pattern.match(t) for t in _TOKEN_SPLIT.split(low) if t
            )

        return wildcard

    def token(value: str | None) -> bool:
        if not value:
            return False
        low = value.lower()
        return low == needle or needle in _TOKEN_SPLIT.split(low)

    return token


def _association_filter(
    portal: Portal, otype: ObjectType, target: str, op: str, spec: JSONDict
) -> Predicate:
    to = resolve_object_type(target)
    if to is None:
        raise errors.validation(f"Unknown association object type {target!r}")
    if op in ("IN", "NOT_IN"):
        wanted = {str(v) for v in spec.get("values") or []}
    else:
        wanted = {str(spec.get("value", ""))}
    negate = op in ("NEQ", "NOT_IN")

    def predicate(rid: str, _props: Props) -> bool:
        linked = {
            tid
            for (tt, tid), ids in portal.assoc.get((otype.name, rid), {}).items()
            if tt == to.name and ids
        }
        return bool(linked & wanted) != negate

    return predicate


def _free_text(
    otype: ObjectType, matches: list[tuple[str, Props]], query: str
) -> list[tuple[str, Props]]:
    words = [w for w in query.lower().split() if w]
    fields = QUERY_PROPS.get(otype.name, ())

    def hit(props: Props) -> bool:
        text = " ".join(props.get(f, "") for f in fields).lower()
        tokens = [t for t in _TOKEN_SPLIT.split(text) if t]
        return all(any(t.startswith(w) for t in tokens) or w in text for w in words)

    return [(rid, props) for rid, props in matches if hit(props)]


def _sorted_page(
    portal: Portal, otype: ObjectType, matches: list[tuple[str, Props]], spec: Any, count: int
) -> list[tuple[str, Props]]:
    """The first `count` matches in sort order. Picking them with a heap instead of sorting
    every match keeps a search over 100,000 records from holding the event loop (and every
    other request of the sandbox) for a few hundred milliseconds."""
    key, descending = _sort_key(portal, otype, spec)
    if count >= len(matches):
        return sorted(matches, key=key, reverse=descending)
    # Same order as sorted(...)[:count] (the documented equivalence; keys end with the id).
    pick = heapq.nlargest if descending else heapq.nsmallest
    return pick(count, matches, key=key)


def _sort_key(
    portal: Portal, otype: ObjectType, spec: Any
) -> tuple[Callable[[tuple[str, Props]], Any], bool]:
    if spec is None:
        return (lambda item: int(item[0])), False
    if isinstance(spec, str):
        name, descending = spec.lstrip("-"), spec.startswith("-")
    elif isinstance(spec, dict):
        name = str(spec.get("propertyName", ""))
        descending = str(spec.get("direction", "ASCENDING")).upper() == "DESCENDING"
    else:
        raise errors.validation("Invalid sort")
    d = portal.properties[otype.name].get(name)
    kind = d["type"] if d else "string"

    def key(item: tuple[str, Props]) -> tuple[int, Any, int]:
        value = _cmp_value(kind, item[1].get(name))
        # Records without the property sort last in either direction.
        missing = 1 if value is None else 0
        if descending:
            missing = -missing
        return (missing, value if value is not None else 0, int(item[0]))

    return key, descending


routes: list[Route] = [
    api_route("POST", "/crm/v3/objects/{objectType}/search", search, limit="search"),
]
