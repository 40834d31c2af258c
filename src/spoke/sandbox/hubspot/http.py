"""The request wrapper every HubSpot API route goes through.

For each request, in order: authenticate the bearer token (401), inject faults (latency, spurious
429, 5xx), apply the portal's rate limits (429), run the handler under the portal lock, render any
`SandboxError` in HubSpot's shape, then count and log the request. Handlers are plain synchronous
functions `(Call) -> Response`: the sandbox is CPU-bound and lock-protected, so nothing awaits
inside them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import errors, limits
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.schema import ObjectType, resolve_object_type
from spoke.sandbox.hubspot.store import Portal, SandboxStore, Token

JSONDict = dict[str, Any]
log = logging.getLogger(__name__)


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def no_content() -> Response:
    return Response(status_code=204)


def error_response(err: SandboxError) -> Response:
    status, body, headers = errors.render(err)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class Call:
    """One authenticated API request as a handler sees it."""

    __slots__ = ("body", "now", "path", "portal", "query", "request", "store", "token")

    def __init__(
        self, request: Request, store: SandboxStore, portal: Portal, token: Token, body: bytes
    ) -> None:
        self.request = request
        self.store = store
        self.portal = portal
        self.token = token
        self.path: dict[str, str] = request.path_params
        self.query = request.query_params
        self.body = body
        self.now = store.now_ms()

    def json(self) -> Any:
        """The request body as JSON.

        Raises:
            SandboxError: 400 when the body is missing or not JSON.
        """
        if not self.body:
            raise errors.validation("Invalid input JSON: no request body")
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise errors.validation(f"Invalid input JSON on line 1: {exc}") from exc

    def json_object(self) -> JSONDict:
        data = self.json()
        if not isinstance(data, dict):
            raise errors.validation("Invalid input JSON: expected an object")
        return data

    def object_type(self, key: str = "objectType") -> ObjectType:
        segment = self.path[key]
        otype = resolve_object_type(segment)
        if otype is None:
            raise errors.validation(f"Unable to infer object type from: {segment}")
        return otype

    def require(self, any_of: tuple[str, ...]) -> None:
        """403 MISSING_SCOPES unless the token holds one of the scopes."""
        scopes = self.token.scopes
        for scope in any_of:
            if scope in scopes:
                return
        raise errors.missing_scopes(any_of)

    def q_int(self, name: str, default: int, *, maximum: int | None = None) -> int:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise errors.validation(f"{name} must be an integer; got {raw!r}") from None
        if value < 0:
            raise errors.validation(f"{name} must not be negative")
        if maximum is not None and value > maximum:
            return maximum
        return value

    def q_bool(self, name: str) -> bool:
        return self.query.get(name, "false").lower() == "true"

    def q_list(self, name: str) -> list[str] | None:
        """A comma-separated (or repeated) query parameter; None when absent."""
        values = self.query.getlist(name)
        if not values:
            return None
        out: list[str] = []
        for value in values:
            out.extend(v for v in value.split(",") if v)
        return out

    @property
    def source(self) -> tuple[str, str | None]:
        return ("INTEGRATION", str(self.token.app_id))

    def link(self, after: str) -> str:
        req = self.request
        query = [(k, v) for k, v in req.query_params.multi_items() if k != "after"]
        query.append(("after", after))
        return f"{self.store.config.public_base_url}{req.url.path}?{urlencode(query)}"


Handler = Callable[[Call], Response]


def api_route(method: str, path: str, handler: Handler, *, limit: str = "api") -> Route:
    """A HubSpot API route: bearer auth, faults, rate limits (`api`, `search`, `events` — the
    custom event send limit — or `none`)."""
    key = f"{method} {path}"

    async def endpoint(request: Request) -> Response:
        store: SandboxStore = request.app.state.store
        started = time.perf_counter()
        token, failure = authenticate(store, request)
        if token is None:
            assert failure is not None
            return error_response(failure)
        portal = store.portals.get(token.portal_id)
        if portal is None:
            return error_response(errors.unauthenticated())
        headers: dict[str, str] | None = None
        response: Response
        try:
            faults = portal.settings.faults
            if faults.active:
                await _inject_faults(portal)
            if portal.settings.rate_limits.enabled and limit != "none":
                with portal.lock:
                    if limit == "search":
                        limits.check_search(portal, token, store.now_ms())
                    elif limit == "events":
                        limits.check_event_send(portal)
                    else:
                        headers = limits.check_api(portal, token, store.now_ms())
            body = b"" if method == "GET" else await request.body()
            with portal.lock:
                response = handler(Call(request, store, portal, token, body))
                after = faults.error_after_processing_rate
                if after and response.status_code < 300 and portal.rng.random() < after:
                    raise SandboxError(
                        500, "internal error after processing (injected)", "INTERNAL_ERROR"
                    )
        except SandboxError as err:
            response = error_response(err)
        except Exception:
            # A sandbox bug: log it, and still answer in HubSpot's shape so clients see a 500.
            log.exception("sandbox.handler_error", extra={"endpoint": key})
            response = error_response(
                SandboxError(500, "internal error in the HubSpot sandbox", "INTERNAL_ERROR")
            )
        if headers:
            response.headers.update(headers)
        status = response.status_code
        with portal.lock:
            portal.counters[key] += 1
            portal.status_counters[str(status)] += 1
            portal.log.append(
                (
                    time.time(),
                    method,
                    request.url.path,
                    key,
                    status,
                    (time.perf_counter() - started) * 1000,
                )
            )
        return response

    return Route(path, endpoint, methods=[method], name=key)


def authenticate(store: SandboxStore, request: Request) -> tuple[Token | None, SandboxError | None]:
    header = request.headers.get("authorization", "")
    if not header.startswith(("Bearer ", "bearer ")):
        return None, errors.unauthenticated()
    token = store.tokens.get(header[7:].strip())
    if token is None:
        return None, errors.unauthenticated()
    if token.expires_ms is not None:
        now = store.now_ms()
        if now >= token.expires_ms:
            return None, expired(store, token, now)
    return token, None


def expired(store: SandboxStore, token: Token, now: int) -> SandboxError:
    from spoke.sandbox.hubspot.timefmt import iso_ms

    assert token.expires_ms is not None
    portal = store.portals.get(token.portal_id)
    category = portal.settings.expired_token_category if portal else "EXPIRED_AUTHENTICATION"
    minutes = max(0, (now - token.expires_ms) // 60_000)
    return SandboxError(
        401,
        f"The OAuth token used to make this call expired {minutes} minute(s) ago.",
        category,
        context={"expire_time": [iso_ms(token.expires_ms)]},
    )


async def _inject_faults(portal: Portal) -> None:
    faults = portal.settings.faults
    rng = portal.rng
    delay = faults.latency_ms + (rng.random() * faults.jitter_ms if faults.jitter_ms else 0.0)
    if delay > 0:
        await asyncio.sleep(delay / 1000)
    if faults.spurious_429_rate and rng.random() < faults.spurious_429_rate:
        raise limits.rate_limited(
            "TEN_SECONDLY_ROLLING", "You have reached your ten_secondly_rolling limit.", {}, None
        )
    if faults.error_rate and rng.random() < faults.error_rate:
        status = rng.choice(faults.error_statuses or [500])
        raise SandboxError(
            status,
            "internal error (injected by the sandbox)",
            "INTERNAL_ERROR" if status == 500 else "SERVICE_UNAVAILABLE",
        )
