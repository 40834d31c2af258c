"""Messaging over HTTP: provider credentials, device tokens, push sends, history, and the
app's client routes (`/v1/client/devices`, `/v1/client/notifications/{id}/events`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.core.pagination import Page, decode_cursor, encode_cursor
from spoke.deps import AppServices, Db
from spoke.messaging import (
    channel_providers,
    devices,
    personalise,
    providers_config,
    saved_segments,
    schemas,
    segments,
    service,
    templates,
    webhooks,
)
from spoke.messaging.models import Notification
from spoke.users import activity
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.endpoints import ExternalIdPath, IdentityToken
from spoke.workspaces.auth import (
    AdminCaller,
    ClientIdempotent,
    ClientWorkspace,
    Idempotent,
    ServerCaller,
    verify_identity,
)

router = APIRouter(prefix="/v1", tags=["messaging"], route_class=TransactionalRoute)
client_router = APIRouter(prefix="/v1/client", tags=["client"], route_class=TransactionalRoute)

TokenPath = Annotated[str, Path(pattern=schemas.TOKEN_PATTERN, description="Device token.")]
NotificationIdPath = Annotated[str, Path(min_length=1, max_length=40)]


def _origin(request: Request, workspace_id: str, origin: str, actor: str) -> Origin:
    return Origin(workspace_id, origin, actor, getattr(request.state, "request_id", None))


# -- provider credentials ------------------------------------------------------------------


@router.put(
    "/messaging/providers/fcm",
    response_model=schemas.ProviderInfo,
    responses=responses(providers_config.InvalidServiceAccount),
    dependencies=[Idempotent],
)
def put_fcm(
    body: schemas.FcmConfigInput, caller: AdminCaller, session: Db, services: AppServices
) -> object:
    """Send push through Firebase: upload the project's service-account key file (JSON).

    The key is encrypted at rest and never shown again; owners and managers only."""
    config = providers_config.set_fcm(
        session, services.encryptor, caller.workspace_id, body.service_account, body.base_url
    )
    return providers_config.render(config)


@router.get(
    "/messaging/providers/push",
    response_model=schemas.ProviderInfo,
    responses=responses(providers_config.ProviderNotConfigured),
)
def get_push_provider(caller: ServerCaller, session: Db) -> object:
    """The push provider in use (without its secrets)."""
    return providers_config.render(providers_config.get_push(session, caller.workspace_id))


@router.delete(
    "/messaging/providers/push",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(providers_config.ProviderNotConfigured),
    dependencies=[Idempotent],
)
def delete_push_provider(caller: AdminCaller, session: Db) -> None:
    """Forget the push provider and its credentials; sends are refused until a new one."""
    providers_config.delete_push(session, caller.workspace_id)


@router.put(
    "/messaging/webhook",
    response_model=schemas.WebhookOut,
    responses=responses(),
    dependencies=[Idempotent],
)
def put_webhook(
    body: schemas.WebhookInput, caller: AdminCaller, session: Db, services: AppServices
) -> object:
    """Where to POST the users a send could not reach. Each call issues a new signing
    secret, shown once: `X-Spoke-Signature: t=…,v1=hex(HMAC-SHA256(secret, "t.body"))`."""
    row, secret = webhooks.set_webhook(session, services.encryptor, caller.workspace_id, body.url)
    return {"url": row.url, "updated_at": row.updated_at, "secret": secret}


@router.get(
    "/messaging/webhook",
    response_model=schemas.WebhookOut,
    responses=responses(webhooks.WebhookNotConfigured),
)
def get_webhook(caller: ServerCaller, session: Db) -> object:
    """The messaging webhook (without its secret)."""
    row = webhooks.get_webhook(session, caller.workspace_id)
    return {"url": row.url, "updated_at": row.updated_at}


@router.delete(
    "/messaging/webhook",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(webhooks.WebhookNotConfigured),
    dependencies=[Idempotent],
)
def delete_webhook(caller: AdminCaller, session: Db) -> None:
    """Stop the webhook."""
    webhooks.delete_webhook(session, caller.workspace_id)


# -- devices (server) ----------------------------------------------------------------------


@router.post(
    "/users/{external_id}/devices",
    response_model=schemas.Device,
    responses={
        201: {"model": schemas.Device, "description": "Registered"},
        **responses(users.UserDeleted),
    },
    tags=["devices"],
    dependencies=[Idempotent],
)
def register_device(
    external_id: ExternalIdPath,
    body: schemas.DeviceRegister,
    caller: ServerCaller,
    session: Db,
    request: Request,
    response: Response,
) -> object:
    """Register a device token for the user (created if new). A token registered to
    another user moves to this one."""
    user = devices.ensure_user(
        session, _origin(request, caller.workspace_id, "api", caller.actor), external_id
    )
    subscription, created = devices.register(session, user, body.token, body.platform)
    if created:
        response.status_code = status.HTTP_201_CREATED
    return devices.render(subscription, user.external_id)


@router.get(
    "/users/{external_id}/devices",
    response_model=list[schemas.Device],
    responses=responses(users.UserNotFound),
    tags=["devices"],
)
def list_devices(external_id: ExternalIdPath, caller: ServerCaller, session: Db) -> object:
    """The user's push tokens with their status (`invalid` once the provider refused one)."""
    user = users.get_user(session, caller.workspace_id, external_id)
    return [devices.render(s, user.external_id) for s in devices.list_for_user(session, user)]


@router.delete(
    "/devices/{token}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(devices.DeviceNotFound),
    tags=["devices"],
    dependencies=[Idempotent],
)
def delete_device(token: TokenPath, caller: ServerCaller, session: Db) -> None:
    """Remove a device token, whoever it belongs to."""
    devices.unregister(session, caller.workspace_id, token, user_id=None)


# -- sends ---------------------------------------------------------------------------------


def _content(body: schemas.PushContent, *, ad: bool = False) -> dict[str, Any]:
    content = body.model_dump(
        include={"title", "body", "image_url", "link_url", "data", *_EMAIL_FIELDS},
        exclude_none=True,
    )
    return {**content, "ad": True} if ad else content


_EMAIL_FIELDS = ("subject", "html", "text", "from_name")


def _accepted(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.id,
        "request_group_id": notification.request_group_id,
        "status": service.status_of(notification),
        "recipients": notification.total,
        "send_at": notification.send_at,
    }


@router.post(
    "/push/users",
    response_model=schemas.SendAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(service.PushNotConfigured, personalise.InvalidTemplate),
    tags=["push"],
    dependencies=[Idempotent],
)
def push_to_users(
    body: schemas.PushToUsers, caller: ServerCaller, session: Db, services: AppServices
) -> object:
    """The same title/body/image/link/data to up to 10,000 users, by your user ids.

    Answers at once; the send runs in the background. `GET /v1/notifications/{id}` shows
    progress, counts and the users that could not be reached."""
    notification = service.create_push(
        session,
        services.jobs,
        caller.workspace_id,
        source="users",
        content=_content(body, ad=body.ad),
        recipients=list(dict.fromkeys(body.user_ids)),
        request_group_id=body.request_group_id,
        send_at=body.send_at,
    )
    return _accepted(notification)


@router.post(
    "/push/messages",
    response_model=schemas.SendAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(service.PushNotConfigured, personalise.InvalidTemplate),
    tags=["push"],
    dependencies=[Idempotent],
)
def push_messages(
    body: schemas.PushMessages, caller: ServerCaller, session: Db, services: AppServices
) -> object:
    """A different message per user, up to 1,000 per call (the first one per user counts)."""
    items: dict[str, dict[str, Any]] = {}
    for message in body.messages:
        items.setdefault(message.user_id, {"user_id": message.user_id, **_content(message)})
    notification = service.create_push(
        session,
        services.jobs,
        caller.workspace_id,
        source="messages",
        content={"ad": True} if body.ad else {},
        recipients=list(items.values()),
        request_group_id=body.request_group_id,
        send_at=body.send_at,
    )
    return _accepted(notification)


@router.post(
    "/notifications",
    response_model=schemas.SendAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(
        service.PushNotConfigured,
        personalise.InvalidTemplate,
        channel_providers.EmailNotConfigured,
        channel_providers.SmsNotConfigured,
        templates.TemplateNotFound,
        templates.TemplateChannelMismatch,
        saved_segments.SegmentNotFound,
        segments.InvalidSegment,
    ),
    tags=["notifications"],
    dependencies=[Idempotent],
)
def create_notification(
    body: schemas.NotificationCreate, caller: ServerCaller, session: Db, services: AppServices
) -> object:
    """One message to an audience: user ids, a segment by tags (every `key: value` must
    match), by `filters`, a saved segment (`segment_id`), or everyone. A segment is resolved
    as the send runs; `recipients` in the answer is its size now. Content inline or from a
    stored template (`template_id`, with `variables`); `delayed_option: "timezone"` delivers
    at `delivery_time_of_day` in each user's zone. Channels `push`, `email` (to the users'
    email addresses) and `sms` (to their phone numbers); users without a subscribed address
    are `no_subscription`."""
    audience = body.audience
    segment = None
    if audience.user_ids is None:
        segment = audience.model_dump(exclude_none=True, exclude_defaults=True)
        segment = saved_segments.audience(
            session, caller.workspace_id, segment or {"everyone": True}
        )
    content = _content(body, ad=body.ad)
    if body.template_id is not None:
        stored = templates.content_for_send(
            session, caller.workspace_id, body.template_id, body.channel
        )
        content = {**stored, "ad": True} if body.ad else stored
    if body.variables:
        content["variables"] = body.variables
    if body.channel == "email" and not body.track_clicks:
        content["track_clicks"] = False
    notification = service.create_push(
        session,
        services.jobs,
        caller.workspace_id,
        source="users" if segment is None else "segment",
        content=content,
        recipients=list(dict.fromkeys(audience.user_ids or [])),
        request_group_id=body.request_group_id,
        send_at=body.send_at,
        audience=segment,
        channel=body.channel,
        delivery_time_of_day=body.delivery_time_of_day,
    )
    return _accepted(notification)


# -- history -------------------------------------------------------------------------------


@router.get(
    "/notifications",
    response_model=Page[schemas.NotificationSummary],
    responses=responses(),
    tags=["notifications"],
)
def list_notifications(
    caller: ServerCaller,
    session: Db,
    request_group_id: Annotated[str | None, Query(max_length=64)] = None,
    status_: Annotated[
        str | None,
        Query(alias="status", pattern="^(queued|running|completed|failed|canceled)$"),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> object:
    """Sends, newest first; filter by `request_group_id` or `status`."""
    rows, next_cursor = service.list_notifications(
        session,
        caller.workspace_id,
        request_group_id=request_group_id,
        status=status_,
        cursor=cursor,
        limit=limit,
    )
    return {"data": [service.summary(n) for n in rows], "next_cursor": next_cursor}


@router.get(
    "/notifications/{notification_id}",
    response_model=schemas.NotificationOut,
    responses=responses(service.NotificationNotFound),
    tags=["notifications"],
)
def get_notification(
    notification_id: NotificationIdPath, caller: ServerCaller, session: Db
) -> object:
    """One send: status, counts and rates (sent, failed, delivered, clicked), and who could
    not be reached (unknown ids, no valid token, every token refused)."""
    return service.render(session, service.get(session, caller.workspace_id, notification_id))


@router.delete(
    "/notifications/{notification_id}",
    response_model=schemas.NotificationOut,
    responses=responses(service.NotificationNotFound, service.NotificationStarted),
    tags=["notifications"],
    dependencies=[Idempotent],
)
def cancel_notification(
    notification_id: NotificationIdPath, caller: ServerCaller, session: Db
) -> object:
    """Cancel a send that has not started, e.g. a scheduled one."""
    notification = service.get(session, caller.workspace_id, notification_id)
    return service.render(session, service.cancel(session, notification))


@router.get(
    "/notifications/{notification_id}/deliveries",
    response_model=Page[schemas.DeliveryOut],
    responses=responses(service.NotificationNotFound),
    tags=["notifications"],
)
def list_deliveries(
    notification_id: NotificationIdPath,
    caller: ServerCaller,
    session: Db,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """Per-recipient outcomes, in the order they were planned."""
    notification = service.get(session, caller.workspace_id, notification_id)
    after = 0
    if cursor is not None:
        (after_id,) = decode_cursor(cursor, 1)
        after = after_id if isinstance(after_id, int) else 0
    rows, last = service.list_deliveries(session, notification, after=after, limit=limit)
    return {
        "data": [service.render_delivery(d) for d in rows],
        "next_cursor": encode_cursor([last]) if last is not None else None,
    }


@router.get(
    "/users/{external_id}/notifications",
    response_model=list[schemas.UserMessage],
    responses=responses(users.UserNotFound),
    tags=["notifications"],
)
def user_notifications(
    external_id: ExternalIdPath,
    caller: ServerCaller,
    session: Db,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> object:
    """The messages sent to one user, newest first."""
    user = users.get_user(session, caller.workspace_id, external_id, include_deleted=True)
    return [
        {
            "notification_id": n.id,
            "request_group_id": n.request_group_id,
            "content": {**n.content, **(d.content or {})},
            **service.render_delivery(d),
        }
        for d, n in service.user_deliveries(session, user, limit=limit)
    ]


# -- client routes -------------------------------------------------------------------------


def _client_origin(request: Request, workspace_id: str) -> Origin:
    return _origin(request, workspace_id, "client", "client")


@client_router.post(
    "/devices",
    response_model=schemas.Device,
    responses={
        201: {"model": schemas.Device, "description": "Registered"},
        **responses(users.UserDeleted),
    },
    dependencies=[ClientIdempotent],
)
def client_register_device(
    body: schemas.ClientDeviceRegister,
    workspace: ClientWorkspace,
    session: Db,
    services: AppServices,
    request: Request,
    response: Response,
    identity_token: IdentityToken = None,
) -> object:
    """From the app at login: this device's token now reaches this user (moved from
    whoever had it). With identity verification on, send `X-Identity-Token`."""
    verify_identity(services, workspace, body.external_id, identity_token)
    user = devices.ensure_user(session, _client_origin(request, workspace.id), body.external_id)
    subscription, created = devices.register(session, user, body.token, body.platform)
    activity.touch(session, workspace.id, [user.external_id])
    if created:
        response.status_code = status.HTTP_201_CREATED
    return devices.render(subscription, user.external_id)


@client_router.delete(
    "/devices/{token}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(devices.DeviceNotFound),
    dependencies=[ClientIdempotent],
)
def client_delete_device(
    token: TokenPath,
    workspace: ClientWorkspace,
    session: Db,
    services: AppServices,
    external_id: Annotated[
        str | None,
        Query(min_length=1, max_length=255, description="Required with identity verification."),
    ] = None,
    identity_token: IdentityToken = None,
) -> None:
    """From the app at logout: the token stops receiving this workspace's pushes. With
    `external_id` (required when identity verification is on) only that user's token goes."""
    user_id = None
    if external_id is not None or workspace.identity_verification:
        verify_identity(services, workspace, external_id or "", identity_token)
        try:
            user_id = users.get_user(session, workspace.id, external_id or "").id
        except users.UserNotFound:
            raise devices.DeviceNotFound("No such device token for this user.") from None
    devices.unregister(session, workspace.id, token, user_id=user_id)


@client_router.post(
    "/notifications/{notification_id}/events",
    response_model=schemas.DeliveryOut,
    responses=responses(service.NotificationNotFound, service.RecipientNotFound),
    dependencies=[ClientIdempotent],
)
def client_event(
    notification_id: NotificationIdPath,
    body: schemas.ClientEvent,
    workspace: ClientWorkspace,
    session: Db,
    services: AppServices,
    identity_token: IdentityToken = None,
) -> object:
    """From the app: the push arrived (`delivered`) or was opened (`clicked`)."""
    verify_identity(services, workspace, body.external_id, identity_token)
    notification = service.get(session, workspace.id, notification_id)
    try:
        user = users.get_user(session, workspace.id, body.external_id, include_deleted=True)
    except users.UserNotFound:
        raise service.RecipientNotFound(
            "This user was not a recipient of this notification."
        ) from None
    delivery = service.record_event(session, notification, user, body.event)
    activity.touch(session, workspace.id, [user.external_id])
    return service.render_delivery(delivery)
