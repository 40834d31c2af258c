"""The FCM emulator's routes and runner.

Wire contract: shared/reference/messaging.md §2 (HTTP v1 send and its error bodies) and
shared/reference/stack-facts.md §3 (the JWT-bearer token exchange google-auth performs).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from spoke.sandbox.fcm.report import Reporter
from spoke.sandbox.fcm.store import TOKEN_STATES, Fault, FcmStore, Report

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
SCOPES = (
    "https://www.googleapis.com/auth/firebase.messaging",
    "https://www.googleapis.com/auth/cloud-platform",
)
MAX_PAYLOAD = 4096
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_FCM_CODES = {
    401: "THIRD_PARTY_AUTH_ERROR",
    403: "SENDER_ID_MISMATCH",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def fcm_error(
    status: int,
    message: str,
    *,
    fcm_code: str | None = None,
    field: str | None = None,
) -> Response:
    """An error body shaped like Google's: `{"error": {code, message, status, details}}`."""
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append({"@type": _FCM_ERROR, "errorCode": fcm_code})
    if field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        )
    error = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
        "details": details,
    }
    return _json({"error": error}, status)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _oauth_error(error: str, description: str) -> Response:
    return _json({"error": error, "error_description": description}, 400)


async def token(request: Request) -> Response:
    """The OAuth token endpoint a service-account key's `token_uri` points at."""
    store: FcmStore = request.app.state.store
    form = await request.form()
    if form.get("grant_type") != JWT_BEARER:
        return _oauth_error("unsupported_grant_type", "Only the JWT-bearer grant is supported.")
    assertion = form.get("assertion")
    if not isinstance(assertion, str) or assertion.count(".") != 2:
        return _oauth_error("invalid_grant", "The assertion is not a JWT.")
    head64, claims64, sig64 = assertion.split(".")
    try:
        header = orjson.loads(_b64decode(head64))
        claims = orjson.loads(_b64decode(claims64))
        signature = _b64decode(sig64)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return _oauth_error("invalid_grant", "The assertion is not a readable JWT.")
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return _oauth_error("invalid_grant", "The assertion is not a readable JWT.")
    account = store.accounts.get(str(claims.get("iss")))
    if header.get("alg") != "RS256" or account is None:
        return _oauth_error("invalid_grant", "Invalid JWT Signature.")
    if header.get("kid") not in (None, account.key_id):
        return _oauth_error("invalid_grant", "Invalid JWT Signature.")
    try:
        account.public_key.verify(
            signature, f"{head64}.{claims64}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return _oauth_error("invalid_grant", "Invalid JWT Signature.")
    now = time.time()
    token_url = str(request.url)
    if claims.get("aud") not in (GOOGLE_TOKEN_AUDIENCE, token_url):
        return _oauth_error("invalid_grant", "Invalid JWT: audience.")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int) or not isinstance(iat, int) or exp < now or iat > now + 300:
        return _oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token.")
    if not set(str(claims.get("scope", "")).split()) & set(SCOPES):
        return _oauth_error("invalid_scope", "No FCM scope was asked for.")
    store.count("tokens_issued")
    return _json(
        {
            "access_token": store.issue_token(account.client_email),
            "expires_in": store.token_lifetime,
            "token_type": "Bearer",
        }
    )


def _check_message(message: Any) -> tuple[str | None, Response | None]:
    if not isinstance(message, dict):
        return None, fcm_error(400, "`message` is required.", field="message")
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if len(targets) != 1:
        return None, fcm_error(
            400, "Exactly one of token, topic or condition is required.", field="message"
        )
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        return None, fcm_error(400, "`data` must map strings to strings.", field="message.data")
    if targets[0] != "token":
        return None, None
    device = message["token"]
    if not isinstance(device, str) or not device:
        return None, fcm_error(400, "`token` must be a string.", field="message.token")
    return device, None


def _error_bytes(
    status: int, message: str, *, fcm_code: str | None = None, field: str | None = None
) -> tuple[int, bytes, dict[str, str] | None]:
    response = fcm_error(status, message, fcm_code=fcm_code, field=field)
    return status, bytes(response.body), None


def handle_send(
    store: FcmStore, reporter: Reporter, project: str, authorization: str, raw: bytes
) -> tuple[int, bytes, dict[str, str] | None]:
    """`POST /v1/projects/{project}/messages:send` after the latency: status, body, headers."""
    account = store.account_for(authorization[7:]) if authorization.startswith("Bearer ") else None
    if account is None:
        return _error_bytes(401, "Request had invalid authentication credentials.")
    if account.project_id != project:
        return _error_bytes(403, f"Permission denied on project {project}.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error_bytes(400, "Invalid JSON payload received.")
    if not isinstance(body, dict):
        return _error_bytes(400, "Invalid JSON payload received.")
    device, problem = _check_message(body.get("message"))
    if problem is not None:
        return problem.status_code, bytes(problem.body), None
    fault = store.take_fault(device or "")
    if fault is not None:
        store.count(f"fault_{fault.status}")
        headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after else None
        response = fcm_error(
            fault.status,
            "Injected failure.",
            fcm_code=fault.error_code or _FCM_CODES.get(fault.status),
        )
        return fault.status, bytes(response.body), headers
    if len(raw) > MAX_PAYLOAD:
        return _error_bytes(
            400, "Message is too big.", fcm_code="INVALID_ARGUMENT", field="message"
        )
    if device is not None:
        state = store.state_of(device)
        if state == "unregistered":
            store.count("unregistered")
            return _error_bytes(404, "Requested entity was not found.", fcm_code="UNREGISTERED")
        if state == "invalid":
            store.count("invalid")
            return _error_bytes(
                400,
                "The registration token is not a valid FCM registration token",
                fcm_code="INVALID_ARGUMENT",
            )
    if body.get("validate_only") or body.get("validateOnly"):
        return 200, orjson.dumps({"name": f"projects/{project}/messages/fake_message_id"}), None
    store.count("accepted")
    name = store.record(project, body["message"])
    if store.report is not None:
        reporter.submit(body["message"])
    return 200, orjson.dumps({"name": name}), None


# -- admin API ---------------------------------------------------------------------------


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


async def create_account(request: Request) -> Response:
    """Create a service account; answers with its key file, `token_uri` pointing here."""
    store: FcmStore = request.app.state.store
    body = await _body(request)
    project = body.get("project_id")
    if not isinstance(project, str) or not project:
        return _json({"error": "project_id is required"}, 400)
    token_uri = str(request.base_url).rstrip("/") + "/token"
    return _json(store.create_account(project, token_uri), 201)


async def set_token_state(request: Request) -> Response:
    store: FcmStore = request.app.state.store
    state = (await _body(request)).get("state")
    if state not in TOKEN_STATES:
        return _json({"error": f"state must be one of {', '.join(TOKEN_STATES)}"}, 400)
    store.token_states[request.path_params["token"]] = state
    return _json({"token": request.path_params["token"], "state": state})


async def add_fault(request: Request) -> Response:
    store: FcmStore = request.app.state.store
    body = await _body(request)
    status, count = body.get("status"), body.get("count", 1)
    retry_after, device = body.get("retry_after"), body.get("token")
    error_code = body.get("error_code")
    if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int):
        return _json({"error": "status (4xx/5xx) and count are required"}, 400)
    if retry_after is not None and not isinstance(retry_after, int | float):
        return _json({"error": "retry_after is seconds"}, 400)
    if error_code is not None and not isinstance(error_code, str):
        return _json({"error": "error_code is a string"}, 400)
    store.faults.append(Fault(status, count, retry_after, device, error_code))
    return _json({"faults": len(store.faults)}, 201)


async def config(request: Request) -> Response:
    store: FcmStore = request.app.state.store
    body = await _body(request)
    if isinstance(body.get("latency_ms"), int | float):
        store.latency_ms = float(body["latency_ms"])
    if body.get("default_token_state") in TOKEN_STATES:
        store.default_token_state = body["default_token_state"]
    if isinstance(body.get("token_lifetime"), int):
        store.token_lifetime = body["token_lifetime"]
    if "report" in body:
        store.report = _report(body["report"])
    return _json(
        {
            "latency_ms": store.latency_ms,
            "default_token_state": store.default_token_state,
            "token_lifetime": store.token_lifetime,
            "report": None if store.report is None else {**store.report.__dict__},
        }
    )


def _report(raw: Any) -> Report | None:
    """`{"spoke_url", "client_key", "identity_secret"?, "delivered"?, "clicked"?}` or null."""
    if not isinstance(raw, dict):
        return None
    url, key = raw.get("spoke_url"), raw.get("client_key")
    if not isinstance(url, str) or not isinstance(key, str):
        return None
    secret = raw.get("identity_secret")
    delivered, clicked = raw.get("delivered", 1.0), raw.get("clicked", 0.0)
    return Report(
        url,
        key,
        secret if isinstance(secret, str) else None,
        float(delivered) if isinstance(delivered, int | float) else 1.0,
        float(clicked) if isinstance(clicked, int | float) else 0.0,
    )


async def messages(request: Request) -> Response:
    """What was accepted, optionally for one `token`, newest last."""
    store: FcmStore = request.app.state.store
    device = request.query_params.get("token")
    found = [m for m in store.messages if device is None or m.get("token") == device]
    return _json({"count": len(found), "messages": found})


async def shown(request: Request) -> Response:
    """What one device's notification tray shows (`FcmStore.shown`), oldest first."""
    store: FcmStore = request.app.state.store
    tray = store.shown(request.path_params["token"])
    return _json({"count": len(tray), "notifications": tray})


async def clear_messages(request: Request) -> Response:
    request.app.state.store.messages.clear()
    return Response(status_code=204)


async def stats(request: Request) -> Response:
    store: FcmStore = request.app.state.store
    return _json(
        {
            **store.counts,
            "stored_messages": len(store.messages),
            "first_received_at": store.first_received_at,
            "last_received_at": store.last_received_at,
        }
    )


async def reset(request: Request) -> Response:
    request.app.state.store.reset()
    return Response(status_code=204)


_SEND_PREFIX = "/v1/projects/"
_SEND_SUFFIX = "/messages:send"


class FcmApp:
    """The emulator's ASGI app. `messages:send` is served by a bare ASGI handler: it is
    the one hot route (a fan-out benchmark measures against it), and Starlette's request
    and response objects cost more than the handler's own work; the rest is Starlette."""

    def __init__(self, store: FcmStore, reporter: Reporter, admin: Starlette) -> None:
        self.store = store
        self._reporter = reporter
        self._admin = admin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not path.startswith(_SEND_PREFIX)
            or not path.endswith(_SEND_SUFFIX)
        ):
            await self._admin(scope, receive, send)
            return
        store = self.store
        store.count("requests")
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        if store.latency_ms:
            await asyncio.sleep(store.latency_ms / 1000)
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        project = path[len(_SEND_PREFIX) : -len(_SEND_SUFFIX)]
        status, body, extra = handle_send(
            store, self._reporter, project, authorization, b"".join(chunks)
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_fcm_app(store: FcmStore | None = None) -> FcmApp:
    """The emulator as an ASGI app over `store` (a fresh one when omitted)."""
    the_store = store if store is not None else FcmStore()
    reporter = Reporter(the_store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await reporter.stop()

    admin = Starlette(
        lifespan=lifespan,
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/_fcm/service-accounts", create_account, methods=["POST"]),
            Route("/_fcm/tokens/{token}/shown", shown, methods=["GET"]),
            Route("/_fcm/tokens/{token:path}", set_token_state, methods=["PUT"]),
            Route("/_fcm/faults", add_fault, methods=["POST"]),
            Route("/_fcm/config", config, methods=["PUT"]),
            Route("/_fcm/messages", messages, methods=["GET"]),
            Route("/_fcm/messages", clear_messages, methods=["DELETE"]),
            Route("/_fcm/stats", stats, methods=["GET"]),
            Route("/_fcm/reset", reset, methods=["POST"]),
        ],
    )
    admin.state.store = the_store
    admin.state.reporter = reporter
    return FcmApp(the_store, reporter, admin)


def serve(host: str = "127.0.0.1", port: int = 8200, *, latency_ms: float = 0.0) -> None:
    """Run the emulator with uvicorn until interrupted; prints a ready service-account key."""
    import uvicorn

    from spoke.sandbox.whole_requests import WholeRequestsProtocol

    store = FcmStore(latency_ms=latency_ms)
    key = store.create_account("demo-project", f"http://{host}:{port}/token")
    sys.stderr.write(
        f"FCM emulator on http://{host}:{port} (latency {latency_ms:g} ms)\n"
        f"  service-account key for project demo-project:\n{orjson.dumps(key).decode()}\n"
        f"  received messages: http://{host}:{port}/_fcm/messages\n"
    )
    uvicorn.run(
        create_fcm_app(store),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=WholeRequestsProtocol,
    )
