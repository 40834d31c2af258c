"""The audience filter language, as the API accepts it (the SQL is in `segments.py`).

A filter list reads like OneSignal's: conditions are ANDed, and `{"operator": "OR"}` between
them starts another group, so `[A, B, {"operator": "OR"}, C]` means (A and B) or C.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from spoke.users.models import STANDARD_FIELDS

MAX_CONDITIONS = 50
MAX_VALUES = 100

Scalar = (
    Annotated[str, StringConstraints(max_length=1024)]
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)
FilterField = Literal[
    "tag",
    "tags",
    "custom",
    "list",
    "last_seen",
    "created_at",
    "external_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "country",
    "industry",
    "company",
    "language",
    "timezone",
]
Relation = Literal[
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "exists",
    "not_exists",
    "in",
    "not_in",
    "has_all",
    "has_any",
    "has_none",
    "before",
    "after",
    "within_days",
    "not_within_days",
]

PROFILE_FIELDS = ("external_id", *STANDARD_FIELDS)
_VALUE_RELATIONS = frozenset({"=", "!=", ">", ">=", "<", "<="})
_PROFILE_RELATIONS = frozenset({"=", "!=", "exists", "not_exists", "in", "not_in"})
_TIME_RELATIONS = frozenset({"before", "after", "within_days", "not_within_days"})
ALLOWED: dict[str, frozenset[str]] = {
    "tag": _PROFILE_RELATIONS,
    "tags": frozenset({"has_all", "has_any", "has_none"}),
    "custom": _PROFILE_RELATIONS | _VALUE_RELATIONS,
    "list": frozenset({"in", "not_in"}),
    "last_seen": _TIME_RELATIONS | {"exists", "not_exists"},
    "created_at": _TIME_RELATIONS,
    **dict.fromkeys(PROFILE_FIELDS, _PROFILE_RELATIONS),
}


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(Input):
    """One test on a user. Which of `key`, `value`, `values`, `tags` and `days` it needs
    depends on `field` and `relation` (see docs/messaging.md, "Segments")."""

    field: FilterField
    relation: Relation
    key: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="The tag key (`tag`) or custom field name (`custom`)."
    )
    value: Scalar | None = Field(
        None,
        description="For `=`, `!=`, `>`, `<`, …; a list id for `list`; an ISO date-time "
        "for `before` / `after`.",
    )
    values: list[Scalar] | None = Field(
        None, min_length=1, max_length=MAX_VALUES, description="For `in` / `not_in`."
    )
    tags: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=128)],
            Annotated[str, StringConstraints(min_length=1, max_length=1024)],
        ]
        | None
    ) = Field(None, min_length=1, max_length=20, description="For `has_all/any/none`.")
    days: int | None = Field(
        None, ge=1, le=3650, description="For `within_days` / `not_within_days`."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Condition:
        if self.relation not in ALLOWED[self.field]:
            allowed = ", ".join(sorted(ALLOWED[self.field]))
            raise ValueError(f"`{self.field}` takes the relations {allowed}")
        needs_key = self.field in ("tag", "custom")
        if needs_key != (self.key is not None):
            raise ValueError("`key` is required for `tag` and `custom`, and only for them")
        wanted = _operand(self.field, self.relation)
        given = {
            name for name in ("value", "values", "tags", "days") if getattr(self, name) is not None
        }
        if given != ({wanted} if wanted else set()):
            raise ValueError(
                f"`{self.relation}` takes `{wanted}`"
                if wanted
                else f"`{self.relation}` takes no operand"
            )
        if self.relation in ("before", "after"):
            self.value = _timestamp(self.value).isoformat()
        return self


def _operand(field: str, relation: str) -> str | None:
    if relation in ("exists", "not_exists"):
        return None
    if relation in ("in", "not_in"):
        return "value" if field == "list" else "values"
    if relation.startswith("has_"):
        return "tags"
    if relation.endswith("within_days"):
        return "days"
    return "value"


def _timestamp(value: object) -> datetime:
    """An aware ISO 8601 date-time, in UTC (year 1 at +01:00 has no UTC form: refused)."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            pass
    raise ValueError("expected an ISO 8601 date-time with a time zone")


class Operator(Input):
    operator: Literal["OR", "AND"] = Field(
        description="`OR` starts a new group of conditions; `AND` (the default between "
        "conditions) changes nothing."
    )


FilterItem = Condition | Operator
Filters = Annotated[list[FilterItem], Field(min_length=1, max_length=MAX_CONDITIONS * 2)]


def groups(items: list[Any]) -> list[list[dict[str, Any]]]:
    """Split a stored filter list (dicts) into its OR-ed groups of AND-ed conditions."""
    out: list[list[dict[str, Any]]] = [[]]
    for item in items:
        if item.get("operator") == "OR":
            out.append([])
        elif "field" in item:
            out[-1].append(item)
    return out


SegmentName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class SegmentCreate(Input):
    name: SegmentName
    filters: Filters


class SegmentUpdate(Input):
    name: SegmentName | None = None
    filters: Filters | None = None


class Segment(BaseModel):
    id: str
    name: str
    filters: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime


class SegmentMember(BaseModel):
    external_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    last_seen_at: datetime | None
