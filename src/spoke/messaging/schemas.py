from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from spoke.messaging.channel_schemas import EmailContent, check_channel_content
from spoke.messaging.local_delivery import LocalDelivery
from spoke.messaging.segment_schemas import Filters
from spoke.messaging.template_schemas import TemplateChoice
from spoke.users.schemas import ExternalId

# FCM registration tokens are ~160 URL-safe characters; APNs tokens are hex; allow both.
TOKEN_PATTERN = r"^[A-Za-z0-9_:.\-]{8,512}$"  # noqa: S105 (a pattern)
DeviceToken = Annotated[str, StringConstraints(pattern=TOKEN_PATTERN)]
Platform = Literal["android", "ios", "web"]
RequestGroupId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")]
MAX_SAME_CONTENT_USERS = 10_000
MAX_PER_USER_MESSAGES = 1_000
DATA_KEY = Annotated[str, StringConstraints(min_length=1, max_length=64)]
_RESERVED_DATA_KEYS = ("from", "message_type", "google", "gcm", "spoke_")


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# -- devices ----------------------------------------------------------------------------


class DeviceRegister(Input):
    token: DeviceToken = Field(description="The device's FCM registration token.")
    platform: Platform | None = None


class ClientDeviceRegister(DeviceRegister):
    external_id: ExternalId = Field(description="Your id of the user who logged in.")


class Device(Schema):
    token: str
    platform: str | None
    status: str = Field(description="subscribed, unsubscribed, bounced or invalid.")
    status_reason: str | None
    external_id: str
    created_at: datetime
    updated_at: datetime


# -- provider credentials ------------------------------------------------------------------


class FcmConfigInput(Input):
    service_account: dict[str, Any] = Field(
        description="The Firebase service-account key file (JSON) as an object. Stored "
        "encrypted; only its project id and client e-mail are ever shown back."
    )
    base_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,300}$")] | None = Field(
        None, description="FCM base URL; default `https://fcm.googleapis.com`."
    )


class ProviderInfo(BaseModel):
    channel: str
    provider: str
    project_id: str
    client_email: str
    base_url: str
    updated_at: datetime


# -- sends ---------------------------------------------------------------------------------


class PushContent(Input):
    title: Annotated[str, StringConstraints(max_length=200)] | None = None
    body: Annotated[str, StringConstraints(max_length=2000)] | None = None
    image_url: Annotated[str, StringConstraints(pattern=r"^https?://\S{1,490}$")] | None = None
    link_url: Annotated[str, StringConstraints(max_length=255)] | None = None
    data: dict[DATA_KEY, Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        None, description="Extra key/value strings for the app (FCM `data`)."
    )

    @field_validator("data")
    @classmethod
    def _no_reserved_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if key.lower().startswith(_RESERVED_DATA_KEYS):
                raise ValueError(f"data key {key!r} is reserved")
        if value is not None and len(value) > 50:
            raise ValueError("at most 50 data keys")
        return value


MIN_SCHEDULE_AHEAD = timedelta(seconds=60)
MAX_SCHEDULE_AHEAD = timedelta(days=30)


def check_send_at(value: datetime | None) -> datetime | None:
    """`send_at` is now (omitted, or not in the future) or at least 60 s ahead."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("send_at needs a time zone, e.g. 2026-12-01T09:00:00+09:00")
    now = datetime.now(UTC)
    if value <= now:
        return None
    if value < now + MIN_SCHEDULE_AHEAD:
        raise ValueError("send_at must be now or at least 60 seconds ahead")
    if value > now + MAX_SCHEDULE_AHEAD:
        raise ValueError("send_at may be at most 30 days ahead")
    return value.astimezone(UTC)


class SendOptions(Input):
    """When and how a send goes out; shared by every send request."""

    request_group_id: RequestGroupId | None = Field(
        None, description="Groups several sends into one history entry; generated if omitted."
    )
    send_at: datetime | None = Field(
        None, description="Send later: at least 60 s ahead (omitted or past: now)."
    )

    ad: bool = Field(
        False,
        description="An advertisement: not sent 21:00-08:00 in the user's time zone unless the "
        "user has the tag `marketing_night` = `yes` (Korean Network Act art. 50).",
    )

    _send_at = field_validator("send_at")(check_send_at)


class PushToUsers(PushContent, SendOptions):
    user_ids: list[ExternalId] = Field(
        min_length=1,
        max_length=MAX_SAME_CONTENT_USERS,
        description="External ids of the users; duplicates are sent to once.",
    )


class PerUserMessage(PushContent):
    user_id: ExternalId


class PushMessages(SendOptions):
    messages: list[PerUserMessage] = Field(min_length=1, max_length=MAX_PER_USER_MESSAGES)


TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TagValue = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class Audience(Input):
    """Exactly one of: `user_ids`, `tags` (users having every tag key = value), `filters`,
    `segment_id` (a saved segment), `everyone`."""

    user_ids: list[ExternalId] | None = Field(None, min_length=1, max_length=MAX_SAME_CONTENT_USERS)
    tags: dict[TagKey, TagValue] | None = Field(
        None, min_length=1, max_length=20, description="All must match (AND)."
    )
    filters: Filters | None = Field(
        None, description='Conditions, AND-ed; `{"operator": "OR"}` starts another group.'
    )
    segment_id: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    everyone: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> Audience:
        chosen = [
            self.user_ids is not None,
            self.tags is not None,
            self.filters is not None,
            self.segment_id is not None,
            self.everyone,
        ]
        if sum(chosen) != 1:
            raise ValueError(
                "give exactly one of user_ids, tags, filters, segment_id or everyone=true"
            )
        return self


class NotificationCreate(PushContent, EmailContent, SendOptions, TemplateChoice, LocalDelivery):
    channel: Literal["push", "email", "sms"] = Field(
        description="`push` (title, body, image_url, link_url, data), `email` (subject, html "
        "and/or text, from_name, track_clicks) or `sms` (body); or a stored template of that "
        "channel (`template_id`)."
    )
    audience: Audience

    _channel_content = model_validator(mode="after")(check_channel_content)


class SendAccepted(BaseModel):
    id: str = Field(description="The notification's id: `GET /v1/notifications/{id}`.")
    request_group_id: str
    status: str = Field(description="`queued`, or `scheduled` when `send_at` is ahead.")
    recipients: int = Field(description="Distinct user ids asked for.")
    send_at: datetime | None


class Counts(BaseModel):
    recipients: int
    queued: int
    sent: int
    failed: int
    delivered: int
    clicked: int
    no_subscription: int
    send_rate: float | None = Field(description="sent / recipients.")
    delivery_rate: float | None = Field(description="delivered / sent.")
    click_rate: float | None = Field(description="clicked / sent.")


class Unavailable(BaseModel):
    not_found: list[str] = Field(description="User ids that match no user.")
    no_subscription: list[str] = Field(description="Users with no valid push token.")
    token_invalid: list[str] = Field(description="Users whose every token the provider refused.")


class NotificationOut(BaseModel):
    id: str
    request_group_id: str
    channel: str
    source: str
    status: str
    content: dict[str, Any]
    audience: dict[str, Any] | None
    counts: Counts
    unavailable: Unavailable
    error: str | None
    send_at: datetime | None
    delivery_time_of_day: str | None = Field(
        None, description="Local-time delivery: each recipient at this time in their zone."
    )
    created_at: datetime
    finished_at: datetime | None


class NotificationSummary(BaseModel):
    id: str
    request_group_id: str
    channel: str
    source: str
    status: str
    recipients: int
    send_at: datetime | None
    created_at: datetime
    finished_at: datetime | None


class DeliveryOut(BaseModel):
    external_id: str
    channel: str
    status: str
    reason: str | None
    devices_sent: int
    not_before: datetime | None = Field(
        None, description="Local-time delivery: not sent before this time."
    )
    sent_at: datetime | None
    delivered_at: datetime | None
    clicked_at: datetime | None


class ClientEvent(Input):
    external_id: ExternalId
    event: Literal["delivered", "clicked"]


class UserMessage(DeliveryOut):
    notification_id: str
    request_group_id: str
    content: dict[str, Any]


class WebhookInput(Input):
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,480}$")]


class WebhookOut(BaseModel):
    url: str
    updated_at: datetime
    secret: str | None = Field(
        None, description="The signing secret; shown only when the webhook is set."
    )
