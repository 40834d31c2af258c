from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from spoke.users.validation import normalise_email, normalise_timezone
from spoke.workspaces.models import Role


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Workspace(Schema):
    id: str
    slug: str
    name: str
    client_key: str = Field(description="Public key for the product's apps (`X-Client-Key`).")
    identity_verification: bool = Field(
        description="Client calls must carry `X-Identity-Token` = HMAC-SHA256(identity secret, "
        "external id), hex."
    )
    timezone: str | None = Field(
        None, description="IANA zone for users without one (local-time sends, ad night rule)."
    )
    created_at: datetime


class WorkspaceUpdate(Input):
    name: str | None = Field(None, min_length=1, max_length=200)
    identity_verification: bool | None = None
    timezone: str | None = Field(
        None, max_length=64, description='IANA zone, e.g. "Asia/Seoul"; `""` clears it.'
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return normalise_timezone(value) if value else value


class IdentitySecret(BaseModel):
    identity_secret: str


class Member(Schema):
    id: str
    email: str
    name: str
    role: Role
    created_at: datetime


class MemberCreate(Input):
    email: str = Field(max_length=320)
    name: str = Field("", max_length=200)
    role: Role = Role.member

    _email = field_validator("email")(normalise_email)


class MemberUpdate(Input):
    name: str | None = Field(None, max_length=200)
    role: Role | None = None


class ApiKey(Schema):
    id: str = Field(description="The public half: send it as `X-Api-Key`.")
    name: str
    member_id: str
    secret_hint: str = Field(description="Last characters of the secret, to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    member_id: str | None = Field(
        None, description="Member the key acts as (owners and managers only); default: yourself."
    )


class ApiKeyWithSecret(ApiKey):
    secret: str = Field(description="Send as `X-Secret-Key`. Shown once; only a hash is stored.")
