"""SMS delivery reports: Twilio's `StatusCallback` updates the recipient's delivery row.

Spoke passes a per-workspace callback URL with every message; Twilio then POSTs
`MessageSid`, `MessageStatus` and (for failures) `ErrorCode` as the message moves through
queued → sent → delivered | undelivered | failed. Callbacks can arrive twice and out of
order, so only a final status changes anything, and only the first final status counts:
a `sent` arriving after `delivered` is ignored, and so is a second `delivered`. The updates
are conditional UPDATEs, so two callbacks racing for one message can't both apply.

`delivered` sets the delivery's `delivered_at` (counted in `delivered` and `delivery_rate`,
like an app's delivery report for push); `undelivered` and `failed` turn the delivery
`failed` with the status and error code as its reason (counted in `failed`).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.config import Settings
from spoke.core.clock import utcnow
from spoke.core.db import rowcount
from spoke.core.errors import Forbidden, NotFound
from spoke.messaging import tracking
from spoke.messaging.models import Delivery

CALLBACK_PATH = "/hooks/twilio/status/{workspace_id}"
FAILED_STATES = frozenset({"undelivered", "failed"})


class InvalidTwilioSignature(Forbidden):
    code = "invalid_twilio_signature"
    title = "Invalid Twilio signature"


class SmsMessageNotFound(NotFound):
    code = "sms_message_not_found"
    title = "Unknown SMS message"


def callback_url(settings: Settings, configured_base: str | None, workspace_id: str) -> str:
    """Where the provider reports a workspace's message statuses (also the URL it signs)."""
    base = tracking.links_base_url(settings, configured_base)
    return base + CALLBACK_PATH.format(workspace_id=workspace_id)


def apply(
    session: Session, workspace_id: str, message_sid: str, status: str, error_code: str | None
) -> bool:
    """Apply one callback; True when it changed the delivery.

    Raises:
        SmsMessageNotFound: no SMS delivery of the workspace has this message id (yet: the
            fan-out records the id once the provider answered, and a callback may be quicker;
            the provider retries a refused callback).
    """
    delivery_id = session.scalar(
        sa.select(Delivery.id).where(
            Delivery.provider_message_id == message_sid,
            Delivery.workspace_id == workspace_id,
            Delivery.channel == "sms",
        )
    )
    if delivery_id is None:
        raise SmsMessageNotFound("No SMS message with this MessageSid was sent by Spoke.")
    if status in ("delivered", "read"):
        values: dict[str, object] = {"delivered_at": utcnow()}
    elif status in FAILED_STATES:
        reason = f"{status}: {error_code}" if error_code else status
        values = {"status": "failed", "reason": reason[:300]}
    else:
        return False  # progress (or an unknown status): never moves a delivery back
    still_open = sa.and_(
        Delivery.id == delivery_id,
        Delivery.status == "sent",
        Delivery.delivered_at.is_(None),
    )
    return rowcount(session.execute(sa.update(Delivery).where(still_open).values(values))) > 0
