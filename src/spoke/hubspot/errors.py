"""Exceptions raised by the HubSpot client.

Every exception the client raises derives from `HubSpotError`::

    HubSpotError
      HubSpotTransportError        network failure or timeout; no HubSpot answer to read
      HubSpotResponseError         HubSpot answered with an error (status, category, correlation_id)
        BadRequest                 400
          ValidationFailed         400 VALIDATION_ERROR; `errors` holds the per-field details
        Unauthorized               401; the token is wrong or expired: the connection needs re-auth
        Forbidden                  403
          MissingScopes            403 MISSING_SCOPES; `scopes` lists what the app lacks
        ObjectNotFound             404
        Conflict                   409
          ContactExists            409 on contact create; `existing_id` holds the email
        Locked                     423; HubSpot locks a record for about 2 s on heavy writes
        RateLimited                429; `policy` (e.g. TEN_SECONDLY_ROLLING, DAILY), `retry_after`
        ServerError                5xx
        OAuthError                 400 from the token endpoint; `error` is e.g. BAD_REFRESH_TOKEN
      InvalidSignature             a webhook or workflow-action request failed signature checks

httpx exceptions never escape the client: they are translated once, in `client.py`, into
`HubSpotTransportError` with the original chained (`raise ... from exc`).

`error_from_response` is the single place that reads HubSpot's error body (the shape in
hubspot-contract.md §1.1: `status, message, correlationId, category, subCategory, context,
errors, links`; every field may be missing).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx
import orjson

__all__ = [
    "BadRequest",
    "Conflict",
    "ContactExists",
    "Forbidden",
    "HubSpotError",
    "HubSpotResponseError",
    "HubSpotTransportError",
    "InvalidSignature",
    "Locked",
    "MissingScopes",
    "OAuthError",
    "ObjectNotFound",
    "RateLimited",
    "ServerError",
    "Unauthorized",
    "ValidationFailed",
    "error_from_response",
    "parse_retry_after",
]

# HubSpot puts the id of the contact holding the email in the 409 message only
# (hubspot-contract.md §1.1, "Duplicate email on create").
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")


class HubSpotError(Exception):
    """Base class of every error raised by `spoke.hubspot`."""


class HubSpotTransportError(HubSpotError):
    """The request did not get an HTTP answer: connection refused, reset, or timed out.

    Attributes:
        method: HTTP method of the failed request.
        url: full URL of the failed request.
    """

    def __init__(self, message: str, *, method: str, url: str) -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class InvalidSignature(HubSpotError):
    """A request claiming to come from HubSpot failed signature verification."""


class HubSpotResponseError(HubSpotError):
    """HubSpot answered with a non-success status.

    Attributes:
        status_code: the HTTP status.
        category: HubSpot's `category` (e.g. `VALIDATION_ERROR`), or None if absent.
        sub_category: HubSpot's `subCategory`, if any.
        correlation_id: HubSpot's `correlationId`; quote it to HubSpot support.
        context: HubSpot's `context` mapping (lists of strings per key).
        errors: the `errors` detail list as sent.
        body: the decoded body (a dict when it was JSON, else the raw text).
        headers: the response headers.
    """

    status_codes: ClassVar[tuple[int, ...]] = ()

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        category: str | None = None,
        sub_category: str | None = None,
        correlation_id: str | None = None,
        context: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | str | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.category = category
        self.sub_category = sub_category
        self.correlation_id = correlation_id
        self.context: dict[str, Any] = context or {}
        self.errors: list[dict[str, Any]] = errors or []
        self.body = body
        self.headers = headers if headers is not None else httpx.Headers()

    @property
    def retry_after_header(self) -> float | None:
        """The response's `Retry-After` in seconds, if it had one."""
        return parse_retry_after(self.headers.get("retry-after"))

    def __str__(self) -> str:
        parts = [f"{self.status_code}"]
        if self.category:
            parts.append(self.category)
        parts.append(self.message)
        if self.correlation_id:
            parts.append(f"(correlationId {self.correlation_id})")
        return " ".join(parts)


class BadRequest(HubSpotResponseError):
    """400: HubSpot rejected the request as malformed."""


class ValidationFailed(BadRequest):
    """400 `VALIDATION_ERROR`: a property value, filter or limit was invalid.

    `errors` holds HubSpot's detail list, e.g.
    `[{"message": "...", "code": "INVALID_INTEGER", "context": {"propertyName": ["x"]}}]`.
    """


class Unauthorized(HubSpotResponseError):
    """401: the token is missing, unknown or expired."""


class Forbidden(HubSpotResponseError):
    """403: the token is valid but not allowed to make this call."""


class MissingScopes(Forbidden):
    """403 `MISSING_SCOPES`: the app lacks scopes for this call.

    Attributes:
        scopes: the scopes HubSpot named as required (from
            `errors[].context.requiredGranularScopes`), possibly empty.
    """

    def __init__(self, message: str, *, scopes: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.scopes = scopes


class ObjectNotFound(HubSpotResponseError):
    """404: the record, property, list or definition does not exist."""


class Conflict(HubSpotResponseError):
    """409: the write conflicts with existing data."""


class ContactExists(Conflict):
    """409 on contact create: another contact already has this email.

    Attributes:
        existing_id: id of the contact that holds the email, parsed from
            `Contact already exists. Existing ID: N`.
    """

    def __init__(self, message: str, *, existing_id: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.existing_id = existing_id


class Locked(HubSpotResponseError):
    """423: the record is locked by concurrent writes; HubSpot advises waiting 2 s."""


class RateLimited(HubSpotResponseError):
    """429: a rate limit was hit.

    Attributes:
        policy: HubSpot's `policyName`: `TEN_SECONDLY_ROLLING`, `DAILY`, `SECONDLY` (search),
            or None when the body did not say.
        retry_after: seconds to wait from the `Retry-After` header, or None if absent.
    """

    def __init__(
        self, message: str, *, policy: str | None, retry_after: float | None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.policy = policy
        self.retry_after = retry_after


class ServerError(HubSpotResponseError):
    """5xx: HubSpot failed; safe to retry only if the call is idempotent."""


class OAuthError(HubSpotResponseError):
    """The OAuth token endpoint refused a grant.

    Attributes:
        error: HubSpot's token error code, e.g. `BAD_REFRESH_TOKEN`, `BAD_AUTH_CODE`,
            `BAD_CLIENT_ID`, `BAD_REDIRECT_URI` (the body's `status` field), or the RFC 6749
            `error` when only that is present.
    """

    def __init__(self, message: str, *, error: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.error = error


def parse_retry_after(value: str | None) -> float | None:
    """Read a `Retry-After` header as seconds.

    Args:
        value: the header value: delta-seconds (possibly fractional) or an HTTP date.

    Returns:
        Seconds to wait (never negative), or None if the header is absent or unreadable.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _decode_body(response: httpx.Response) -> dict[str, Any] | str:
    try:
        decoded = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text
    return decoded if isinstance(decoded, dict) else response.text


def _required_scopes(errors: list[dict[str, Any]]) -> list[str]:
    scopes: list[str] = []
    for detail in errors:
        context = detail.get("context")
        if not isinstance(context, dict):
            continue
        for key in ("requiredGranularScopes", "requiredScopes"):
            values = context.get(key)
            if isinstance(values, list):
                scopes.extend(str(v) for v in values if str(v) not in scopes)
    return scopes


def error_from_response(response: httpx.Response, *, oauth: bool = False) -> HubSpotResponseError:
    """Build the exception that matches a HubSpot error response.

    Args:
        response: a response whose status is not 2xx (the body must have been read).
        oauth: True when the response comes from `/oauth/v1/token`, whose 400s use
            `status` for the error code instead of `category`.

    Returns:
        The most specific `HubSpotResponseError` subclass for the status and body.
    """
    body = _decode_body(response)
    fields: dict[str, Any] = body if isinstance(body, dict) else {}
    status = response.status_code
    message = str(fields.get("message") or (body if isinstance(body, str) and body else ""))
    message = message or f"HubSpot answered {status}"
    category = fields.get("category") or fields.get("errorType")
    raw_errors = fields.get("errors")
    errors = [e for e in raw_errors if isinstance(e, dict)] if isinstance(raw_errors, list) else []
    context = fields.get("context")
    common: dict[str, Any] = {
        "status_code": status,
        "category": str(category) if category is not None else None,
        "sub_category": _opt_str(fields.get("subCategory")),
        "correlation_id": _opt_str(fields.get("correlationId")),
        "context": context if isinstance(context, dict) else None,
        "errors": errors,
        "body": body,
        "headers": response.headers,
    }
    if oauth and 400 <= status < 500 and status not in (401, 403, 429):
        code = fields.get("status") if fields.get("status") not in (None, "error") else None
        code = code or fields.get("error") or "OAUTH_ERROR"
        return OAuthError(message, error=str(code), **common)
    if status == 429:
        return RateLimited(
            message,
            policy=_opt_str(fields.get("policyName")),
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            **common,
        )
    if status == 400:
        if category == "VALIDATION_ERROR":
            return ValidationFailed(message, **common)
        return BadRequest(message, **common)
    if status == 401:
        return Unauthorized(message, **common)
    if status == 403:
        if category == "MISSING_SCOPES":
            return MissingScopes(message, scopes=_required_scopes(errors), **common)
        return Forbidden(message, **common)
    if status == 404:
        return ObjectNotFound(message, **common)
    if status == 409:
        match = _EXISTING_ID.search(message)
        if match is not None:
            return ContactExists(message, existing_id=match.group(1), **common)
        return Conflict(message, **common)
    if status == 423:
        return Locked(message, **common)
    if status >= 500:
        return ServerError(message, **common)
    return HubSpotResponseError(message, **common)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)
