"""HubSpot's rules for custom event names, property names, types and values
(hubspot-contract.md §4, crm-features.md §1.4), applied to what apps send us.

- Internal names: at most 50 characters of `[a-z0-9_]`, starting with a letter. A name that
  is too long, or that normalises like one already in use ("Signed Up" after "signed-up"),
  gets a short hash of the original, so two names never share a definition or property.
- Types: `string`, `number`, `datetime`, and `enumeration` (with true/false options) for
  booleans — HubSpot has no boolean event property.
- Values: 256 characters, 1,024 for URL and referrer properties.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Literal

PropertyType = Literal["string", "number", "datetime", "enumeration"]
PROPERTY_TYPES: tuple[PropertyType, ...] = ("string", "number", "datetime", "enumeration")
MAX_NAME = 50
MAX_PROPERTIES = 50
MAX_VALUE = 256
MAX_URL_VALUE = 1024
_INVALID = re.compile(r"[^a-z0-9_]+")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def internal_name(
    raw: str, *, prefix: str = "", limit: int = MAX_NAME, taken: Collection[str] = ()
) -> str:
    """`raw` as a HubSpot internal name; a short hash of `raw` is added when the plain form
    is too long or already `taken` by another name that normalises alike."""
    folded = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode().lower()
    slug = _INVALID.sub("_", folded).strip("_")
    name = f"{prefix}{slug}" if slug else prefix.rstrip("_") or "p"
    if not name[0].isalpha():
        name = f"p_{name}"
    if len(name) <= limit and name not in taken:
        return name
    digest = hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('_')}_{digest}"


def event_name(
    event_type: str, name: str, *, rollup: bool = False, taken: Collection[str] = ()
) -> str:
    """The definition's internal name: `spoke_<type>_<name>` (`…_daily` for rollups)."""
    suffix = "_daily" if rollup else ""
    base = internal_name(
        name,
        prefix=f"spoke_{event_type}_",
        limit=MAX_NAME - len(suffix),
        taken={t.removesuffix(suffix) for t in taken if t.endswith(suffix)},
    )
    return base + suffix


def event_label(event_type: str, name: str, *, rollup: bool = False) -> str:
    kind = {"page": "Page", "feature": "Feature", "track": "Event"}.get(event_type, "Event")
    label = f"{kind}: {name}"[:90]
    return f"{label} (daily)" if rollup else label


def infer_type(value: Any) -> PropertyType:
    if isinstance(value, bool):
        return "enumeration"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str) and _ISO.match(value):
        return "datetime"
    return "string"


def is_url_property(name: str) -> bool:
    lowered = name.lower()
    return "url" in lowered or "referrer" in lowered or "referer" in lowered


def render(value: Any, kind: str) -> str | None:
    """The wire string for `value` in a property of type `kind`, or None when the value
    does not fit the type (it is then left out of the completion)."""
    if value is None:
        return None
    if kind == "number":
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return repr(value) if isinstance(value, float) else str(value)
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            return value.strip()
        return None
    if kind == "enumeration":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower()
        return None
    if kind == "datetime":
        return value if isinstance(value, str) and _ISO.match(value) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def value_limit(name: str) -> int:
    return MAX_URL_VALUE if is_url_property(name) else MAX_VALUE


@functools.lru_cache(maxsize=1024)
def _uuid_prefix(workspace_id: str, kind: str) -> str:
    return hashlib.sha1(f"{workspace_id}:{kind}".encode(), usedforsecurity=False).hexdigest()[:16]


def completion_uuid(workspace_id: str, kind: str, item_id: int) -> str:
    """Deterministic, so a resend of the same completion carries the same uuid: 64 bits
    naming the workspace and kind (event or rollup), 64 bits of our id, in UUID form."""
    p = _uuid_prefix(workspace_id, kind)
    s = f"{item_id:016x}"
    return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{s[:4]}-{s[4:]}"


def iso_ms(moment: datetime) -> str:
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
