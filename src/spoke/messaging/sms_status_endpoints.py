"""The receiver of Twilio's SMS status callbacks (Twilio calls this, not you)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Path, Request, Response, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import AppServices, Db
from spoke.messaging import channel_providers, sms_status, twilio_signature
from spoke.messaging.providers_config import ProviderNotConfigured

router = APIRouter(tags=["messaging"], route_class=TransactionalRoute)


async def form_params(request: Request) -> list[tuple[str, str]]:
    """The form-encoded body as Twilio sent it: every pair, blanks kept (they are signed)."""
    body = await request.body()
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


FormParams = Annotated[list[tuple[str, str]], Depends(form_params)]


@router.post(
    sms_status.CALLBACK_PATH,
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=responses(sms_status.InvalidTwilioSignature, sms_status.SmsMessageNotFound),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "MessageSid": {"type": "string"},
                            "MessageStatus": {
                                "type": "string",
                                "description": "queued, sent, delivered, undelivered, failed…",
                            },
                            "ErrorCode": {"type": "string"},
                        },
                        "required": ["MessageSid", "MessageStatus"],
                    }
                }
            },
        }
    },
)
def sms_status_callback(
    workspace_id: Annotated[str, Path(max_length=64)],
    params: FormParams,
    request: Request,
    session: Db,
    services: AppServices,
) -> Response:
    """A message's new status, signed with `X-Twilio-Signature` by the workspace's Twilio
    account. Repeated and out-of-order callbacks are harmless: the first final status wins."""
    given = request.headers.get(twilio_signature.SIGNATURE_HEADER, "")
    try:
        config = channel_providers.get(session, workspace_id, "sms")
    except ProviderNotConfigured:
        # Same answer as a bad signature: a caller learns nothing about which ids exist.
        raise sms_status.InvalidTwilioSignature("The Twilio signature does not verify.") from None
    account, _ = channel_providers.sms_account(services.encryptor, config)
    urls = [
        sms_status.callback_url(
            services.settings, config.settings.get("status_callback_base_url"), workspace_id
        ),
        str(request.url),
    ]
    if not twilio_signature.verify(account.auth_token, urls, params, given):
        raise sms_status.InvalidTwilioSignature("The Twilio signature does not verify.")
    fields = dict(params)
    sid, state = fields.get("MessageSid", ""), fields.get("MessageStatus", "")
    if sid and state:
        sms_status.apply(session, workspace_id, sid, state, fields.get("ErrorCode") or None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
