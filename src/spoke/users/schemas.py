from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from spoke.users import validation
from spoke.users.validation import FIELD_TYPES

EXTERNAL_ID_PATTERN = r"^[^/\x00-\x1f\s](?:[^/\x00-\x1f]{0,253}[^/\x00-\x1f\s])?$"
_EXTERNAL_ID = re.compile(EXTERNAL_ID_PATTERN)
ExternalId = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=EXTERNAL_ID_PATTERN)
]
Name = Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)]
TagValue = Annotated[str, StringConstraints(max_length=1024)]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _blank_to_none(value: str | None) -> str | None:
    return value if value else None


class UserFields(Input):
    """Profile fields of an app user. Omitted fields are left alone by PATCH and batch
    upserts and cleared by PUT; `null` or `""` clears a field."""

    email: str | None = Field(None, max_length=320, description="Trimmed, lower-cased, validated.")
    # `country` comes before `phone`: the phone's validator reads it (fields validate in order).
    country: str | None = Field(None, max_length=8, description="ISO 3166-1 alpha-2.")
    phone: str | None = Field(
        None, max_length=40, description="Any format with a country; stored as E.164."
    )
    first_name: Name | None = None
    last_name: Name | None = None
    industry: Name | None = None
    company: Name | None = None
    language: str | None = Field(None, max_length=35, description="BCP 47, e.g. `ko`, `pt-BR`.")
    timezone: str | None = Field(None, max_length=64, description="IANA, e.g. `Asia/Seoul`.")
    custom: dict[str, Any] | None = Field(
        None, description="Values of the workspace's custom fields by name; `null` removes one."
    )
    tags: dict[str, TagValue] | None = Field(
        None, description='Tags to set; `""` deletes a key (PUT replaces all tags).'
    )

    @field_validator("first_name", "last_name", "industry", "company", mode="after")
    @classmethod
    def _blank(cls, value: str | None) -> str | None:
        return _blank_to_none(value)

    @field_validator("email", mode="after")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        value = _blank_to_none(value.strip() if value else value)
        return validation.normalise_email(value) if value else None

    @field_validator("country", mode="after")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        value = _blank_to_none(value.strip() if value else value)
        return validation.normalise_country(value) if value else None

    @field_validator("language", mode="after")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        value = _blank_to_none(value.strip() if value else value)
        return validation.normalise_language(value) if value else None

    @field_validator("timezone", mode="after")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        value = _blank_to_none(value.strip() if value else value)
        return validation.normalise_timezone(value) if value else None

    @field_validator("tags", mode="after")
    @classmethod
    def _tags(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            if len(value) > 200:
                raise ValueError("at most 200 tags per write")
            for key in value:
                validation.check_tag_key(key)
        return value

    @field_validator("phone", mode="after")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator (not a model one) so its errors name `phone`; the country is
        # already validated, so "010-1234-5678" + KR works. A national number sent without
        # a country stays as given: `write_users` reads it with the user's stored country.
        raw = value.strip() if value else value
        if not raw:
            return None
        country = info.data.get("country")
        if country is None and not raw.startswith("+"):
            return validation.check_phone_characters(raw)
        return validation.normalise_phone(raw, country)


class UserBatchItem(UserFields):
    external_id: ExternalId


class UserBatchRequest(Input):
    items: list[UserBatchItem] = Field(
        min_length=1,
        description="Up to 1,000 upserts; each "
        "creates the user or updates only the fields it names.",
    )


class ItemError(BaseModel):
    code: str
    detail: str
    errors: list[dict[str, str]] | None = None


class UserWriteResult(BaseModel):
    index: int
    external_id: str | None
    status: Literal["created", "updated", "unchanged", "error"]
    version: int | None = None
    error: ItemError | None = None


class UserBatchResponse(BaseModel):
    created: int
    updated: int
    unchanged: int
    failed: int
    results: list[UserWriteResult]


class User(BaseModel):
    external_id: str
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    country: str | None
    industry: str | None
    company: str | None
    language: str | None
    timezone: str | None
    custom: dict[str, Any]
    tags: dict[str, str]
    lists: list[str] = Field(description="Ids of the lists the user is in.")
    version: int = Field(description="Increases with every change.")
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None
    last_seen_at: datetime | None = Field(
        None, description="When the user's app last called Spoke (client key)."
    )


class TagsPatch(Input):
    tags: dict[str, TagValue] = Field(description='Keys to set; `""` deletes a key.')

    _keys = field_validator("tags")(UserFields._tags.__func__)  # type: ignore[attr-defined]


class UserChange(BaseModel):
    seq: int
    external_id: str = Field(description="The user the change is about.")
    kind: str
    changes: dict[str, Any] = Field(description="`{field: [old, new]}`.")
    origin: str
    actor: str
    request_id: str | None
    created_at: datetime


# -- custom fields ----------------------------------------------------------------------

FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class CustomField(Schema):
    id: str
    name: str
    label: str
    type: str
    options: list[str] | None
    created_at: datetime


class CustomFieldCreate(Input):
    name: FieldName = Field(description="snake_case key used in `custom`.")
    label: str = Field("", max_length=200)
    type: Literal["string", "number", "boolean", "date", "datetime", "enumeration"]
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        None, max_length=500, description="Allowed values, for `enumeration` only."
    )

    @model_validator(mode="after")
    def _options(self) -> CustomFieldCreate:
        assert self.type in FIELD_TYPES
        if self.type == "enumeration":
            if not self.options:
                raise ValueError("an enumeration needs options")
            if len(set(self.options)) != len(self.options):
                raise ValueError("options must be unique")
        elif self.options is not None:
            raise ValueError("only enumeration fields take options")
        return self


class CustomFieldUpdate(Input):
    label: str | None = Field(None, max_length=200)
    options: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        None,
        max_length=500,
        description="New option list for an enumeration; options in use may not be removed.",
    )


# -- lists --------------------------------------------------------------------------------


class UserList(Schema):
    id: str
    name: str
    description: str
    member_count: int
    used_by: list[str] = Field(description="What depends on this list (it can't be deleted then).")
    created_at: datetime
    updated_at: datetime


class UserListCreate(Input):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    description: str = Field("", max_length=2000)


class UserListUpdate(Input):
    name: (
        Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
        | None
    ) = None
    description: str | None = Field(None, max_length=2000)


class MembershipChange(Input):
    external_ids: list[ExternalId] = Field(min_length=1, max_length=1000)


class MembershipResult(BaseModel):
    changed: int = Field(description="Users whose membership changed.")
    unchanged: int
    not_found: list[str] = Field(description="External ids with no (live) user.")


def is_external_id(value: str) -> bool:
    return bool(_EXTERNAL_ID.match(value))
