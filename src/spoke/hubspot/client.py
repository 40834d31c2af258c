"""`HubSpotClient`: one portal's HubSpot API over an injected `httpx.AsyncClient`.

Each HubSpot area is an attribute (`client.contacts`, `client.associations`, …) whose methods
map one to one to the endpoints Spoke uses. Every call goes through `HubSpotClient.request`,
which:

1. waits for the portal's rate-limit bucket (the search bucket for CRM search);
2. sends with the provider's bearer token;
3. on 401 asks the token provider to refresh, once, and resends;
4. on 429 waits `Retry-After` (or the policy's default), pausing the shared bucket so other
   workers hold off too, and resends: HubSpot refuses a 429 before doing anything, so this
   is safe for every call;
5. on 5xx, 423 and transport errors resends only idempotent calls (reads, updates, upserts,
   archives, and creates that carry an idempotency key), with exponential backoff and jitter;
6. raises the mapped `HubSpotResponseError` (see `errors.py`) when it gives up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import anyio
import httpx
import orjson
import structlog
from pydantic import BaseModel

from spoke.hubspot._http import SendFailed, send
from spoke.hubspot.associations import AssociationsAPI
from spoke.hubspot.auth import PrivateAppToken, TokenProvider
from spoke.hubspot.crm import ObjectsAPI
from spoke.hubspot.errors import HubSpotResponseError, RateLimited, error_from_response
from spoke.hubspot.events import EventsAPI
from spoke.hubspot.lists import ListsAPI
from spoke.hubspot.models import SEARCH_RESULT_CAP
from spoke.hubspot.oauth import DEFAULT_BASE_URL
from spoke.hubspot.properties import OwnersAPI, PropertiesAPI
from spoke.hubspot.ratelimit import BucketKind, RateLimiter, RetryPolicy

__all__ = ["DEFAULT_BASE_URL", "HubSpotClient", "QueryValue"]

log = structlog.get_logger(__name__)

QueryValue = str | int | float | bool | list[str] | None
_ModelT = TypeVar("_ModelT", bound=BaseModel)

# Statuses worth resending an idempotent call for (hubspot-contract.md §1.1: 477 comes with
# Retry-After; 521-526 are Cloudflare's origin errors in front of HubSpot).
_RETRY_STATUSES = frozenset({423, 477, 500, 502, 503, 504, 521, 522, 523, 524, 525, 526})


def _query(params: Mapping[str, QueryValue] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, list):
            if value:
                out[name] = ",".join(value)
        else:
            out[name] = str(value)
    return out


class HubSpotClient:
    """A typed client for one HubSpot portal.

    Args:
        http: the httpx client to send with (its transport decides real network, the sandbox
            over HTTP, or `httpx.ASGITransport` in-process). The caller owns and closes it.
        auth: a token provider, or a private-app token string.
        base_url: the API root: `https://api.hubapi.com` or a sandbox URL.
        limiter: the portal's shared rate limiter; None sends without client-side pacing.
        retry: when and how to resend failed calls.
        sleep: how to wait between attempts; injectable for tests.
        search_result_cap: how many results HubSpot serves per search query (10,000);
            `search_all` opens a new `hs_object_id` window before passing it.

    Attributes:
        contacts: contacts (CRM objects v3, plus merge).
        companies: companies (CRM objects v3, plus merge).
        meetings: meeting engagements.
        notes: note engagements.
        associations: associations v4.
        properties: property definitions v3.
        owners: owners v3.
        lists: lists v3 (manual lists and membership).
        events: custom behavioural events (definitions and send).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        auth: TokenProvider | str,
        base_url: str = DEFAULT_BASE_URL,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        search_result_cap: int = SEARCH_RESULT_CAP,
    ) -> None:
        self._http = http
        self.search_result_cap = search_result_cap
        self.auth: TokenProvider = PrivateAppToken(auth) if isinstance(auth, str) else auth
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self.contacts = ObjectsAPI(self, "contacts")
        self.companies = ObjectsAPI(self, "companies")
        self.meetings = ObjectsAPI(self, "meetings")
        self.notes = ObjectsAPI(self, "notes")
        self.associations = AssociationsAPI(self)
        self.properties = PropertiesAPI(self)
        self.owners = OwnersAPI(self)
        self.lists = ListsAPI(self)
        self.events = EventsAPI(self)

    def objects(self, object_type: str) -> ObjectsAPI:
        """CRM objects v3 for any object type (e.g. `deals`, `tickets`, `2-12345`).

        Args:
            object_type: the type's name or id as HubSpot's paths take it.

        Returns:
            An `ObjectsAPI` for that type.
        """
        return ObjectsAPI(self, object_type)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        idempotent: bool,
        bucket: BucketKind | None = "general",
        ok: tuple[int, ...] = (200, 201, 204, 207),
    ) -> httpx.Response:
        """Send one API call with pacing, auth, retries and error mapping.

        Args:
            method: HTTP method.
            path: path under the base URL, starting with `/`.
            params: query parameters; lists are comma-joined, None values dropped.
            json: a JSON-serialisable body, or None for no body.
            idempotent: whether resending after a 5xx or a lost response is safe.
            bucket: the rate-limit bucket to take from, or None for calls HubSpot exempts.
            ok: statuses that count as success.

        Returns:
            The response (body read).

        Raises:
            HubSpotResponseError: HubSpot answered with an error (a subclass per status and
                category; see `errors.py`) and no retry was possible or left.
            HubSpotTransportError: the network failed and no retry was possible or left.
        """
        content = None if json is None else orjson.dumps(json)
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        query = _query(params)
        url = f"{self.base_url}{path}"
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            if self.limiter is not None and bucket is not None:
                await self.limiter.acquire(bucket)
            token = await self.auth.access_token()
            request = self._http.build_request(
                method,
                url,
                params=query,
                content=content,
                headers={**headers, "Authorization": f"Bearer {token}"},
            )
            try:
                response = await send(self._http, request)
            except SendFailed as exc:
                if attempt < self.retry.max_attempts and (idempotent or not exc.sent):
                    log.warning("hubspot.retry", method=method, path=path, error=str(exc))
                    await self._sleep(self.retry.backoff(attempt))
                    continue
                raise
            if response.status_code in ok:
                return response
            error = error_from_response(response)
            if response.status_code == 401 and not refreshed:
                refreshed = True
                if await self.auth.refresh_after_unauthorized(token):
                    attempt -= 1
                    continue
            delay = await self._retry_delay(error, attempt, idempotent, bucket)
            if delay is None:
                raise error
            log.warning(
                "hubspot.retry",
                method=method,
                path=path,
                status=response.status_code,
                delay=round(delay, 3),
                correlation_id=error.correlation_id,
            )
            await self._sleep(delay)

    async def _retry_delay(
        self,
        error: HubSpotResponseError,
        attempt: int,
        idempotent: bool,
        bucket: BucketKind | None,
    ) -> float | None:
        if attempt >= self.retry.max_attempts:
            return None
        if isinstance(error, RateLimited):
            wait = self.retry.rate_limit_wait(error.policy, error.retry_after)
            if wait is not None and self.limiter is not None and bucket is not None:
                await self.limiter.pause(bucket, wait)
            return wait
        if not idempotent or error.status_code not in _RETRY_STATUSES:
            return None
        if error.status_code == 423:
            return max(self.retry.locked_wait, error.retry_after_header or 0.0)
        if error.retry_after_header is not None:
            return min(error.retry_after_header, self.retry.max_retry_after)
        return self.retry.backoff(attempt)

    async def request_model(
        self,
        model: type[_ModelT],
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        json: Any = None,
        idempotent: bool,
        bucket: BucketKind | None = "general",
    ) -> _ModelT:
        """`request`, then parse the JSON body into `model`.

        Args:
            model: the pydantic model of the success body.
            method: HTTP method.
            path: path under the base URL.
            params: query parameters.
            json: the JSON body.
            idempotent: whether resending is safe.
            bucket: the rate-limit bucket.

        Returns:
            The parsed body.

        Raises:
            HubSpotResponseError: see `request`.
            HubSpotTransportError: see `request`.
        """
        response = await self.request(
            method, path, params=params, json=json, idempotent=idempotent, bucket=bucket
        )
        return model.model_validate_json(response.content)
