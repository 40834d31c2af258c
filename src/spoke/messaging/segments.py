"""Audience filters as SQL: which users a segment holds, decided by the database.

A filter list (see `segment_schemas`) becomes one WHERE clause over `users`, so the fan-out
walks a segment the way it walks any audience: keyset pages by user id, never loading the
workspace into Python. Tags and list membership are EXISTS subqueries on their primary
keys; custom fields are read out of the JSON column with a per-dialect expression
(`json_extract` on SQLite, `->>` on PostgreSQL) that yields NULL unless the stored value has
the expected JSON type, so a comparison can never fail on another workspace's data.

Negative tests (`!=`, `not_in`, `has_none`, `not_exists`, `not_within_days`) include users
that have no value at all: "plan != pro" holds for a user without a plan.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.compiler import SQLCompiler

from spoke.core.clock import utcnow
from spoke.core.errors import InvalidInput
from spoke.messaging.segment_schemas import PROFILE_FIELDS, groups
from spoke.users import fields as custom_fields
from spoke.users.models import ListMembership, User, UserList, UserTag


class InvalidSegment(InvalidInput):
    code = "invalid_segment"
    title = "Invalid segment filter"


# -- custom fields out of JSON, per dialect --------------------------------------------------


class JsonValue(sa.sql.expression.ColumnElement[Any]):
    """`column[key]` as a SQL scalar when its JSON type is `kind`, else NULL.

    kind: `string`, `number`, `boolean`, or `any` (NULL only when absent or JSON null)."""

    inherit_cache = True

    def __init__(self, column: QueryableAttribute[Any], key: str, kind: str) -> None:
        self.column: sa.ColumnElement[Any] = column.__clause_element__()
        self.key = key
        self.kind = kind
        types: dict[str, sa.types.TypeEngine[Any]] = {"number": sa.Float(), "boolean": sa.Boolean()}
        self.type = types.get(kind, sa.String())

    # The key and kind are part of the statement text, so they belong in the cache key.
    _traverse_internals = [
        ("column", sa.sql.visitors.InternalTraversal.dp_clauseelement),
        ("key", sa.sql.visitors.InternalTraversal.dp_string),
        ("kind", sa.sql.visitors.InternalTraversal.dp_string),
    ]


_SQLITE_TYPES = {"string": "'text'", "number": "'integer', 'real'", "boolean": "'true', 'false'"}
_PG_TYPES = {"string": "'string'", "number": "'number'", "boolean": "'boolean'"}


@compiles(JsonValue)
def _json_value_sqlite(element: JsonValue, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    path = compiler.process(sa.literal(f'$."{element.key}"'), **kw)
    extract = f"json_extract({column}, {path})"
    if element.kind == "any":
        return extract
    return (
        f"(CASE WHEN json_type({column}, {path}) IN ({_SQLITE_TYPES[element.kind]}) "
        f"THEN {extract} END)"
    )


@compiles(JsonValue, "postgresql")
def _json_value_pg(element: JsonValue, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    key = compiler.process(sa.literal(element.key, sa.String()), **kw)
    text = f"({column} ->> {key})"
    if element.kind == "any":
        return text
    cast = {"number": "DOUBLE PRECISION", "boolean": "BOOLEAN"}.get(element.kind)
    value = f"CAST({text} AS {cast})" if cast else text
    return (
        f"(CASE WHEN jsonb_typeof({column} -> {key}) = {_PG_TYPES[element.kind]} THEN {value} END)"
    )


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string"


# -- validation: the stored form -------------------------------------------------------------


def normalise(
    session: Session, workspace_id: str, items: Sequence[Any], *, prefix: str
) -> list[dict[str, Any]]:
    """The filter list as stored: values coerced to the field's type (custom fields), e-mail
    and country normalised like user writes, lists checked to exist in the workspace.

    Raises:
        InvalidSegment: naming each offending condition (`{prefix}.{index}.value`).
    """
    stored: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    definitions: dict[str, custom_fields.Definition] | None = None
    for index, item in enumerate(items):
        raw = item if isinstance(item, dict) else item.model_dump(exclude_none=True)
        if "operator" in raw:
            stored.append({"operator": raw["operator"]})
            continue
        where = f"{prefix}.{index}"
        try:
            if raw["field"] == "custom" and definitions is None:
                definitions = custom_fields.definitions(session, workspace_id)
            stored.append(_normalise_one(session, workspace_id, raw, definitions or {}))
        except ValueError as exc:
            errors.append({"field": where, "message": str(exc), "type": "invalid_filter"})
    if not errors and any(not group for group in groups(stored)):
        errors.append(
            {
                "field": prefix,
                "message": "every OR group needs at least one condition",
                "type": "empty_group",
            }
        )
    if errors:
        raise InvalidSegment(
            f"The filter is not valid: {errors[0]['field']}: {errors[0]['message']}",
            errors=errors,
        )
    return stored


def _normalise_one(
    session: Session,
    workspace_id: str,
    raw: dict[str, Any],
    definitions: dict[str, custom_fields.Definition],
) -> dict[str, Any]:
    field, relation = raw["field"], raw["relation"]
    out = dict(raw)
    if field == "custom":
        definition = definitions.get(raw["key"])
        if definition is None:
            raise ValueError(f"no custom field named {raw['key']!r}")
        if relation in (">", ">=", "<", "<=") and definition.type not in (
            "number",
            "date",
            "datetime",
        ):
            raise ValueError(f"`{relation}` needs a number, date or datetime field")
        if "value" in raw:
            out["value"] = definition.coerce(_integral(raw["value"]))
        if "values" in raw:
            out["values"] = [definition.coerce(_integral(v)) for v in raw["values"]]
    elif field in PROFILE_FIELDS or field == "tag":
        if "value" in raw:
            out["value"] = _profile_value(field, raw["value"])
        if "values" in raw:
            out["values"] = [_profile_value(field, v) for v in raw["values"]]
    elif field == "list":
        found = session.get(UserList, raw["value"]) if isinstance(raw["value"], str) else None
        if found is None or found.workspace_id != workspace_id:
            raise ValueError(f"no list with id {raw['value']!r}")
    return out


def _integral(value: Any) -> Any:
    """JSON numbers arrive as floats; keep whole ones integers, as user writes store them."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _profile_value(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"`{field}` values are strings")
    if field == "email":
        return value.strip().lower()
    if field == "country":
        return value.strip().upper()
    return value


# -- SQL --------------------------------------------------------------------------------------


def clause(items: Sequence[dict[str, Any]]) -> sa.ColumnElement[bool]:
    """The stored filter list as a condition on `users` (OR of AND-ed groups)."""
    return sa.or_(*(sa.and_(*(_condition(c) for c in group)) for group in groups(list(items))))


def _condition(cond: dict[str, Any]) -> sa.ColumnElement[bool]:
    field = cond["field"]
    if field == "tag":
        return _tag(cond)
    if field == "tags":
        return _tag_set(cond["relation"], cond["tags"])
    if field == "list":
        member = sa.exists().where(
            ListMembership.user_id == User.id, ListMembership.list_id == cond["value"]
        )
        return member if cond["relation"] == "in" else ~member
    if field in ("last_seen", "created_at"):
        column = User.last_seen_at if field == "last_seen" else User.created_at
        return _time(column, cond)
    if field == "custom":
        return _custom(cond)
    return _compare(getattr(User, field), cond)


def _compare(column: sa.ColumnElement[Any], cond: dict[str, Any]) -> sa.ColumnElement[bool]:
    relation = cond["relation"]
    value = cond.get("value")
    if relation == "exists":
        return column.is_not(None)
    if relation == "not_exists":
        return column.is_(None)
    if relation == "in":
        return column.in_(cond["values"])
    if relation == "not_in":
        return sa.or_(column.is_(None), column.not_in(cond["values"]))
    if relation == "!=":
        return sa.or_(column.is_(None), column != value)
    compare: dict[str, Callable[[Any, Any], sa.ColumnElement[bool]]] = {
        "=": operator.eq,
        ">": operator.gt,
        ">=": operator.ge,
        "<": operator.lt,
        "<=": operator.le,
    }
    return compare[relation](column, value)


def _custom(cond: dict[str, Any]) -> sa.ColumnElement[bool]:
    samples = [cond["value"]] if "value" in cond else cond.get("values") or []
    kind = _kind_of(samples[0]) if samples else "any"
    if kind == "number":
        # As floats: an int operand would make SQLAlchemy bind every value as INTEGER,
        # and PostgreSQL would round 65.5 to 66.
        cond = {**cond}
        if "value" in cond:
            cond["value"] = float(cond["value"])
        if "values" in cond:
            cond["values"] = [float(v) for v in cond["values"]]
    return _compare(JsonValue(User.custom, cond["key"], kind), cond)


def _tag(cond: dict[str, Any]) -> sa.ColumnElement[bool]:
    relation, key = cond["relation"], cond["key"]
    having = sa.exists().where(UserTag.user_id == User.id, UserTag.key == key)
    if relation == "exists":
        return having
    if relation == "not_exists":
        return ~having
    if relation in ("=", "!="):
        match = having.where(UserTag.value == cond["value"])
        return match if relation == "=" else ~match
    within = having.where(UserTag.value.in_(cond["values"]))
    return within if relation == "in" else ~within


def _tag_set(relation: str, tags: dict[str, str]) -> sa.ColumnElement[bool]:
    each = [
        sa.exists().where(UserTag.user_id == User.id, UserTag.key == k, UserTag.value == v)
        for k, v in tags.items()
    ]
    if relation == "has_all":
        return sa.and_(*each)
    if relation == "has_any":
        return sa.or_(*each)
    return sa.not_(sa.or_(*each))


def _time(
    column: QueryableAttribute[datetime | None], cond: dict[str, Any]
) -> sa.ColumnElement[bool]:
    relation = cond["relation"]
    if relation == "exists":
        return column.is_not(None)
    if relation == "not_exists":
        return column.is_(None)
    if relation in ("before", "after"):
        when = datetime.fromisoformat(cond["value"])
        return column < when if relation == "before" else column > when
    # Relative to when the filter runs: a scheduled send counts from its send time.
    since = utcnow() - timedelta(days=cond["days"])
    if relation == "within_days":
        return column >= since
    return sa.or_(column.is_(None), column < since)


def list_ids(items: Sequence[dict[str, Any]]) -> set[str]:
    """The lists a filter reads (they can't be deleted while a saved segment uses them)."""
    return {str(c["value"]) for c in items if c.get("field") == "list"}
