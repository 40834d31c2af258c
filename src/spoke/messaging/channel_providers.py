"""The email (SMTP) and SMS (Twilio-compatible) provider of a workspace.

One `messaging_providers` row per workspace and channel, like push: what may be shown
(host, port, sender, account SID, base URL...) in `settings`, the secrets (SMTP password
and trusted CA, Twilio auth token) Fernet-encrypted in `secret_encrypted` and decrypted
only in the job that sends. Nothing here commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.errors import Conflict
from spoke.core.ids import new_id
from spoke.messaging.models import ProviderConfig
from spoke.messaging.providers.sms import TWILIO_BASE_URL, TwilioAccount
from spoke.messaging.providers.smtp import SmtpServer
from spoke.messaging.providers_config import ProviderNotConfigured

_HOW_TO = {
    "email": "PUT /v1/messaging/providers/smtp",
    "sms": "PUT /v1/messaging/providers/twilio",
}


class EmailNotConfigured(Conflict):
    code = "email_not_configured"
    title = "No email provider"


class SmsNotConfigured(Conflict):
    code = "sms_not_configured"
    title = "No SMS provider"


_NOT_CONFIGURED: dict[str, type[Conflict]] = {"email": EmailNotConfigured, "sms": SmsNotConfigured}


@dataclass(frozen=True)
class EmailProvider:
    server: SmtpServer
    from_address: str
    from_name: str | None
    reply_to: str | None
    links_base_url: str | None


def get(session: Session, workspace_id: str, channel: str) -> ProviderConfig:
    config = session.scalars(
        sa.select(ProviderConfig).where(
            ProviderConfig.workspace_id == workspace_id, ProviderConfig.channel == channel
        )
    ).one_or_none()
    if config is None:
        raise ProviderNotConfigured(
            f"No {channel} provider is configured; {_HOW_TO.get(channel, 'configure one')} first."
        )
    return config


def require(session: Session, workspace_id: str, channel: str) -> None:
    """Refuse a send on a channel the workspace has no provider for (409)."""
    try:
        get(session, workspace_id, channel)
    except ProviderNotConfigured as exc:
        raise _NOT_CONFIGURED[channel](exc.detail) from None


def delete(session: Session, workspace_id: str, channel: str) -> None:
    session.delete(get(session, workspace_id, channel))
    session.flush()


def _store(
    session: Session,
    encryptor: Encryptor,
    workspace_id: str,
    channel: str,
    provider: str,
    settings: dict[str, Any],
    secret: dict[str, Any],
) -> ProviderConfig:
    now = utcnow()
    config = session.scalars(
        sa.select(ProviderConfig).where(
            ProviderConfig.workspace_id == workspace_id, ProviderConfig.channel == channel
        )
    ).one_or_none()
    if config is None:
        config = ProviderConfig(id=new_id("prv"), workspace_id=workspace_id, channel=channel)
        config.created_at = now
        session.add(config)
    config.provider = provider
    config.settings = settings
    config.secret_encrypted = encryptor.encrypt(orjson.dumps(secret).decode())
    config.updated_at = now
    session.flush()
    return config


def set_smtp(
    session: Session, encryptor: Encryptor, workspace_id: str, values: dict[str, Any]
) -> ProviderConfig:
    """`values`: the validated `SmtpConfigInput` fields."""
    secret = {"password": values.get("password"), "ca_pem": values.get("ca_pem")}
    shown = {k: v for k, v in values.items() if k not in ("password", "ca_pem") and v is not None}
    shown["ca_pem"] = bool(values.get("ca_pem"))
    return _store(session, encryptor, workspace_id, "email", "smtp", shown, secret)


def set_twilio(
    session: Session, encryptor: Encryptor, workspace_id: str, values: dict[str, Any]
) -> ProviderConfig:
    """`values`: the validated `TwilioConfigInput` fields."""
    shown = {k: v for k, v in values.items() if k != "auth_token" and v is not None}
    shown.setdefault("base_url", TWILIO_BASE_URL)
    secret = {"auth_token": values["auth_token"]}
    return _store(session, encryptor, workspace_id, "sms", "twilio", shown, secret)


def render(config: ProviderConfig) -> dict[str, Any]:
    return {
        "channel": config.channel,
        "provider": config.provider,
        "settings": dict(config.settings),
        "updated_at": config.updated_at,
    }


def _secret(encryptor: Encryptor, config: ProviderConfig) -> dict[str, Any]:
    value = orjson.loads(encryptor.decrypt(config.secret_encrypted))
    if not isinstance(value, dict):
        raise ValueError("stored credentials are not an object")
    return value


def email_provider(encryptor: Encryptor, config: ProviderConfig) -> EmailProvider:
    """Decrypt the SMTP settings (in the sending job only).

    Raises:
        ValueError: the stored credentials can't be read with the configured keys.
    """
    shown, secret = config.settings, _secret(encryptor, config)
    server = SmtpServer(
        host=shown["host"],
        port=int(shown.get("port", 587)),
        security=shown.get("security", "starttls"),
        username=shown.get("username"),
        password=secret.get("password"),
        ca_pem=secret.get("ca_pem"),
        verify_tls=bool(shown.get("verify_tls", True)),
        timeout=float(shown.get("timeout", 30)),
        helo_name=shown.get("helo_name"),
        max_connections=int(shown.get("max_connections", 4)),
    )
    return EmailProvider(
        server,
        shown["from_address"],
        shown.get("from_name"),
        shown.get("reply_to"),
        shown.get("links_base_url"),
    )


def sms_account(encryptor: Encryptor, config: ProviderConfig) -> tuple[TwilioAccount, int]:
    """The account and how many requests to keep in flight.

    Raises:
        ValueError: the stored credentials can't be read with the configured keys.
    """
    shown, secret = config.settings, _secret(encryptor, config)
    account = TwilioAccount(
        account_sid=shown["account_sid"],
        auth_token=str(secret["auth_token"]),
        from_number=shown.get("from_number"),
        messaging_service_sid=shown.get("messaging_service_sid"),
        base_url=shown.get("base_url", TWILIO_BASE_URL),
    )
    return account, int(shown.get("concurrency", 16))
