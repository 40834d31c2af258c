"""Who is calling. Server keys (`X-Api-Key` + `X-Secret-Key`, or HTTP Basic with the same
pair) act as a member of one workspace; the client key (`X-Client-Key`) only opens
`/v1/client/...` routes. Every query downstream is scoped to `caller.workspace_id`."""

from __future__ import annotations

import hmac
from typing import Annotated

import structlog
from fastapi import Depends, Header, Request, Security
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBasicCredentials
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from spoke.core import idempotency
from spoke.core.crypto import hmac_sha256_hex
from spoke.core.db import after_commit, session_scope
from spoke.core.errors import Unauthenticated
from spoke.deps import AppServices, Db
from spoke.workspaces import service
from spoke.workspaces.key_cache import API_KEYS
from spoke.workspaces.models import Workspace
from spoke.workspaces.service import Caller

log = structlog.get_logger("spoke.auth")

_api_key = APIKeyHeader(
    name="X-Api-Key",
    auto_error=False,
    scheme_name="ApiKey",
    description="Public key id of a server key pair.",
)
_secret_key = APIKeyHeader(
    name="X-Secret-Key",
    auto_error=False,
    scheme_name="SecretKey",
    description="Secret of the server key pair.",
)
_basic = HTTPBasic(
    auto_error=False,
    scheme_name="Basic",
    description="The same pair as HTTP Basic: key id as user, secret as password.",
)
_client_key = APIKeyHeader(
    name="X-Client-Key",
    auto_error=False,
    scheme_name="ClientKey",
    description="The workspace's public client key, for app calls.",
)


class MissingCredentials(Unauthenticated):
    code = "missing_credentials"


class InvalidIdentityToken(Unauthenticated):
    code = "invalid_identity_token"


async def server_caller(
    request: Request,
    session: Db,
    services: AppServices,
    key_id: str | None = Security(_api_key),
    secret: str | None = Security(_secret_key),
    basic: HTTPBasicCredentials | None = Security(_basic),
) -> Caller:
    # Async: a key checked in the last few seconds is answered from `key_cache` without a
    # query, and so without the threadpool trip a sync dependency costs every request.
    if key_id and secret:
        pair = (key_id, secret)
    elif basic is not None:
        pair = (basic.username, basic.password)
    else:
        raise MissingCredentials(
            "Send X-Api-Key and X-Secret-Key headers, or HTTP Basic with the same pair.",
            headers={"WWW-Authenticate": 'Basic realm="spoke"'},
        )
    max_age = services.settings.api.key_cache_seconds
    caller = API_KEYS.get(*pair, max_age=max_age) if max_age > 0 else None
    if caller is None:
        caller = await run_in_threadpool(_authenticate, request, session, *pair)
        API_KEYS.remember(*pair, caller)
    request.state.caller = caller
    return caller


def _authenticate(request: Request, session: Session, key_id: str, secret: str) -> Caller:
    caller = service.authenticate(session, key_id, secret)
    used = session.info.pop("spoke.key_used", None)
    if used is not None:
        sessions = request.app.state.sessions

        def touch() -> None:
            try:
                with session_scope(sessions) as writer:
                    service.touch_key(writer, used)
            except Exception:  # a missed "last used" stamp must never fail a request
                log.warning("api_key.touch_failed", key_id=used, exc_info=True)

        after_commit(session, touch)
    return caller


def client_workspace(
    request: Request, session: Db, client_key: str | None = Security(_client_key)
) -> Workspace:
    if not client_key:
        raise MissingCredentials("Send the workspace's client key as X-Client-Key.")
    workspace = service.authenticate_client(session, client_key)
    request.state.caller = Caller(
        workspace_id=workspace.id, member_id=None, role=None, key_id="client"
    )
    return workspace


def verify_identity(
    services: AppServices, workspace: Workspace, external_id: str, token: str | None
) -> None:
    """When the workspace demands it, the app must prove it speaks for `external_id`."""
    if not workspace.identity_verification:
        return
    expected = hmac_sha256_hex(service.identity_secret(services.encryptor, workspace), external_id)
    if token is None or not hmac.compare_digest(token.lower(), expected):
        raise InvalidIdentityToken(
            "This workspace requires X-Identity-Token = hex HMAC-SHA256 of the external id "
            "with the workspace's identity secret."
        )


async def _body_digest(request: Request) -> str:
    return idempotency.request_hash(request, await request.body())


async def _guard(
    request: Request, session: Db, workspace_id: str, digest: str, key: str | None
) -> None:
    # Async, with a thread only when there is a key to look up: most writes carry none, and
    # a sync dependency would cost every one of them a round trip through the threadpool.
    if key is not None:
        request.state.idempotency = await run_in_threadpool(
            idempotency.check, session, workspace_id, key, digest
        )


async def server_idempotency(
    request: Request,
    session: Db,
    caller: Annotated[Caller, Depends(server_caller)],
    digest: Annotated[str, Depends(_body_digest)],
    key: Annotated[
        str | None,
        Header(
            alias=idempotency.HEADER,
            description=(
                "Makes a retried write apply once: the first response is stored and replayed."
            ),
        ),
    ] = None,
) -> None:
    await _guard(request, session, caller.workspace_id, digest, key)


async def client_idempotency(
    request: Request,
    session: Db,
    workspace: Annotated[Workspace, Depends(client_workspace)],
    digest: Annotated[str, Depends(_body_digest)],
    key: Annotated[str | None, Header(alias=idempotency.HEADER)] = None,
) -> None:
    await _guard(request, session, workspace.id, digest, key)


ServerCaller = Annotated[Caller, Depends(server_caller)]
ClientWorkspace = Annotated[Workspace, Depends(client_workspace)]
Idempotent = Depends(server_idempotency)
ClientIdempotent = Depends(client_idempotency)


async def admin_caller(caller: ServerCaller) -> Caller:
    caller.require_admin()
    return caller


AdminCaller = Annotated[Caller, Depends(admin_caller)]
