from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Direction = Literal["two_way", "to_hubspot", "to_spoke"]
ShortText = Field(min_length=1, max_length=100)


class MappingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spoke: str = Field(
        min_length=1,
        max_length=80,
        description="A standard field (`phone`) or a custom one (`custom.plan`).",
    )
    hubspot: str = Field(min_length=1, max_length=100, description="A HubSpot contact property.")
    create_field: bool = Field(
        False, description="Create the Spoke custom field (typed after the HubSpot property)."
    )


class Constants(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to_hubspot: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="HubSpot property → value set on every contact Spoke sends, e.g. "
        '`{"lead_source": "From Spoke"}`.',
    )
    to_spoke: dict[str, str] = Field(
        default_factory=dict,
        max_length=20,
        description="Spoke text field → value set on every user HubSpot sends.",
    )


class SettingsIn(BaseModel):
    """The whole contact sync configuration; saving a change starts a new settings version."""

    model_config = ConfigDict(extra="forbid")

    direction: Direction = "two_way"
    state: Literal["active", "paused"] = Field(
        "active", description="`paused`: nothing moves in real time; changes wait."
    )
    mappings: list[MappingIn] | None = Field(
        None,
        max_length=200,
        description="Field mappings; the locked first_name/last_name/email mappings are "
        "always included. Omit for the defaults.",
    )
    constants: Constants = Field(default_factory=Constants)
    send_list_ids: list[str] | None = Field(
        None, max_length=100, description="Lists whose users go to HubSpot; null = all users."
    )
    receive_list_id: str | None = Field(
        None, max_length=64, description="The list contacts from HubSpot are added to."
    )
    hubspot_list_id: str | None = Field(
        None,
        max_length=32,
        pattern=r"^[0-9]{1,32}$",
        description="A HubSpot MANUAL (static) contact list; every contact Spoke sends (in "
        "real time or by a manual sync to HubSpot) is added to it once. Contacts that only "
        "came from HubSpot are not. Checked against the portal when saved.",
    )
    lead_status: str | None = Field(
        "CONNECTED",
        max_length=64,
        description="`hs_lead_status` for contacts created from Spoke (if the portal has it).",
    )
    delete_policy: Literal["propagate", "soft", "never"] = Field(
        "soft",
        description="`propagate` deletes on the other side; `soft` marks the record instead "
        "(a HubSpot delete tags the user `hubspot_deleted=true`, a Spoke delete sets the "
        "contact's `spoke_deleted` property; restores clear both); `never` ignores deletes.",
    )
    conflict_winner: Literal["hubspot", "spoke"] = Field(
        "hubspot",
        description="Which app wins when both changed a field (a blank never overwrites).",
    )


class MappingOut(BaseModel):
    spoke: str
    hubspot: str
    type: str
    locked: bool


class StoppedMapping(BaseModel):
    spoke: str
    hubspot: str
    reason: str


class SettingsOut(BaseModel):
    version: int
    state: str = Field(description="`active`, `paused` or `syncing`.")
    direction: Direction
    mappings: list[MappingOut]
    stopped_mappings: list[StoppedMapping] = Field(
        description="Mappings that no longer sync (a field was deleted, a property is gone)."
    )
    constants: Constants
    send_list_ids: list[str] | None
    receive_list_id: str | None
    hubspot_list_id: str | None
    lead_status: str | None
    delete_policy: str
    conflict_winner: str
    pending_changes: int = Field(description="Spoke changes not yet sent to HubSpot.")
    parked_webhook_batches: int = Field(
        0,
        description="HubSpot webhook batches set aside after failing repeatedly "
        "(`GET /v1/sync/contacts/webhooks?state=parked`).",
    )
    updated_at: datetime | None


class RecordOut(BaseModel):
    external_id: str
    email: str | None
    hubspot_id: str | None
    state: str = Field(description="`in_sync`, `excluded` or `failing`.")
    reason: str | None
    failures: int
    next_attempt_at: datetime | None = Field(
        description="When a failing record is retried next (backoff); null: not scheduled."
    )
    hubspot_list_id: str | None = Field(description="The HubSpot list the contact was added to.")
    conflicts: list[dict[str, Any]]
    last_synced_at: datetime | None


class RunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    direction: Literal["to_hubspot", "to_spoke"] = "to_spoke"
    source_app: Literal["spoke", "hubspot"] | None = Field(
        None, description="Whose values win a conflict; default: the sending app."
    )
    dry_run: bool = Field(False, description="Count what would happen; write nothing.")


class RunProgress(BaseModel):
    done: int
    total: int | None
    rate_per_second: float
    eta_seconds: float | None


class RunOut(BaseModel):
    id: str
    status: str = Field(description="`queued`, `running`, `succeeded` or `failed`.")
    direction: str
    source_app: str
    dry_run: bool
    progress: RunProgress
    created: int
    updated: int
    unchanged: int
    duplicates: int = Field(description="Records found on both sides by email.")
    conflicts: int = Field(description="Fields that differed on both sides.")
    excluded: int
    failed: int
    list_adds: int = Field(
        0,
        description="Contacts added to the settings' HubSpot list (`hubspot_list_id`); a dry "
        "run counts those it would add.",
    )
    samples: dict[str, list[dict[str, Any]]] = Field(
        description="Up to 50 conflicts (field by field) and 50 errors."
    )
    error: str | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class WebhookBatchOut(BaseModel):
    id: int
    state: str = Field(description="`pending`, `parked` or `applied`.")
    received_at: datetime
    events: int = Field(description="How many events the delivery carried.")
    attempts: int = Field(description="Failed attempts to apply it.")
    error: str | None
    next_attempt_at: datetime | None
    parked_at: datetime | None
    processed_at: datetime | None
