"""Field mappings between Spoke user fields and HubSpot contact properties.

A Spoke field is a standard field (`first_name`) or a custom one (`custom.plan`). Values
cross the boundary as HubSpot's strings: `to_hubspot` renders a Spoke value, `to_spoke`
parses one back by the Spoke field's type. Only type-compatible pairs may be mapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spoke.users.models import STANDARD_FIELDS

LOCKED = (("first_name", "firstname"), ("last_name", "lastname"), ("email", "email"))
DEFAULTS = (*LOCKED, ("phone", "phone"), ("country", "country"), ("industry", "industry"))

# Spoke field type -> HubSpot property types it may pair with.
COMPATIBLE: dict[str, frozenset[str]] = {
    "string": frozenset({"string"}),
    "number": frozenset({"number"}),
    "boolean": frozenset({"bool"}),
    "date": frozenset({"date"}),
    "datetime": frozenset({"datetime"}),
    "enumeration": frozenset({"enumeration"}),
}
# HubSpot property type -> the custom field type a mapping creates for it.
CREATES: dict[str, str] = {
    "string": "string",
    "number": "number",
    "bool": "boolean",
    "date": "date",
    "datetime": "datetime",
    "enumeration": "enumeration",
}


@dataclass(frozen=True)
class Mapping:
    spoke: str  # "first_name" or "custom.<name>"
    hubspot: str
    spoke_type: str
    locked: bool = False

    @property
    def custom_name(self) -> str | None:
        return self.spoke.removeprefix("custom.") if self.spoke.startswith("custom.") else None


def spoke_type(field: str, custom_types: dict[str, str]) -> str | None:
    """The type of a Spoke field, or None if there is no such field."""
    if field in STANDARD_FIELDS:
        return "string"
    if field.startswith("custom."):
        return custom_types.get(field.removeprefix("custom."))
    return None


def to_hubspot(value: Any, field_type: str) -> str:
    """A Spoke value as HubSpot's string ("" for none)."""
    if value is None:
        return ""
    if field_type == "boolean":
        return "true" if value else "false"
    if field_type == "number":
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return str(value)


def to_spoke(value: str | None, field_type: str) -> Any:
    """A HubSpot string as a Spoke value (None for blank).

    Raises:
        ValueError: the value cannot be read as the field's type.
    """
    if value is None or value == "":
        return None
    if field_type == "boolean":
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError(f"{value!r} is not true or false")
        return lowered == "true"
    if field_type == "number":
        number = float(value)
        return int(number) if number.is_integer() and "." not in value else number
    return value


def read_user_value(mapping: Mapping, profile: dict[str, Any], custom: dict[str, Any]) -> Any:
    name = mapping.custom_name
    return custom.get(name) if name is not None else profile.get(mapping.spoke)
