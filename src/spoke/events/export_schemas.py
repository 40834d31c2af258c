"""Input and output of `/v1/events/hubspot/...`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from spoke.events.naming import PropertyType
from spoke.events.schemas import EventName, EventType

Delivery = Literal["each", "daily_rollup"]
PropertyName = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ExportedEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: EventType
    name: EventName
    delivery: Delivery | None = Field(
        None, description="`each` or `daily_rollup`; null: the workspace's default."
    )


class ExportSettingsIn(BaseModel):
    """What goes to HubSpot, how, and when. Saving with `enabled: true` for the first time
    (or after a pause) starts an export at once, looking back `lookback_days`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    send: Literal["core", "selected"] = Field(
        "core",
        description="`core`: the events marked core (`PATCH /v1/events/known/...`); "
        "`selected`: exactly the events listed in `events`.",
    )
    events: list[ExportedEvent] = Field(
        default_factory=list,
        max_length=500,
        description="With `selected`, the events to send; with `core`, per-event delivery "
        "for core events (others listed are ignored).",
    )
    default_delivery: Delivery = Field(
        "each",
        description="`each`: every occurrence is one completion. `daily_rollup`: one "
        "completion per user, event and UTC day, with `count`, `first_at` and `last_at`.",
    )
    property_types: dict[PropertyName, PropertyType] = Field(
        default_factory=dict,
        max_length=500,
        description="Declared HubSpot types of event properties; others are inferred from "
        "their first value (booleans become true/false enumerations).",
    )
    long_values: Literal["truncate", "reject"] = Field(
        "truncate",
        description="Values over HubSpot's limit (256 characters, 1,024 for URLs): cut, or "
        "reject that event (reported, never failing a batch).",
    )
    create_contacts: bool = Field(
        False,
        description="Create a HubSpot contact for a user no contact matches, when the user's "
        "email (or id) is an email address. Otherwise the user's events wait.",
    )
    schedule: Literal["nightly", "realtime"] = Field(
        "nightly", description="`nightly` at `nightly_hour` (UTC), or `realtime` (each minute)."
    )
    nightly_hour: int = Field(2, ge=0, le=23, description="UTC hour of the nightly export.")
    lookback_days: int = Field(
        7, ge=0, le=365, description="How far back the first export after enabling reaches."
    )
    monthly_cap: int = Field(
        30_000_000,
        ge=1,
        le=30_000_000,
        description="Completions per calendar month (UTC) for the portal; HubSpot's is "
        "30,000,000. Past it, events wait for the next month.",
    )

    @model_validator(mode="after")
    def _selection(self) -> ExportSettingsIn:
        if self.send == "selected" and not self.events:
            raise ValueError("`send: selected` needs at least one event in `events`")
        seen: set[tuple[str, str]] = set()
        for item in self.events:
            key = (item.type, item.name)
            if key in seen:
                raise ValueError(f"{item.type} event {item.name!r} is listed twice")
            seen.add(key)
        return self


class ExportSettingsOut(ExportSettingsIn):
    model_config = ConfigDict(extra="forbid")

    version: int
    enabled_at: datetime | None
    export_from: datetime | None = Field(
        description="Events that occurred before this are not exported."
    )
    updated_at: datetime


class RunOut(BaseModel):
    id: str
    kind: str
    status: str
    sent: int
    waiting: int
    rejected: int
    resolved: int = Field(description="Batches of unknown outcome found already in HubSpot.")
    batches: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Counted(BaseModel):
    total: int
    by_reason: dict[str, int]


class CapOut(BaseModel):
    portal_id: int
    month: str
    used: int = Field(description="Completions sent this month (and any in flight).")
    cap: int
    remaining: int
    forecast: int = Field(description="Usage at month end if the pace so far continues.")
    warning: bool = Field(description="80% of the cap is used.")
    reached: bool


class DefinitionOut(BaseModel):
    type: str
    name: str
    rollup: bool
    fully_qualified_name: str | None
    state: str
    reason: str | None
    properties: int
    dropped_properties: dict[str, str]


class ExportStatus(BaseModel):
    enabled: bool
    schedule: str
    last_run: RunOut | None
    sent: int = Field(description="Completions sent since the export was first enabled.")
    waiting: Counted = Field(description="Events (and daily rollups) waiting, by reason.")
    unmatched_users: int = Field(description="Users with waiting events and no contact yet.")
    rejected: Counted = Field(description="Events that will not be sent, by reason.")
    cap: CapOut | None
    definitions: list[DefinitionOut]
