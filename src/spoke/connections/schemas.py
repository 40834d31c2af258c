from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from spoke.sync.schemas import StoppedMapping

# HubSpot tokens and secrets are printable ASCII without spaces (they travel in headers).
TOKEN_PATTERN = r"^[!-~]+$"  # noqa: S105 - a pattern, not a secret


class PrivateAppConnect(BaseModel):
    """Connect with a HubSpot private app's access token."""

    private_app_token: str = Field(
        min_length=1,
        max_length=512,
        pattern=TOKEN_PATTERN,
        description="The private app's access token (`pat-…`).",
    )
    portal_id: int = Field(
        ge=1, le=2**53, description="The HubSpot account (Hub) id the private app belongs to."
    )
    webhook_secret: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        pattern=TOKEN_PATTERN,
        description="The private app's client secret, to verify its webhook signatures.",
    )


class AuthorizeLink(BaseModel):
    authorize_url: str = Field(description="Send the admin's browser here to grant access.")
    redirect_uri: str = Field(description="Where HubSpot returns; register it on the app.")


class Connection(BaseModel):
    """A workspace's HubSpot connection."""

    portal_id: int
    auth_type: str = Field(description="`oauth` or `private_app`.")
    status: str = Field(description="`connected` or `disconnected`.")
    scopes: list[str]
    connected_by: str = Field(description="The API key (actor) that connected.")
    connected_at: datetime
    disconnected_at: datetime | None
    token_expires_at: datetime | None = Field(description="OAuth access token expiry.")
    api_calls_today: int = Field(description="HubSpot API calls Spoke made today (UTC).")
    properties_available: int = Field(
        description="HubSpot contact properties available for mapping (refreshed on connect)."
    )
    scopes_lost: list[str] = Field(
        default_factory=list,
        description="Scopes the previous grant had and the latest (re)connect did not grant.",
    )
    missing_optional_scopes: dict[str, str] = Field(
        default_factory=dict,
        description="Optional scopes not granted, each with the feature it would enable.",
    )
    stopped_mappings: list[StoppedMapping] = Field(
        default_factory=list,
        description="Sync mappings that stopped, e.g. because their HubSpot property is gone "
        "from the properties read at the latest (re)connect.",
    )
    last_error: str | None
