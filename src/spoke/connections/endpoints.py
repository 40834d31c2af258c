"""`/v1/hubspot/connection` and the OAuth callback `/oauth/hubspot/callback`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session

from spoke.connections import service
from spoke.connections.models import HubSpotConnection
from spoke.connections.schemas import AuthorizeLink, Connection, PrivateAppConnect
from spoke.core.db import session_scope
from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import AppServices, Db
from spoke.sync import settings as sync_settings
from spoke.sync import tasks as sync_tasks
from spoke.workspaces.auth import AdminCaller, ServerCaller
from spoke.workspaces.service import RoleRequired

router = APIRouter(prefix="/v1/hubspot", tags=["hubspot"], route_class=TransactionalRoute)
oauth_router = APIRouter(tags=["hubspot"])


def render(conn: HubSpotConnection, session: Session | None = None) -> Connection:
    stopped = sync_settings.stopped_mappings(session, conn.workspace_id) if session else []
    return Connection(
        portal_id=conn.portal_id,
        auth_type=conn.auth_type,
        status=conn.status,
        scopes=list(conn.scopes),
        connected_by=conn.connected_by,
        connected_at=conn.connected_at,
        disconnected_at=conn.disconnected_at,
        token_expires_at=conn.expires_at,
        api_calls_today=service.usage_today(conn),
        properties_available=len(conn.properties),
        scopes_lost=service.scopes_lost(conn),
        missing_optional_scopes=service.missing_optional_scopes(conn),
        stopped_mappings=stopped,
        last_error=conn.last_error,
    )


def _connected(session: Session, workspace_id: str) -> None:
    # The contact sync starts from now: only changes made after connecting are sent.
    sync_settings.ensure_row(session, workspace_id)
    sync_tasks.forget_connection_cache(workspace_id)


@router.get("/connection", response_model=Connection, responses=responses(service.NotConnected))
def get_connection(caller: ServerCaller, session: Db) -> Connection:
    """The portal, scopes, status, who connected and when, and today's API usage."""
    return render(service.get_connection(session, caller.workspace_id), session)


@router.put(
    "/connection",
    response_model=Connection,
    responses=responses(RoleRequired, service.MissingRequiredScopes, service.HubSpotRefused),
)
def connect_private_app(
    body: PrivateAppConnect, caller: AdminCaller, session: Db, services: AppServices
) -> Connection:
    """Connect (or reconnect) with a private app's token. Owners and managers only.

    The token is checked against HubSpot first; a missing required scope is named in the
    answer. Reconnecting keeps the sync settings, refreshes the properties available for
    mapping, and reports scopes lost since the previous grant and mappings that stopped."""
    conn = service.connect_private_app(
        session,
        services.settings,
        services.encryptor,
        caller,
        token=body.private_app_token,
        portal_id=body.portal_id,
        webhook_secret=body.webhook_secret,
    )
    _connected(session, caller.workspace_id)
    return render(conn, session)


@router.post(
    "/connection/oauth",
    response_model=AuthorizeLink,
    responses=responses(RoleRequired, service.OAuthNotConfigured),
)
def start_oauth(caller: AdminCaller, services: AppServices) -> AuthorizeLink:
    """Start connecting by OAuth: send the admin's browser to `authorize_url`."""
    url = service.authorize_url(services.settings, services.encryptor, caller)
    return AuthorizeLink(authorize_url=url, redirect_uri=service.redirect_uri(services.settings))


@router.delete(
    "/connection",
    response_model=Connection,
    responses=responses(RoleRequired, service.NotConnected),
)
def disconnect(caller: AdminCaller, session: Db) -> Connection:
    """Disconnect: the tokens are forgotten; sync settings stay for a reconnect."""
    conn = service.disconnect(session, caller.workspace_id)
    sync_tasks.forget_connection_cache(caller.workspace_id)
    return render(conn)


@oauth_router.get(
    service.CALLBACK_PATH,
    response_model=Connection,
    responses=responses(
        service.InvalidOAuthState,
        service.MissingRequiredScopes,
        service.HubSpotRefused,
        service.OAuthNotConfigured,
    ),
)
def oauth_callback(
    request: Request,
    services: AppServices,
    state: Annotated[str, Query(max_length=2048, description="The state Spoke issued.")],
    code: Annotated[str | None, Query(max_length=2048)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Connection:
    """Where HubSpot sends the browser back: exchanges the code and stores the connection."""
    if error is not None or code is None:
        raise service.HubSpotRefused(f"HubSpot did not grant access: {error or 'no code'}.")
    with session_scope(request.app.state.sessions) as session:
        conn = service.complete_oauth(
            session, services.settings, services.encryptor, code=code, state=state
        )
        _connected(session, conn.workspace_id)
        return render(conn, session)
