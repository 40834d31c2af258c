"""Property validation: checks and normalises values against a portal's property definitions.

Every problem in a request is collected and reported in one HubSpot-shaped 400
(`Property values were not valid: [...]`, contract §1.1).
"""

from __future__ import annotations

import re
from typing import Any

from spoke.sandbox.hubspot import errors
from spoke.sandbox.hubspot.schema import ObjectType
from spoke.sandbox.hubspot.store import Portal, Record
from spoke.sandbox.hubspot.timefmt import iso_date, iso_ms, parse_ms

JSONDict = dict[str, Any]
Values = dict[str, str | None]  # validated property values; None clears the property

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LIFECYCLE_ORDER = {
    v: i
    for i, v in enumerate(
        [
            "subscriber",
            "lead",
            "marketingqualifiedlead",
            "salesqualifiedlead",
            "opportunity",
            "customer",
            "evangelist",
        ]
    )
}


def validate_properties(portal: Portal, otype: ObjectType, raw: object) -> Values:
    """Check and normalise property values from a request body.

    Raises:
        SandboxError: 400 `Property values were not valid: [...]` listing every bad property.
    """
    if not isinstance(raw, dict):
        raise errors.validation("Invalid input JSON: `properties` must be an object")
    defs = portal.properties[otype.name]
    out: Values = {}
    problems: list[JSONDict] = []
    for name, value in raw.items():
        d = defs.get(name)
        if d is None or d["archived"]:
            problems.append(
                errors.property_problem(
                    name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist', portal.id
                )
            )
            continue
        if d["modificationMetadata"]["readOnlyValue"]:
            problems.append(
                errors.property_problem(
                    name,
                    "READ_ONLY_VALUE",
                    f'"{name}" is a read only property; its value cannot be set.',
                    portal.id,
                )
            )
            continue
        if value is None or value == "":
            out[name] = None
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, int | float):
            text = str(value)
        elif isinstance(value, str):
            text = value
        else:
            problems.append(
                errors.property_problem(
                    name, "INVALID_VALUE", f"{value!r} is not a valid value for {name}", portal.id
                )
            )
            continue
        normalised, problem = _normalise(d, name, text)
        if problem is not None:
            problems.append(errors.property_problem(name, problem[0], problem[1], portal.id))
        else:
            out[name] = normalised
    if problems:
        raise errors.property_errors(problems)
    return out


def _normalise(d: JSONDict, name: str, text: str) -> tuple[str, tuple[str, str] | None]:
    kind = d["type"]
    if kind == "string":
        if name == "email":
            if not _EMAIL.match(text):
                return text, ("INVALID_EMAIL", f"Email address {text} is invalid")
            return text.lower(), None
        return text, None
    if kind == "number":
        try:
            float(text)
        except ValueError:
            return text, ("INVALID_INTEGER", f"{text} was not a valid number.")
        return text, None
    if kind == "bool":
        low = text.lower()
        if low not in ("true", "false"):
            return text, ("INVALID_BOOLEAN", f"{text} is not a valid boolean (true or false).")
        return low, None
    if kind == "datetime":
        ms = parse_ms(text)
        if ms is None:
            return text, ("INVALID_DATETIME", f"{text} was not a valid long or ISO-8601 datetime.")
        return iso_ms(ms), None
    if kind == "date":
        ms = parse_ms(text)
        if ms is None:
            return text, ("INVALID_DATE", f"{text} was not a valid date.")
        if ms % 86_400_000:
            return text, ("INVALID_DATE", f"{text} is at {iso_ms(ms)}, not midnight UTC.")
        return iso_date(ms), None
    if kind == "enumeration" and d["options"]:
        allowed = {o["value"] for o in d["options"]}
        parts = text.split(";") if d["fieldType"] == "checkbox" else [text]
        bad = [p for p in parts if p not in allowed]
        if bad:
            return text, (
                "INVALID_OPTION",
                f"{bad[0]} was not one of the allowed options: {sorted(allowed)}",
            )
    return text, None


def check_lifecycle(portal: Portal, rec: Record, values: Values) -> None:
    """HubSpot lets `lifecyclestage` move only forward unless it is cleared first (contract §1)."""
    new = values.get("lifecyclestage")
    old = rec.props.get("lifecyclestage")
    if new and old and _LIFECYCLE_ORDER.get(new, 99) < _LIFECYCLE_ORDER.get(old, 99):
        raise errors.property_errors(
            [
                errors.property_problem(
                    "lifecyclestage",
                    "INVALID_OPTION",
                    f"lifecyclestage cannot move backwards from {old} to {new}; clear it first.",
                    portal.id,
                )
            ]
        )


def require_timestamp(portal: Portal, otype: ObjectType, values: Values) -> None:
    """Engagements need `hs_timestamp`; meetings fall back to the start time (contract §1.3)."""
    if otype.name not in ("meetings", "notes") or values.get("hs_timestamp"):
        return
    if otype.name == "meetings" and values.get("hs_meeting_start_time"):
        values["hs_timestamp"] = values["hs_meeting_start_time"]
        return
    raise errors.property_errors(
        [
            errors.property_problem(
                "hs_timestamp", "REQUIRED_PROPERTY", "hs_timestamp is required", portal.id
            )
        ]
    )
