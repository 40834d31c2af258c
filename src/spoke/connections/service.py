"""Connect, describe and disconnect a workspace's HubSpot portal; open clients for it.

Connecting checks the token against HubSpot before anything is stored: the scopes an OAuth
token carries come from HubSpot's token info; a private-app token (HubSpot offers no token
info for those) is probed with calls that change nothing, and a 403 `MISSING_SCOPES` names
what is missing. Either way a missing required scope refuses the connection by name.

`open_client` gives jobs a `BlockingClient` for a workspace: OAuth tokens are refreshed
before they expire and again on a 401, and every refresh is stored (encrypted) at once.
Calls are paced by one rate limiter per portal, shared by every client in the process (and
by every process when Redis is configured).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import structlog
from cryptography.fernet import InvalidToken
from sqlalchemy.orm import Session, sessionmaker

from spoke.config import Settings
from spoke.connections.models import HubSpotConnection
from spoke.core.clock import utcnow
from spoke.core.crypto import Encryptor
from spoke.core.db import session_scope
from spoke.core.errors import AppError, Conflict, InvalidInput, NotFound
from spoke.hubspot import (
    BlockingClient,
    HubSpotClient,
    HubSpotError,
    HubSpotResponseError,
    MissingScopes,
    OAuthClient,
    OAuthTokenProvider,
    OAuthTokens,
    RateLimiter,
    RedisBucketStore,
    RetryPolicy,
    Unauthorized,
    blocking_client,
)
from spoke.workspaces.service import Caller

log = structlog.get_logger("spoke.connections")

REQUIRED_SCOPES = (
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
)
# What each optional scope enables; a connection without one works without that feature.
OPTIONAL_SCOPES = (
    "crm.lists.read",
    "crm.lists.write",
    "crm.schemas.contacts.write",
    "behavioral_events.event_definitions.read_write",
    "analytics.behavioral_events.send",
)
OPTIONAL_FEATURES = {
    "crm.lists.read": "checking the HubSpot list of the sync settings",
    "crm.lists.write": "adding synced contacts to a HubSpot list",
    "crm.schemas.contacts.write": "creating the spoke_deleted property (soft deletes)",
    "behavioral_events.event_definitions.read_write": "creating product event definitions",
    "analytics.behavioral_events.send": "sending product events to contact timelines",
}
OAUTH_STATE_TTL = timedelta(minutes=15)
CALLBACK_PATH = "/oauth/hubspot/callback"


class NotConnected(NotFound):
    code = "hubspot_not_connected"
    title = "No HubSpot connection"


class MissingRequiredScopes(AppError):
    code = "hubspot_missing_scopes"
    status_code = 422
    title = "HubSpot token lacks required scopes"


class HubSpotRefused(AppError):
    code = "hubspot_refused"
    status_code = 422
    title = "HubSpot refused the credentials"


class OAuthNotConfigured(Conflict):
    code = "hubspot_oauth_not_configured"
    title = "OAuth is not configured"


class InvalidOAuthState(AppError):
    code = "hubspot_invalid_oauth_state"
    status_code = 400
    title = "Invalid OAuth state"


# -- clients -----------------------------------------------------------------------------------

# An admin is waiting on the answer: retry a blip once, then say what went wrong.
_CONNECT_RETRY = RetryPolicy(max_attempts=2, backoff_base=0.2, backoff_max=1.0)

_limiters: dict[int, RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(settings: Settings, portal_id: int) -> RateLimiter:
    """The process-wide limiter of one portal (backed by Redis when configured)."""
    with _limiters_lock:
        found = _limiters.get(portal_id)
        if found is None:
            store = None
            if settings.redis_url:
                import redis

                # A sync client: this limiter outlives every run's event loop, and an asyncio
                # client stays bound to the loop of its first call (a later run, or the retry
                # of a failed one, then got "Event loop is closed"). One loopback round trip
                # per HubSpot call is nothing next to the call.
                store = RedisBucketStore(redis.Redis.from_url(settings.redis_url))
            found = RateLimiter(
                portal_id,
                store=store,
                limit=settings.hubspot.rate_limit,
                reserved_share=settings.hubspot.reserved_share,
            )
            _limiters[portal_id] = found
        return found


def _oauth_client(settings: Settings, http: httpx.AsyncClient) -> OAuthClient:
    hs = settings.hubspot
    if not hs.client_id or hs.client_secret is None:
        raise OAuthNotConfigured(
            "Set SPOKE_HUBSPOT__CLIENT_ID and SPOKE_HUBSPOT__CLIENT_SECRET to connect by OAuth."
        )
    return OAuthClient(
        http,
        client_id=hs.client_id,
        client_secret=hs.client_secret.get_secret_value(),
        base_url=hs.base_url,
    )


@dataclass
class _Usage:
    calls: int = 0

    async def count(self, response: httpx.Response) -> None:
        self.calls += 1


def _store_usage(sessions: sessionmaker[Session], workspace_id: str, calls: int) -> None:
    if not calls:
        return
    today = utcnow().date().isoformat()
    with session_scope(sessions) as session:
        conn = session.get(HubSpotConnection, workspace_id, with_for_update=True)
        if conn is None:
            return
        if conn.usage_day != today:
            conn.usage_day, conn.usage_calls = today, 0
        conn.usage_calls += calls


@contextmanager
def open_client(
    sessions: sessionmaker[Session],
    settings: Settings,
    encryptor: Encryptor,
    workspace_id: str,
) -> Iterator[BlockingClient]:
    """A blocking HubSpot client for the workspace's connected portal.

    Raises:
        NotConnected: the workspace has no active connection.
    """
    with session_scope(sessions) as session:
        conn = session.get(HubSpotConnection, workspace_id)
        if conn is None or conn.status != "connected" or conn.access_token is None:
            raise NotConnected("This workspace is not connected to HubSpot.")
        portal_id = conn.portal_id
        auth_type = conn.auth_type
        access = encryptor.decrypt(conn.access_token)
        refresh = encryptor.decrypt(conn.refresh_token) if conn.refresh_token else None
        expires = conn.expires_at.timestamp() if conn.expires_at else 0.0
    usage = _Usage()

    def persist(tokens: OAuthTokens) -> None:
        with session_scope(sessions) as writer:
            row = writer.get(HubSpotConnection, workspace_id)
            if row is not None and row.status == "connected":
                row.access_token = encryptor.encrypt(tokens.access_token)
                row.expires_at = datetime.fromtimestamp(tokens.expires_at, UTC)

    def build(http: httpx.AsyncClient) -> HubSpotClient:
        auth: Any = access
        if auth_type == "oauth" and refresh is not None:
            auth = OAuthTokenProvider(
                _oauth_client(settings, http),
                OAuthTokens(access, refresh, expires),
                on_refresh=persist,
            )
        return HubSpotClient(
            http,
            auth=auth,
            base_url=settings.hubspot.base_url,
            limiter=limiter_for(settings, portal_id),
            retry=RetryPolicy(
                ten_secondly_wait=settings.hubspot.rate_limited_wait_seconds,
                secondly_wait=min(1.0, settings.hubspot.rate_limited_wait_seconds),
            ),
        )

    def http_factory() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0), event_hooks={"response": [usage.count]}
        )

    try:
        with blocking_client(build, http_factory=http_factory) as client:
            yield client
    finally:
        try:
            _store_usage(sessions, workspace_id, usage.calls)
        except Exception:  # usage is informative; never fail the work for it
            log.warning("hubspot.usage_not_stored", workspace_id=workspace_id, exc_info=True)


@contextmanager
def request_client(
    session: Session, settings: Settings, encryptor: Encryptor, workspace_id: str
) -> Iterator[BlockingClient]:
    """A HubSpot client for work inside a request's transaction (`session`): the token is
    read from it and a refreshed OAuth token is written back to it, so no second database
    session is opened (SQLite's writer lock is the request's).

    Raises:
        NotConnected: the workspace has no active connection.
    """
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is None or conn.status != "connected" or conn.access_token is None:
        raise NotConnected("This workspace is not connected to HubSpot.")
    access = encryptor.decrypt(conn.access_token)
    refresh = encryptor.decrypt(conn.refresh_token) if conn.refresh_token else None
    expires = conn.expires_at.timestamp() if conn.expires_at else 0.0
    refreshed: list[OAuthTokens] = []

    def build(http: httpx.AsyncClient) -> HubSpotClient:
        auth: Any = access
        if conn.auth_type == "oauth" and refresh is not None:
            auth = OAuthTokenProvider(
                _oauth_client(settings, http),
                OAuthTokens(access, refresh, expires),
                on_refresh=refreshed.append,
            )
        return HubSpotClient(
            http,
            auth=auth,
            base_url=settings.hubspot.base_url,
            limiter=limiter_for(settings, conn.portal_id),
            retry=_CONNECT_RETRY,
        )

    try:
        with blocking_client(build) as client:
            yield client
    finally:
        if refreshed:
            conn.access_token = encryptor.encrypt(refreshed[-1].access_token)
            conn.expires_at = datetime.fromtimestamp(refreshed[-1].expires_at, UTC)


# -- connecting --------------------------------------------------------------------------------


@dataclass
class _Checked:
    scopes: list[str]
    properties: list[dict[str, Any]]
    app_id: int | None = None


def _property_rows(client: HubSpotClient) -> Any:
    async def run() -> list[dict[str, Any]]:
        props = await client.properties.list("contacts")
        return [
            {
                "name": p.name,
                "label": p.label,
                "type": p.type,
                "field_type": p.field_type,
                "read_only": p.read_only_value or p.calculated,
                "options": [o.value for o in p.options],
            }
            for p in props
            if not p.archived
        ]

    return run()


async def _probe(client: HubSpotClient) -> list[str]:
    """Scopes a private-app token lacks, found by calls that change nothing."""
    missing: list[str] = []
    probes: tuple[tuple[str, str, dict[str, Any] | None, str], ...] = (
        ("GET", "/crm/v3/objects/contacts", None, "crm.objects.contacts.read"),
        (
            "POST",
            "/crm/v3/objects/contacts/batch/archive",
            {"inputs": []},
            "crm.objects.contacts.write",
        ),
        ("GET", "/crm/v3/properties/contacts", None, "crm.schemas.contacts.read"),
    )
    for method, path, body, scope in probes:
        try:
            await client.request(
                method,
                path,
                params={"limit": 1} if method == "GET" else None,
                json=body,
                idempotent=True,
            )
        except MissingScopes:
            missing.append(scope)
    return missing


async def _probe_optional(client: HubSpotClient) -> list[str]:
    """Optional scopes a private-app token has, found by calls that change nothing (any
    answer but a missing-scope 403 means the scope is there)."""
    probes: tuple[tuple[str, str, dict[str, Any] | list[str] | None, str], ...] = (
        ("POST", "/crm/v3/lists/search", {"query": "", "count": 1}, "crm.lists.read"),
        ("PUT", "/crm/v3/lists/0/memberships/add", [], "crm.lists.write"),
        (
            "POST",
            "/crm/v3/properties/contacts/batch/archive",
            {"inputs": []},
            "crm.schemas.contacts.write",
        ),
    )
    granted: list[str] = []
    for method, path, body, scope in probes:
        try:
            await client.request(method, path, json=body, idempotent=True)
        except MissingScopes:
            continue
        except HubSpotResponseError:
            pass  # refused for another reason (no list 0): the scope itself is granted
        granted.append(scope)
    return granted


def _missing_scopes_error(missing: list[str]) -> MissingRequiredScopes:
    return MissingRequiredScopes(
        f"The HubSpot token lacks required scopes: {', '.join(missing)}.",
        errors=[
            {"field": "scopes", "message": f"missing scope {s}", "type": "missing_scope"}
            for s in missing
        ],
        missing_scopes=missing,
    )


def _check_private_app(settings: Settings, token: str) -> _Checked:
    with blocking_client(
        lambda http: HubSpotClient(
            http, auth=token, base_url=settings.hubspot.base_url, retry=_CONNECT_RETRY
        )
    ) as hs:
        try:
            missing = hs.call(_probe)
        except Unauthorized as exc:
            raise HubSpotRefused("HubSpot does not accept this private-app token.") from exc
        except HubSpotError as exc:
            raise HubSpotRefused(f"HubSpot could not be reached or refused: {exc}") from exc
        if missing:
            raise _missing_scopes_error(missing)
        properties = hs.call(_property_rows)
        optional = hs.call(_probe_optional)
    return _Checked([*REQUIRED_SCOPES, *optional], properties)


def _upsert(
    session: Session,
    encryptor: Encryptor,
    caller: Caller,
    *,
    portal_id: int,
    auth_type: str,
    access_token: str,
    refresh_token: str | None,
    expires_at: datetime | None,
    webhook_secret: str | None,
    checked: _Checked,
) -> HubSpotConnection:
    conn = session.get(HubSpotConnection, caller.workspace_id, with_for_update=True)
    if conn is None:
        conn = HubSpotConnection(workspace_id=caller.workspace_id, scopes=[], previous_scopes=[])
        session.add(conn)
    conn.previous_scopes = list(conn.scopes or [])
    conn.portal_id = portal_id
    conn.auth_type = auth_type
    conn.status = "connected"
    conn.access_token = encryptor.encrypt(access_token)
    conn.refresh_token = encryptor.encrypt(refresh_token) if refresh_token else None
    conn.expires_at = expires_at
    conn.webhook_secret = encryptor.encrypt(webhook_secret) if webhook_secret else None
    conn.app_id = checked.app_id
    conn.scopes = sorted(checked.scopes)
    conn.properties = checked.properties
    conn.connected_by = caller.actor
    conn.connected_at = utcnow()
    conn.disconnected_at = None
    conn.last_error = None
    session.flush()
    return conn


def connect_private_app(
    session: Session,
    settings: Settings,
    encryptor: Encryptor,
    caller: Caller,
    *,
    token: str,
    portal_id: int,
    webhook_secret: str | None,
) -> HubSpotConnection:
    """Connect with a private app's token after checking it and its scopes."""
    checked = _check_private_app(settings, token)
    return _upsert(
        session,
        encryptor,
        caller,
        portal_id=portal_id,
        auth_type="private_app",
        access_token=token,
        refresh_token=None,
        expires_at=None,
        webhook_secret=webhook_secret,
        checked=checked,
    )


def redirect_uri(settings: Settings) -> str:
    if settings.hubspot.redirect_url:
        return settings.hubspot.redirect_url
    base = settings.http.public_url or f"http://{settings.http.host}:{settings.http.port}"
    return base.rstrip("/") + CALLBACK_PATH


def authorize_url(settings: Settings, encryptor: Encryptor, caller: Caller) -> str:
    """Where to send the admin's browser; `state` binds the answer to this workspace."""
    state = encryptor.encrypt(
        orjson.dumps({"w": caller.workspace_id, "a": caller.actor, "t": int(time.time())}).decode()
    )
    oauth = _oauth_client(settings, _UNUSED_HTTP)
    return oauth.authorize_url(
        redirect_uri=redirect_uri(settings),
        scopes=REQUIRED_SCOPES,
        optional_scopes=OPTIONAL_SCOPES,
        state=state,
        app_url=settings.hubspot.app_url,
    )


# Building the authorize URL sends nothing; the OAuth client only needs an http client to exist.
_UNUSED_HTTP = httpx.AsyncClient()


def _decode_state(encryptor: Encryptor, state: str) -> tuple[str, str]:
    try:
        data = orjson.loads(encryptor.decrypt(state))
        workspace_id, actor, issued = str(data["w"]), str(data["a"]), int(data["t"])
    except (InvalidToken, ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise InvalidOAuthState("The OAuth state is not one Spoke issued.") from exc
    if time.time() - issued > OAUTH_STATE_TTL.total_seconds():
        raise InvalidOAuthState("The OAuth state has expired; start the connection again.")
    return workspace_id, actor


def complete_oauth(
    session: Session,
    settings: Settings,
    encryptor: Encryptor,
    *,
    code: str,
    state: str,
) -> HubSpotConnection:
    """Exchange the callback's code, check scopes, and store the connection."""
    workspace_id, actor = _decode_state(encryptor, state)

    holder: dict[str, httpx.AsyncClient] = {}

    def build(http: httpx.AsyncClient) -> HubSpotClient:
        holder["http"] = http
        return HubSpotClient(
            http, auth="-", base_url=settings.hubspot.base_url, retry=_CONNECT_RETRY
        )

    async def exchange(_: HubSpotClient) -> tuple[Any, Any, list[dict[str, Any]] | None]:
        http = holder["http"]
        oauth = _oauth_client(settings, http)
        answer = await oauth.exchange_code(code, redirect_uri=redirect_uri(settings))
        info = await oauth.access_token_info(answer.access_token)
        properties = None
        if not [s for s in REQUIRED_SCOPES if s not in info.scopes]:
            authed = HubSpotClient(
                http,
                auth=answer.access_token,
                base_url=settings.hubspot.base_url,
                retry=_CONNECT_RETRY,
            )
            properties = await _property_rows(authed)
        return answer, info, properties

    with blocking_client(build) as hs:
        try:
            answer, info, properties = hs.call(exchange)
        except AppError:
            raise
        except HubSpotError as exc:
            raise HubSpotRefused(f"HubSpot refused the authorization code: {exc}") from exc
    missing = [s for s in REQUIRED_SCOPES if s not in info.scopes]
    if missing:
        raise _missing_scopes_error(missing)
    tokens = OAuthTokens.from_response(answer)
    caller = Caller(workspace_id=workspace_id, member_id=None, role=None, key_id=actor)
    return _upsert(
        session,
        encryptor,
        caller,
        portal_id=int(info.hub_id),
        auth_type="oauth",
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_at=datetime.fromtimestamp(tokens.expires_at, UTC),
        webhook_secret=None,
        checked=_Checked(list(info.scopes), properties or [], app_id=info.app_id),
    )


def get_connection(session: Session, workspace_id: str) -> HubSpotConnection:
    conn = session.get(HubSpotConnection, workspace_id)
    if conn is None:
        raise NotConnected("This workspace has never been connected to HubSpot.")
    return conn


def disconnect(session: Session, workspace_id: str) -> HubSpotConnection:
    """Forget the tokens; keep the row (and so every sync setting) for a reconnect."""
    conn = get_connection(session, workspace_id)
    conn.status = "disconnected"
    conn.access_token = None
    conn.refresh_token = None
    conn.expires_at = None
    conn.disconnected_at = utcnow()
    session.flush()
    return conn


def connections_for_portal(session: Session, portal_id: int) -> list[HubSpotConnection]:
    from sqlalchemy import select

    return list(
        session.scalars(
            select(HubSpotConnection).where(
                HubSpotConnection.portal_id == portal_id,
                HubSpotConnection.status == "connected",
            )
        )
    )


def scopes_lost(conn: HubSpotConnection) -> list[str]:
    """Scopes the grant before the latest (re)connect had and this one lacks."""
    return sorted(set(conn.previous_scopes or []) - set(conn.scopes or []))


def missing_optional_scopes(conn: HubSpotConnection) -> dict[str, str]:
    """Optional scopes not granted, each with the feature it would enable."""
    return {s: OPTIONAL_FEATURES[s] for s in OPTIONAL_SCOPES if s not in (conn.scopes or [])}


def usage_today(conn: HubSpotConnection) -> int:
    return conn.usage_calls if conn.usage_day == utcnow().date().isoformat() else 0


__all__ = [
    "CALLBACK_PATH",
    "HubSpotRefused",
    "InvalidInput",
    "InvalidOAuthState",
    "MissingRequiredScopes",
    "NotConnected",
    "OAuthNotConfigured",
    "authorize_url",
    "complete_oauth",
    "connect_private_app",
    "connections_for_portal",
    "disconnect",
    "get_connection",
    "missing_optional_scopes",
    "open_client",
    "request_client",
    "scopes_lost",
    "usage_today",
]
