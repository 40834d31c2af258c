"""Email and SMS over HTTP: the SMTP and Twilio provider settings, and users'
subscriptions on every channel (`/v1/users/{id}/subscriptions`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import AppServices, Db
from spoke.messaging import addresses, channel_providers, providers_config
from spoke.messaging.channel_schemas import (
    ChannelProviderOut,
    SmtpConfigInput,
    SubscriptionOut,
    SubscriptionStatusInput,
    TwilioConfigInput,
)
from spoke.users import service as users
from spoke.users.endpoints import ExternalIdPath
from spoke.workspaces.auth import AdminCaller, Idempotent, ServerCaller

router = APIRouter(prefix="/v1", tags=["messaging"], route_class=TransactionalRoute)

AddressChannel = Annotated[str, Path(pattern="^(email|sms)$", description="`email` or `sms`.")]


# -- providers -----------------------------------------------------------------------------


@router.put(
    "/messaging/providers/smtp",
    response_model=ChannelProviderOut,
    responses=responses(),
    dependencies=[Idempotent],
)
def put_smtp(
    body: SmtpConfigInput, caller: AdminCaller, session: Db, services: AppServices
) -> object:
    """Send email through an SMTP server (STARTTLS by default). The password and trusted
    certificates are encrypted at rest and never shown again; owners and managers only."""
    config = channel_providers.set_smtp(
        session, services.encryptor, caller.workspace_id, body.model_dump()
    )
    return channel_providers.render(config)


@router.put(
    "/messaging/providers/twilio",
    response_model=ChannelProviderOut,
    responses=responses(),
    dependencies=[Idempotent],
)
def put_twilio(
    body: TwilioConfigInput, caller: AdminCaller, session: Db, services: AppServices
) -> object:
    """Send SMS through Twilio's Messages API (or a compatible one at `base_url`). The auth
    token is encrypted at rest and never shown again; owners and managers only."""
    config = channel_providers.set_twilio(
        session, services.encryptor, caller.workspace_id, body.model_dump()
    )
    return channel_providers.render(config)


@router.get(
    "/messaging/providers/email",
    response_model=ChannelProviderOut,
    responses=responses(providers_config.ProviderNotConfigured),
)
def get_email_provider(caller: ServerCaller, session: Db) -> object:
    """The email provider in use (without its secrets)."""
    return channel_providers.render(channel_providers.get(session, caller.workspace_id, "email"))


@router.delete(
    "/messaging/providers/email",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(providers_config.ProviderNotConfigured),
    dependencies=[Idempotent],
)
def delete_email_provider(caller: AdminCaller, session: Db) -> None:
    """Forget the email provider; email sends are refused until a new one is set."""
    channel_providers.delete(session, caller.workspace_id, "email")


@router.get(
    "/messaging/providers/sms",
    response_model=ChannelProviderOut,
    responses=responses(providers_config.ProviderNotConfigured),
)
def get_sms_provider(caller: ServerCaller, session: Db) -> object:
    """The SMS provider in use (without its secrets)."""
    return channel_providers.render(channel_providers.get(session, caller.workspace_id, "sms"))


@router.delete(
    "/messaging/providers/sms",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(providers_config.ProviderNotConfigured),
    dependencies=[Idempotent],
)
def delete_sms_provider(caller: AdminCaller, session: Db) -> None:
    """Forget the SMS provider; SMS sends are refused until a new one is set."""
    channel_providers.delete(session, caller.workspace_id, "sms")


# -- subscriptions -------------------------------------------------------------------------


@router.get(
    "/users/{external_id}/subscriptions",
    response_model=list[SubscriptionOut],
    responses=responses(users.UserNotFound),
    tags=["subscriptions"],
)
def list_subscriptions(external_id: ExternalIdPath, caller: ServerCaller, session: Db) -> object:
    """Every way to reach the user: push devices, and the email and SMS subscriptions of
    the user's current email address and phone number, each with its status."""
    user = users.get_user(session, caller.workspace_id, external_id)
    return addresses.list_for_user(session, user)


@router.patch(
    "/users/{external_id}/subscriptions/{channel}",
    response_model=SubscriptionOut,
    responses=responses(users.UserNotFound, addresses.SubscriptionNotFound),
    tags=["subscriptions"],
    dependencies=[Idempotent],
)
def set_subscription(
    external_id: ExternalIdPath,
    channel: AddressChannel,
    body: SubscriptionStatusInput,
    caller: ServerCaller,
    session: Db,
) -> object:
    """Unsubscribe the user's email address or phone number (or subscribe it again, which
    also lifts a bounce). The status stays with the address."""
    user = users.get_user(session, caller.workspace_id, external_id)
    return addresses.set_status(session, user, channel, body.status)
