"""Inputs and outputs of the email and SMS channels: provider settings, the email fields
of a send, and users' subscriptions. (Kept apart from `schemas`, which imports from here.)
"""

from __future__ import annotations

import ssl
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

EMAIL_PATTERN = r"^[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?$"
E164_PATTERN = r"^\+[1-9]\d{1,14}$"
HOST_PATTERN = r"^[A-Za-z0-9:.\-]{1,253}$"
URL_PATTERN = r"^https?://[^\s]{1,300}$"
MAX_SMS_BODY = 1600  # Twilio's limit for one (concatenated) message

EmailAddress = Annotated[str, StringConstraints(pattern=EMAIL_PATTERN, max_length=254)]
OneLine = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$")]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- sends ---------------------------------------------------------------------------------


class EmailContent(_Input):
    """The email fields of a send; each may be a template, like the push fields."""

    subject: Annotated[OneLine, StringConstraints(min_length=1, max_length=500)] | None = Field(
        None, description="Email: the subject line (required for `email`)."
    )
    html: Annotated[str, StringConstraints(max_length=500_000)] | None = Field(
        None,
        description="Email: the HTML body. `[unsubscribe_url]` is replaced by the recipient's "
        "unsubscribe link (a footer with it is added otherwise); template values are escaped.",
    )
    text: Annotated[str, StringConstraints(max_length=200_000)] | None = Field(
        None, description="Email: the plain-text body (with `html`, the alternative part)."
    )
    from_name: Annotated[OneLine, StringConstraints(max_length=100)] | None = Field(
        None, description="Email: the sender's display name; the provider's by default."
    )
    track_clicks: bool = Field(
        True,
        description="Email: route the HTML body's http(s) links through Spoke to count clicks.",
    )


_PUSH_ONLY = ("title", "image_url", "link_url", "data")
_EMAIL_ONLY = ("subject", "html", "text", "from_name")


def check_channel_content(model: Any) -> Any:
    """The content fields must fit the channel: push takes title/body/image/link/data,
    email subject plus html and/or text, SMS a body of at most 1,600 characters."""
    channel = model.channel
    given = {name for name in model.model_fields_set if getattr(model, name) is not None}
    refused = {
        "push": _EMAIL_ONLY,
        "email": (*_PUSH_ONLY, "body"),
        "sms": (*_PUSH_ONLY, *_EMAIL_ONLY),
    }[channel]
    extra = sorted(given & set(refused))
    if extra:
        raise ValueError(f"{', '.join(extra)} do(es) not apply to channel {channel!r}")
    if getattr(model, "template_id", None) is not None:
        return model  # the stored template holds the content (checked when it was saved)
    if channel == "email":
        if not model.subject:
            raise ValueError("an email needs a subject")
        if not model.html and not model.text:
            raise ValueError("an email needs an html or a text body (or both)")
    if channel == "sms":
        if not model.body:
            raise ValueError("an SMS needs a body")
        if len(model.body) > MAX_SMS_BODY:
            raise ValueError(f"an SMS body is at most {MAX_SMS_BODY} characters")
    return model


# -- providers -----------------------------------------------------------------------------


class SmtpConfigInput(_Input):
    host: Annotated[str, StringConstraints(pattern=HOST_PATTERN)] = Field(
        description="The SMTP server (your relay, or a provider's SMTP endpoint)."
    )
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="`starttls` (required: a server without it is refused), `tls` (implicit "
        "TLS, port 465) or `none` (a trusted local relay only).",
    )
    username: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    password: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        None, description="Stored encrypted; never shown again."
    )
    from_address: EmailAddress = Field(description="Envelope and `From` address.")
    from_name: Annotated[OneLine, StringConstraints(max_length=100)] | None = None
    reply_to: EmailAddress | None = None
    links_base_url: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = Field(
        None,
        description="Where recipients reach this Spoke for unsubscribe and click links; "
        "default `SPOKE_HTTP__PUBLIC_URL`.",
    )
    ca_pem: Annotated[str, StringConstraints(max_length=50_000)] | None = Field(
        None, description="Trust these PEM certificates for the server (e.g. a private CA)."
    )
    verify_tls: bool = Field(True, description="Check the server's certificate (keep it on).")
    max_connections: int = Field(4, ge=1, le=50, description="Connections kept open per send.")
    timeout: float = Field(30, ge=1, le=300, description="Seconds per SMTP command.")
    helo_name: Annotated[str, StringConstraints(pattern=HOST_PATTERN)] | None = None

    @field_validator("ca_pem")
    @classmethod
    def _loads(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ssl.create_default_context(cadata=value)
        except (ssl.SSLError, ValueError, TypeError) as exc:  # TypeError: not ASCII
            raise ValueError(f"not PEM certificates: {exc}") from None
        return value

    @model_validator(mode="after")
    def _login_pair(self) -> SmtpConfigInput:
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        return self


class TwilioConfigInput(_Input):
    account_sid: Annotated[str, StringConstraints(pattern=r"^AC[0-9a-fA-F]{32}$")]
    auth_token: Annotated[str, StringConstraints(min_length=8, max_length=128)] = Field(
        description="Stored encrypted; never shown again."
    )
    from_number: Annotated[str, StringConstraints(pattern=E164_PATTERN)] | None = Field(
        None, description="The sending number (E.164)."
    )
    messaging_service_sid: (
        Annotated[str, StringConstraints(pattern=r"^MG[0-9a-fA-F]{32}$")] | None
    ) = Field(None, description="Or a Messaging Service, which picks the number.")
    base_url: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = Field(
        None, description="A Twilio-compatible API; default `https://api.twilio.com`."
    )
    concurrency: int = Field(16, ge=1, le=256, description="Requests in flight per send.")
    status_callback_base_url: Annotated[str, StringConstraints(pattern=URL_PATTERN)] | None = Field(
        None,
        description="Where Twilio reaches this Spoke for delivery reports "
        "(`{base}/hooks/twilio/status/{workspace_id}`); default the public URL.",
    )

    @model_validator(mode="after")
    def _a_sender(self) -> TwilioConfigInput:
        if self.from_number is None and self.messaging_service_sid is None:
            raise ValueError("give from_number or messaging_service_sid")
        return self


class ChannelProviderOut(BaseModel):
    channel: str
    provider: str
    settings: dict[str, Any] = Field(description="The settings, without any secret.")
    updated_at: datetime


# -- subscriptions -------------------------------------------------------------------------


class SubscriptionOut(BaseModel):
    channel: str = Field(description="push, email or sms.")
    address: str = Field(description="Device token, email address or E.164 number.")
    status: str = Field(description="subscribed, unsubscribed, bounced or invalid.")
    status_reason: str | None
    platform: str | None
    created_at: datetime | None = Field(description="Null until the address is first used.")
    updated_at: datetime | None


class SubscriptionStatusInput(_Input):
    status: Literal["subscribed", "unsubscribed"] = Field(
        description="`subscribed` also lifts a bounce or an invalid mark."
    )
