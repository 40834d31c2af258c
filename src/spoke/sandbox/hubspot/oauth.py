"""OAuth (contract §6): authorize redirect, token exchange and refresh, token info.

Consent is automatic: `/oauth/authorize` immediately redirects back with a code, installing the
app into the portal given in the path (`/oauth/{portalId}/authorize`), in the `portal_id` query
parameter (a sandbox extension), or else the portal the app was created with.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from spoke.sandbox.hubspot.errors import correlation_id
from spoke.sandbox.hubspot.http import JSON
from spoke.sandbox.hubspot.store import ALL_SCOPES, OAuthApp, SandboxStore, Token

JSONDict = dict[str, Any]


def _oauth_error(status: str, message: str, rfc_error: str = "invalid_grant") -> Response:
    return JSON(
        {
            "status": status,
            "message": message,
            "correlationId": correlation_id(),
            "error": rfc_error,
            "error_description": message,
        },
        status_code=400,
    )


def _store(request: Request) -> SandboxStore:
    store: SandboxStore = request.app.state.store
    return store


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _scopes(raw: str) -> list[str]:
    return [s for s in raw.replace("+", " ").replace(",", " ").split() if s]


async def authorize(request: Request) -> Response:
    store = _store(request)
    q = request.query_params
    app = store.apps_by_client_id.get(q.get("client_id", ""))
    redirect_uri = q.get("redirect_uri", "")
    if app is None:
        return _oauth_error("BAD_CLIENT_ID", "Unknown client_id", "invalid_client")
    if not redirect_uri or (app.redirect_uris and redirect_uri not in app.redirect_uris):
        return _oauth_error("BAD_REDIRECT_URI", "redirect_uri does not match", "invalid_request")
    portal_raw = request.path_params.get("portalId") or q.get("portal_id") or str(app.portal_id)
    try:
        portal_id = int(portal_raw)
    except ValueError:
        portal_id = -1
    if portal_id not in store.portals:
        return _oauth_error("BAD_PORTAL", f"Portal {portal_raw} does not exist", "invalid_request")
    required = _scopes(q.get("scope", ""))
    optional = _scopes(q.get("optional_scope", ""))
    unknown = [s for s in required if s not in ALL_SCOPES]
    state = q.get("state")
    if unknown:
        params = {"error": "invalid_scope", "error_description": f"Unknown scopes: {unknown}"}
        if state is not None:
            params["state"] = state
        return RedirectResponse(_with_query(redirect_uri, params), status_code=302)
    granted = frozenset([*required, *(s for s in optional if s in ALL_SCOPES)])
    code = store.issue_auth_code(app, portal_id, redirect_uri, granted)
    params = {"code": code.code}
    if state is not None:
        params["state"] = state
    return RedirectResponse(_with_query(redirect_uri, params), status_code=302)


async def token(request: Request) -> Response:
    store = _store(request)
    raw = (await request.body()).decode("utf-8", "replace")
    form = dict(parse_qsl(raw, keep_blank_values=True))
    if request.url.path.startswith("/oauth/v1/"):
        # v1 also accepts parameters in the query string; v3 wants everything in the body.
        for key, value in request.query_params.items():
            form.setdefault(key, value)
    grant = form.get("grant_type", "")
    app = store.apps_by_client_id.get(form.get("client_id", ""))
    if app is None:
        return _oauth_error("BAD_CLIENT_ID", "missing or unknown client id", "invalid_client")
    if form.get("client_secret") != app.client_secret:
        return _oauth_error(
            "BAD_CLIENT_SECRET", "missing or invalid client secret", "invalid_client"
        )
    if grant == "authorization_code":
        return _exchange_code(store, app, form)
    if grant == "refresh_token":
        return _refresh(store, app, form)
    return _oauth_error(
        "UNSUPPORTED_GRANT_TYPE", f"grant_type {grant!r} is not supported", "unsupported_grant_type"
    )


def _exchange_code(store: SandboxStore, app: OAuthApp, form: dict[str, str]) -> Response:
    with store.lock:
        code = store.auth_codes.pop(form.get("code", ""), None)
    if code is None or code.app_id != app.app_id or code.expires_ms < store.now_ms():
        return _oauth_error("BAD_AUTH_CODE", "missing or unknown auth code")
    if form.get("redirect_uri") != code.redirect_uri:
        return _oauth_error("BAD_REDIRECT_URI", "redirect_uri does not match the authorize call")
    issued = store.issue_oauth_tokens(app, code.portal_id, code.scopes)
    return _issued(store, issued)


def _refresh(store: SandboxStore, app: OAuthApp, form: dict[str, str]) -> Response:
    ref = store.refresh_tokens.get(form.get("refresh_token", ""))
    if ref is None or ref.app_id != app.app_id or ref.portal_id not in store.portals:
        return _oauth_error("BAD_REFRESH_TOKEN", "missing or unknown refresh token")
    issued = store.issue_oauth_tokens(app, ref.portal_id, ref.scopes, refresh_token=ref.token)
    return _issued(store, issued)


def _issued(store: SandboxStore, issued: Token) -> Response:
    assert issued.expires_ms is not None
    body = {
        "token_type": "bearer",
        "access_token": issued.token,
        "refresh_token": issued.refresh_token,
        "expires_in": max(0, (issued.expires_ms - store.now_ms()) // 1000),
        "hub_id": issued.portal_id,
        "user_id": issued.user_id,
        "scopes": sorted(issued.scopes),
        "token_use": "access_token",
    }
    return JSON(body)


def _not_found(kind: str) -> Response:
    return JSON(
        {
            "status": "error",
            "message": f"{kind} not found",
            "correlationId": correlation_id(),
            "category": "OBJECT_NOT_FOUND",
        },
        status_code=404,
    )


async def access_token_info(request: Request) -> Response:
    store = _store(request)
    tok = store.tokens.get(request.path_params["token"])
    if tok is None or tok.kind != "oauth" or tok.expires_ms is None:
        return _not_found("access token")
    now = store.now_ms()
    if tok.expires_ms <= now:
        return JSON(
            {
                "status": "error",
                "message": "The access token is expired",
                "correlationId": correlation_id(),
                "category": "EXPIRED_AUTHENTICATION",
            },
            status_code=400,
        )
    portal = store.portals.get(tok.portal_id)
    return JSON(
        {
            "token": tok.token,
            "user": f"user{tok.user_id}@sandbox.hubspot.local",
            "hub_domain": portal.domain if portal else "",
            "hub_id": tok.portal_id,
            "app_id": tok.app_id,
            "user_id": tok.user_id,
            "scopes": sorted(tok.scopes),
            "expires_in": (tok.expires_ms - now) // 1000,
            "token_type": "access",
            "is_private_distribution": False,
        }
    )


async def refresh_token_info(request: Request) -> Response:
    store = _store(request)
    ref = store.refresh_tokens.get(request.path_params["token"])
    if ref is None:
        return _not_found("refresh token")
    portal = store.portals.get(ref.portal_id)
    return JSON(
        {
            "token": ref.token,
            "user": f"user{ref.user_id}@sandbox.hubspot.local",
            "hub_domain": portal.domain if portal else "",
            "hub_id": ref.portal_id,
            "client_id": ref.client_id,
            "user_id": ref.user_id,
            "scopes": sorted(ref.scopes),
            "token_type": "refresh",
        }
    )


async def delete_refresh_token(request: Request) -> Response:
    store = _store(request)
    with store.lock:
        ref = store.refresh_tokens.pop(request.path_params["token"], None)
    if ref is None:
        return _not_found("refresh token")
    # Only the refresh token goes; access tokens already issued stay valid (contract §6).
    return Response(status_code=204)


routes: list[Route] = [
    Route("/oauth/authorize", authorize, methods=["GET"]),
    Route("/oauth/{portalId:int}/authorize", authorize, methods=["GET"]),
    Route("/oauth/v1/token", token, methods=["POST"]),
    Route("/oauth/v3/token", token, methods=["POST"]),
    Route("/oauth/v1/access-tokens/{token}", access_token_info, methods=["GET"]),
    Route("/oauth/v1/refresh-tokens/{token}", refresh_token_info, methods=["GET"]),
    Route("/oauth/v1/refresh-tokens/{token}", delete_refresh_token, methods=["DELETE"]),
]
