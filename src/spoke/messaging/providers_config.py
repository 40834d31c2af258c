"""Which provider a workspace sends each channel through, with its credentials encrypted.

The service-account key is stored only as ciphertext (`Encryptor`) and is decrypted in
the job that sends; the API shows back the project id, client e-mail and base URL only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.errors import InvalidInput, NotFound
from spoke.core.ids import new_id
from spoke.messaging.models import ProviderConfig
from spoke.messaging.providers.fcm import FCM_BASE_URL
from spoke.messaging.providers.oauth import ServiceAccount


class ProviderNotConfigured(NotFound):
    code = "provider_not_configured"


class InvalidServiceAccount(InvalidInput):
    code = "invalid_service_account"
    title = "Invalid service-account key"


@dataclass(frozen=True)
class FcmCredentials:
    account: ServiceAccount
    base_url: str


def _get(session: Session, workspace_id: str, channel: str) -> ProviderConfig | None:
    return session.scalars(
        sa.select(ProviderConfig).where(
            ProviderConfig.workspace_id == workspace_id, ProviderConfig.channel == channel
        )
    ).one_or_none()


def set_fcm(
    session: Session,
    encryptor: Encryptor,
    workspace_id: str,
    service_account: dict[str, Any],
    base_url: str | None,
) -> ProviderConfig:
    try:
        account = ServiceAccount.from_info(service_account)
    except ValueError as exc:
        raise InvalidServiceAccount(
            f"The service-account key is unusable: {exc}.",
            errors=[{"field": "body.service_account", "message": str(exc), "type": "invalid"}],
        ) from None
    url = (base_url or FCM_BASE_URL).rstrip("/")
    secret = encryptor.encrypt(orjson.dumps(service_account).decode())
    now = utcnow()
    config = _get(session, workspace_id, "push")
    if config is None:
        config = ProviderConfig(id=new_id("prv"), workspace_id=workspace_id, channel="push")
        config.created_at = now
        session.add(config)
    config.provider = "fcm"
    config.settings = {
        "project_id": account.project_id,
        "client_email": account.client_email,
        "base_url": url,
    }
    config.secret_encrypted = secret
    config.updated_at = now
    session.flush()
    return config


NO_PUSH_PROVIDER = "No push provider is configured; PUT /v1/messaging/providers/fcm first."


def get_push(session: Session, workspace_id: str) -> ProviderConfig:
    config = _get(session, workspace_id, "push")
    if config is None:
        raise ProviderNotConfigured(NO_PUSH_PROVIDER)
    return config


# Built once (see `workspaces.service._KEY_LOOKUP`): every accepted push send runs it.
_PUSH_CONFIGURED = sa.select(ProviderConfig.id).where(
    ProviderConfig.workspace_id == sa.bindparam("workspace_id"), ProviderConfig.channel == "push"
)


def has_push(session: Session, workspace_id: str) -> bool:
    """Whether sends can be accepted (one indexed lookup; the key stays encrypted)."""
    return session.scalar(_PUSH_CONFIGURED, {"workspace_id": workspace_id}) is not None


def delete_push(session: Session, workspace_id: str) -> None:
    session.delete(get_push(session, workspace_id))
    session.flush()


def render(config: ProviderConfig) -> dict[str, Any]:
    return {
        "channel": config.channel,
        "provider": config.provider,
        "project_id": config.settings.get("project_id", ""),
        "client_email": config.settings.get("client_email", ""),
        "base_url": config.settings.get("base_url", FCM_BASE_URL),
        "updated_at": config.updated_at,
    }


def fcm_credentials(encryptor: Encryptor, config: ProviderConfig) -> FcmCredentials:
    info = orjson.loads(encryptor.decrypt(config.secret_encrypted))
    return FcmCredentials(
        ServiceAccount.from_info(info, stored=True), config.settings.get("base_url", FCM_BASE_URL)
    )
