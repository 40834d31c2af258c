"""Pydantic models of HubSpot payloads (hubspot-contract.md).

Field names are snake_case; the wire uses camelCase aliases. Responses ignore fields they do
not know, so new HubSpot fields never break parsing. Every CRM property value and every id is a
string on the wire and stays one here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel

# Limits from hubspot-contract.md §1, §1.2, §2 and §4.
BATCH_LIMIT = 100
SEARCH_PAGE_LIMIT = 200
SEARCH_RESULT_CAP = 10_000
SEARCH_MAX_FILTER_GROUPS = 5
SEARCH_MAX_FILTERS_PER_GROUP = 6
SEARCH_MAX_FILTERS = 18
LIST_PAGE_LIMIT = 100
ASSOCIATION_PAGE_LIMIT = 500
ASSOCIATION_BATCH_READ_LIMIT = 1_000
EVENT_BATCH_LIMIT = 500

PropertyValue = str | int | float | bool | None
"""What callers may pass as a property value; sent to HubSpot as a string."""


def property_string(value: PropertyValue) -> str:
    """Render a property value as HubSpot expects it on the wire.

    Args:
        value: a string, number or bool; None clears the property.

    Returns:
        The string form: bools as `true`/`false`, None as the empty string (HubSpot's way of
        clearing a value).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def property_strings(properties: Mapping[str, PropertyValue]) -> dict[str, str]:
    """Apply `property_string` to every value of a mapping."""
    return {name: property_string(value) for name, value in properties.items()}


class HubSpotModel(BaseModel):
    """Base of all payload models: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
        # v4 associations send ids as numbers; ids are strings everywhere else.
        coerce_numbers_to_str=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """Serialise for a request body: camelCase keys, JSON types, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- paging -----------------------------------------------------------------------------------


class NextPage(HubSpotModel):
    after: str
    link: str | None = None


class Paging(HubSpotModel):
    next: NextPage | None = None


class _Paged(HubSpotModel):
    paging: Paging | None = None

    @property
    def next_after(self) -> str | None:
        """The cursor for the next page, or None on the last page."""
        return self.paging.next.after if self.paging and self.paging.next else None


# --- CRM objects ------------------------------------------------------------------------------


class AssociationCategory(StrEnum):
    HUBSPOT_DEFINED = "HUBSPOT_DEFINED"
    USER_DEFINED = "USER_DEFINED"
    INTEGRATOR_DEFINED = "INTEGRATOR_DEFINED"


class ObjectId(HubSpotModel):
    id: str


class AssociationSpec(HubSpotModel):
    """One association type: category plus numeric type id (e.g. HUBSPOT_DEFINED 279)."""

    association_category: AssociationCategory = AssociationCategory.HUBSPOT_DEFINED
    association_type_id: int


class AssociationInput(HubSpotModel):
    """An association created inline with a record (`associations` of a create body)."""

    to: ObjectId
    types: list[AssociationSpec]

    @classmethod
    def to_id(
        cls, object_id: str, type_id: int, category: AssociationCategory | None = None
    ) -> AssociationInput:
        """Shorthand: associate with `object_id` by one type id (HUBSPOT_DEFINED by default)."""
        spec = AssociationSpec(
            association_category=category or AssociationCategory.HUBSPOT_DEFINED,
            association_type_id=type_id,
        )
        return cls(to=ObjectId(id=str(object_id)), types=[spec])


class PropertyHistoryEntry(HubSpotModel):
    value: str | None = None
    timestamp: datetime | None = None
    source_type: str | None = None
    source_id: str | None = None
    source_label: str | None = None
    updated_by_user_id: int | None = None


class AssociatedId(HubSpotModel):
    id: str
    type: str | None = None


class AssociatedIds(_Paged):
    results: list[AssociatedId] = []


class SimplePublicObject(HubSpotModel):
    """A CRM record (contact, company, meeting, note…) as HubSpot returns it."""

    id: str
    properties: dict[str, str | None] = {}
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived: bool = False
    archived_at: datetime | None = None
    properties_with_history: dict[str, list[PropertyHistoryEntry]] | None = None
    associations: dict[str, AssociatedIds] | None = None
    url: str | None = None
    object_write_trace_id: str | None = None


class UpsertedObject(SimplePublicObject):
    """A batch upsert result; `new` tells whether the record was created."""

    new: bool = False


class ObjectPage(_Paged):
    results: list[SimplePublicObject] = []


class ObjectCreate(HubSpotModel):
    """One record to create (single or batch create)."""

    properties: dict[str, str]
    associations: list[AssociationInput] = []
    object_write_trace_id: str | None = None


class ObjectUpdate(HubSpotModel):
    """One record to update in a batch (by id, or by `id_property`)."""

    id: str
    properties: dict[str, str]
    id_property: str | None = None


class ObjectUpsert(HubSpotModel):
    """One record to upsert in a batch, keyed by a unique property (email by default)."""

    id: str
    properties: dict[str, str]
    id_property: str = "email"


# --- batch results ----------------------------------------------------------------------------


class BatchError(HubSpotModel):
    """One failed item of a 207 multi-status batch response (HubSpot's `StandardError`)."""

    status: str = "error"
    category: str | None = None
    sub_category: str | dict[str, Any] | None = None
    message: str = ""
    context: dict[str, list[str]] = {}
    errors: list[dict[str, Any]] = []
    links: dict[str, str] = {}
    id: str | None = None

    @property
    def ids(self) -> list[str]:
        """The input ids this error is about, from the usual context keys."""
        found: list[str] = []
        for key in ("ids", "id", "objectWriteTraceId", "emails", "email"):
            found.extend(self.context.get(key, []))
        if self.id is not None and self.id not in found:
            found.append(self.id)
        return found


ResultT = TypeVar("ResultT", bound=BaseModel)


class BatchResult(HubSpotModel, Generic[ResultT]):
    """A batch response: 200/201 (all ok) or 207 (some items failed, listed in `errors`)."""

    status: str = "COMPLETE"
    results: list[ResultT] = []
    errors: list[BatchError] = []
    num_errors: int = 0
    requested_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.errors and self.num_errors == 0

    def merged(self, other: BatchResult[ResultT]) -> BatchResult[ResultT]:
        """Combine two chunks' results into one (used when a call spans several batches)."""
        return self.model_copy(
            update={
                "results": [*self.results, *other.results],
                "errors": [*self.errors, *other.errors],
                "num_errors": self.num_errors + other.num_errors,
                "completed_at": other.completed_at or self.completed_at,
            }
        )


# --- search -----------------------------------------------------------------------------------


class FilterOperator(StrEnum):
    EQ = "EQ"
    NEQ = "NEQ"
    LT = "LT"
    LTE = "LTE"
    GT = "GT"
    GTE = "GTE"
    BETWEEN = "BETWEEN"
    IN = "IN"
    NOT_IN = "NOT_IN"
    HAS_PROPERTY = "HAS_PROPERTY"
    NOT_HAS_PROPERTY = "NOT_HAS_PROPERTY"
    CONTAINS_TOKEN = "CONTAINS_TOKEN"  # noqa: S105 (an operator name, not a secret)
    NOT_CONTAINS_TOKEN = "NOT_CONTAINS_TOKEN"  # noqa: S105


class SortDirection(StrEnum):
    ASCENDING = "ASCENDING"
    DESCENDING = "DESCENDING"


class Filter(HubSpotModel):
    """One search filter. `value` for comparisons, `high_value` for BETWEEN, `values` for IN."""

    property_name: str
    operator: FilterOperator
    value: str | None = None
    high_value: str | None = None
    values: list[str] | None = None


class FilterGroup(HubSpotModel):
    """Filters ANDed together; a search ORs its groups."""

    filters: list[Filter]


class Sort(HubSpotModel):
    property_name: str
    direction: SortDirection = SortDirection.ASCENDING


class SearchRequest(HubSpotModel):
    """Body of `POST /crm/v3/objects/{type}/search`, checked against HubSpot's limits."""

    filter_groups: list[FilterGroup] = []
    sorts: list[Sort] = []
    query: str | None = None
    properties: list[str] = []
    limit: int = Field(default=100, ge=1, le=SEARCH_PAGE_LIMIT)
    after: str | None = None

    @model_validator(mode="after")
    def _within_limits(self) -> SearchRequest:
        # hubspot-contract.md §1.2: 5 groups of 6 filters, 18 filters total, one sort rule.
        if len(self.filter_groups) > SEARCH_MAX_FILTER_GROUPS:
            raise ValueError(f"at most {SEARCH_MAX_FILTER_GROUPS} filter groups")
        if any(len(g.filters) > SEARCH_MAX_FILTERS_PER_GROUP for g in self.filter_groups):
            raise ValueError(f"at most {SEARCH_MAX_FILTERS_PER_GROUP} filters per group")
        if sum(len(g.filters) for g in self.filter_groups) > SEARCH_MAX_FILTERS:
            raise ValueError(f"at most {SEARCH_MAX_FILTERS} filters in total")
        if len(self.sorts) > 1:
            raise ValueError("HubSpot search takes one sort rule")
        return self

    def to_wire(self) -> dict[str, Any]:
        body = super().to_wire()
        # HubSpot expects the lists even when empty (the official SDK always sends them).
        body.setdefault("filterGroups", [])
        return body


class SearchPage(ObjectPage):
    total: int = 0


# --- properties and owners --------------------------------------------------------------------


PropertyType = Literal[
    "bool", "date", "datetime", "enumeration", "number", "phone_number", "string"
]
FieldType = Literal[
    "booleancheckbox",
    "calculation_equation",
    "checkbox",
    "date",
    "file",
    "html",
    "number",
    "phonenumber",
    "radio",
    "select",
    "text",
    "textarea",
]


class PropertyOption(HubSpotModel):
    label: str
    value: str
    hidden: bool = False
    display_order: int | None = None
    description: str | None = None


class PropertyCreate(HubSpotModel):
    """Body of `POST /crm/v3/properties/{objectType}`."""

    name: str
    label: str
    type: PropertyType
    field_type: FieldType
    group_name: str
    description: str | None = None
    options: list[PropertyOption] | None = None
    display_order: int | None = None
    has_unique_value: bool | None = None
    hidden: bool | None = None
    form_field: bool | None = None


class Property(HubSpotModel):
    """A property definition."""

    name: str
    label: str = ""
    type: str = "string"
    field_type: str = "text"
    group_name: str | None = None
    description: str | None = None
    options: list[PropertyOption] = []
    display_order: int | None = None
    has_unique_value: bool = False
    hidden: bool = False
    form_field: bool = False
    hubspot_defined: bool | None = None
    calculated: bool = False
    archived: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    modification_metadata: dict[str, Any] | None = None

    @property
    def read_only_value(self) -> bool:
        """True when HubSpot refuses writes to this property's values."""
        return bool((self.modification_metadata or {}).get("readOnlyValue", False))


class OwnerTeam(HubSpotModel):
    id: str
    name: str | None = None
    primary: bool = False


class Owner(HubSpotModel):
    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    user_id: int | None = None
    user_id_including_inactive: int | None = None
    type: str = "PERSON"
    teams: list[OwnerTeam] = []
    created_at: datetime | None = None
    updated_at: datetime | None = None
    archived: bool = False


class OwnerPage(_Paged):
    results: list[Owner] = []


# --- lists ------------------------------------------------------------------------------------


class ObjectList(HubSpotModel):
    """A list (segment); Spoke uses MANUAL contact lists (`object_type_id` `0-1`)."""

    list_id: str
    name: str
    object_type_id: str = "0-1"
    processing_type: str = "MANUAL"
    processing_status: str | None = None
    list_version: int | None = None
    size: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    deleted_at: datetime | None = None


class MembershipsUpdate(HubSpotModel):
    """Result of adding or removing list members."""

    # HubSpot spells the added key `recordsIdsAdded` (sic) in the lists v3 spec.
    record_ids_added: list[str] = Field(
        default=[], validation_alias=AliasChoices("recordsIdsAdded", "recordIdsAdded")
    )
    record_ids_removed: list[str] = []
    record_ids_missing: list[str] = []


class ListMembership(HubSpotModel):
    record_id: str
    membership_timestamp: datetime | None = None


class ListMembershipPage(_Paged):
    results: list[ListMembership] = []
    total: int | None = None


class RecordListMembership(HubSpotModel):
    list_id: str
    list_version: int | None = None
    first_added_timestamp: datetime | None = None
    last_added_timestamp: datetime | None = None


# --- associations v4 --------------------------------------------------------------------------


class AssociationLabel(HubSpotModel):
    """A type of association between two object types, as listed or returned per record."""

    category: AssociationCategory | str
    type_id: int
    label: str | None = None


class AssociatedObject(HubSpotModel):
    to_object_id: str
    association_types: list[AssociationLabel] = []


class AssociatedObjectPage(_Paged):
    results: list[AssociatedObject] = []


class DefaultAssociation(HubSpotModel):
    """A default (unlabelled) association created by `associate/default`."""

    from_: ObjectId = Field(alias="from")
    to: ObjectId
    association_spec: AssociationSpec


class LabelsBetweenObjectPair(HubSpotModel):
    """A labelled association created between two records."""

    from_object_type_id: str
    from_object_id: str
    to_object_type_id: str
    to_object_id: str
    labels: list[str | None] = []


class AssociationsOfObject(_Paged):
    """One input's result in an association batch read."""

    from_: ObjectId = Field(alias="from")
    to: list[AssociatedObject] = []


class AssociationCreate(HubSpotModel):
    """One pair for a labelled batch create."""

    from_: ObjectId = Field(alias="from")
    to: ObjectId
    types: list[AssociationSpec]


# --- custom events ----------------------------------------------------------------------------


class CustomEvent(HubSpotModel):
    """One custom behavioural event completion for `/events/v3/send`.

    Identify the record by exactly one of `email`, `utk` or `object_id`. `uuid` makes the send
    idempotent: HubSpot keeps the first event with a given uuid for a year.
    """

    event_name: str
    properties: dict[str, str] = {}
    occurred_at: datetime | None = None
    email: str | None = None
    utk: str | None = None
    object_id: str | None = None
    uuid: str | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> CustomEvent:
        given = [x for x in (self.email, self.utk, self.object_id) if x is not None]
        if len(given) != 1:
            raise ValueError("a custom event needs exactly one of email, utk or object_id")
        if self.occurred_at is not None and self.occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        return self

    def to_wire(self) -> dict[str, Any]:
        body = super().to_wire()
        if self.occurred_at is not None:
            body["occurredAt"] = (
                self.occurred_at.astimezone(UTC)
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
        return body


class EventPropertyDefinition(HubSpotModel):
    label: str
    type: Literal["string", "number", "enumeration", "datetime"]
    name: str | None = None
    description: str | None = None
    options: list[PropertyOption] | None = None


class EventDefinitionCreate(HubSpotModel):
    """Body of `POST /events/v3/event-definitions`."""

    label: str
    name: str | None = None
    description: str | None = None
    primary_object: str | None = None
    include_default_properties: bool = True
    property_definitions: list[EventPropertyDefinition] = []


class EventDefinition(HubSpotModel):
    """A custom event definition; send events under its `fully_qualified_name`."""

    id: str | None = None
    name: str
    fully_qualified_name: str
    labels: dict[str, str | None] = {}
    description: str | None = None
    primary_object: str | None = None
    object_type_id: str | None = None
    properties: list[dict[str, Any]] = []
    archived: bool = False
    created_at: datetime | None = None


class EventDefinitionPage(_Paged):
    results: list[EventDefinition] = []
    total: int | None = None


class EventOccurrence(HubSpotModel):
    """One event instance read back from `GET /events/v3/events`; for a custom event sent
    with a `uuid`, `id` is that uuid."""

    id: str
    event_type: str
    object_type: str | None = None
    object_id: str | None = None
    occurred_at: datetime | None = None
    properties: dict[str, Any] = {}


class EventOccurrencePage(_Paged):
    results: list[EventOccurrence] = []


# --- OAuth ------------------------------------------------------------------------------------


class TokenResponse(HubSpotModel):
    """Answer of `POST /oauth/v1/token` (both grants). Snake_case on the wire too."""

    model_config = ConfigDict(alias_generator=None)

    token_type: str = "bearer"  # noqa: S105 (the token kind, not a secret)
    access_token: str
    refresh_token: str | None = None
    expires_in: int = 1800
    hub_id: int | None = None
    user_id: int | None = None
    scopes: list[str] | None = None
    id_token: str | None = None


class AccessTokenInfo(HubSpotModel):
    """`GET /oauth/v1/access-tokens/{token}`."""

    model_config = ConfigDict(alias_generator=None)

    token: str
    user: str | None = None
    hub_domain: str | None = None
    hub_id: int
    app_id: int | None = None
    user_id: int | None = None
    scopes: list[str] = []
    expires_in: int | None = None
    token_type: str | None = None


class RefreshTokenInfo(HubSpotModel):
    """`GET /oauth/v1/refresh-tokens/{token}`."""

    model_config = ConfigDict(alias_generator=None)

    token: str
    user: str | None = None
    hub_domain: str | None = None
    hub_id: int
    client_id: str | None = None
    user_id: int | None = None
    scopes: list[str] = []
    token_type: str | None = None


# --- webhooks ---------------------------------------------------------------------------------


class WebhookEvent(HubSpotModel):
    """One event of a webhook delivery (HubSpot posts a JSON array of up to 100).

    Delivery is at-least-once and unordered: order by `occurred_at`, tolerate duplicates.
    """

    event_id: int
    subscription_id: int
    portal_id: int
    app_id: int | None = None
    occurred_at: int
    # Deliveries say `subscriptionType`; one older docs example says `eventType`.
    subscription_type: str = Field(
        validation_alias=AliasChoices("subscriptionType", "eventType", "subscription_type")
    )
    attempt_number: int = 0
    object_id: int
    property_name: str | None = None
    property_value: str | None = None
    change_source: str | None = None
    change_flag: str | None = None
    source_id: str | None = None
    primary_object_id: int | None = None
    merged_object_ids: list[int] | None = None
    new_object_id: int | None = None
    number_of_properties_moved: int | None = None
    association_type: str | None = None
    from_object_id: int | None = None
    to_object_id: int | None = None
    association_removed: bool | None = None
    is_primary_association: bool | None = None

    @property
    def occurred(self) -> datetime:
        """`occurred_at` (epoch milliseconds) as an aware datetime."""
        return datetime.fromtimestamp(self.occurred_at / 1000, tz=UTC)


_webhook_events = TypeAdapter(list[WebhookEvent])


def parse_webhook_events(body: bytes | str) -> list[WebhookEvent]:
    """Parse a webhook delivery body (a JSON array of events).

    Args:
        body: the raw request body.

    Returns:
        The events in delivery order.

    Raises:
        pydantic.ValidationError: the body is not a JSON array of events.
    """
    return _webhook_events.validate_json(body)
