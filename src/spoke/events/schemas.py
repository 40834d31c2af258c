from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from spoke.core.clock import utcnow
from spoke.users.schemas import EXTERNAL_ID_PATTERN
from spoke.users.validation import normalise_email

EventType = Literal["page", "feature", "track"]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
MAX_PROPERTIES = 100
MAX_VALUE_LENGTH = 4096
# Limits are declared as constraints, not checked in Python validators: pydantic-core
# applies them in Rust, which matters at 20,000 events a second.
PropertyName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
PropertyValue = (
    Annotated[str, StringConstraints(max_length=MAX_VALUE_LENGTH)]
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
    | None
)
# Clocks drift; an event "from the future" beyond this is a bug on the sender's side.
MAX_FUTURE = timedelta(hours=1)


class EventIn(BaseModel):
    """One occurrence. Identify the user by `user_id` (your external id) or `email`."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        None, description="Your id for this occurrence; sending it again is a no-op."
    )
    type: EventType = "track"
    name: EventName
    user_id: (
        Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=EXTERNAL_ID_PATTERN)]
        | None
    ) = None
    email: str | None = Field(None, max_length=320)
    properties: dict[PropertyName, PropertyValue] = Field(
        default_factory=dict, max_length=MAX_PROPERTIES
    )
    occurred_at: AwareDatetime | None = Field(
        None, description="With a time zone. Default: when Spoke received it."
    )

    @field_validator("email", mode="after")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalise_email(value) if value else None

    @field_validator("occurred_at", mode="after")
    @classmethod
    def _occurred_at(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value - utcnow() > MAX_FUTURE:
            raise ValueError("is more than an hour in the future")
        return value

    @model_validator(mode="after")
    def _someone(self) -> EventIn:
        if self.user_id is None and self.email is None:
            raise ValueError("an event needs `user_id` or `email`")
        return self


class EventResult(BaseModel):
    index: int
    status: Literal["accepted", "duplicate", "error"]
    id: str | None = None
    error: dict[str, Any] | None = None


class IngestResult(BaseModel):
    accepted: int
    duplicates: int = Field(description="Events whose `id` was already stored (or repeated).")
    failed: int
    results: list[EventResult] = Field(
        description="The events that were not stored, by their index in the request."
    )


class Event(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(validation_alias="id", description="Order of arrival.")
    id: str | None = Field(validation_alias="event_key")
    type: str
    name: str
    user_id: str | None = Field(validation_alias="external_id")
    email: str | None
    properties: dict[str, Any]
    occurred_at: datetime
    received_at: datetime


class KnownEvent(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    type: str
    name: str
    core: bool = Field(validation_alias="is_core")
    volume: int
    first_seen_at: datetime
    last_seen_at: datetime


class KnownEventUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    core: bool = Field(description="Core events are what goes to HubSpot by default.")
