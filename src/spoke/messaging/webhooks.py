"""The workspace's messaging webhook: after a send, a signed POST lists the users it could
not reach (nachocode's `unavailable_users`), so the product can fall back to another channel.

Body: `{"type": "notification.unavailable_users", "notification_id", "request_group_id",
"channel", "not_found": [...], "no_subscription": [...], "token_invalid": [...]}`.
Header `X-Spoke-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
Sent only when someone was unreachable; retried by the job queue on failure.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor, hmac_sha256_hex, new_secret
from spoke.core.errors import NotFound
from spoke.messaging import service
from spoke.messaging.models import MessagingWebhook, Notification

SIGNATURE_HEADER = "X-Spoke-Signature"


class WebhookNotConfigured(NotFound):
    code = "webhook_not_configured"


def set_webhook(
    session: Session, encryptor: Encryptor, workspace_id: str, url: str
) -> tuple[MessagingWebhook, str]:
    """Set the URL and issue a new signing secret (returned once)."""
    secret = new_secret("whsec")
    row = session.get(MessagingWebhook, workspace_id)
    if row is None:
        row = MessagingWebhook(workspace_id=workspace_id)
        session.add(row)
    row.url = url
    row.secret_encrypted = encryptor.encrypt(secret)
    row.updated_at = utcnow()
    session.flush()
    return row, secret


def get_webhook(session: Session, workspace_id: str) -> MessagingWebhook:
    row = session.get(MessagingWebhook, workspace_id)
    if row is None:
        raise WebhookNotConfigured("No messaging webhook is set.")
    return row


def delete_webhook(session: Session, workspace_id: str) -> None:
    session.delete(get_webhook(session, workspace_id))
    session.flush()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={hmac_sha256_hex(secret, f'{timestamp}.{body.decode()}')}"


def unavailable_payload(session: Session, notification: Notification) -> dict[str, Any] | None:
    rendered = service.render(session, notification)
    unavailable = rendered["unavailable"]
    if not any(unavailable.values()):
        return None
    return {
        "type": "notification.unavailable_users",
        "notification_id": notification.id,
        "request_group_id": notification.request_group_id,
        "channel": notification.channel,
        **unavailable,
    }


def configured(session: Session, notification_id: str) -> bool:
    """Whether the workspace of this notification has a webhook to tell."""
    workspace_id = sa.select(Notification.workspace_id).where(Notification.id == notification_id)
    found = session.scalar(
        sa.select(MessagingWebhook.workspace_id).where(
            MessagingWebhook.workspace_id == workspace_id.scalar_subquery()
        )
    )
    return found is not None


def prepare(
    session: Session, encryptor: Encryptor, notification_id: str
) -> tuple[str, bytes, dict[str, str]] | None:
    """The request to make for a finished notification, or None when there is nothing to say."""
    notification = session.get(Notification, notification_id)
    if notification is None:
        return None
    hook = session.scalars(
        sa.select(MessagingWebhook).where(
            MessagingWebhook.workspace_id == notification.workspace_id
        )
    ).one_or_none()
    if hook is None:
        return None
    payload = unavailable_payload(session, notification)
    if payload is None:
        return None
    body = orjson.dumps(payload)
    signature = sign(encryptor.decrypt(hook.secret_encrypted), int(time.time()), body)
    return hook.url, body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature}


def post(url: str, body: bytes, headers: dict[str, str]) -> None:
    """Raises on a network error or a non-2xx answer, so the job is retried."""
    response = httpx.post(url, content=body, headers=headers, timeout=10)
    response.raise_for_status()
