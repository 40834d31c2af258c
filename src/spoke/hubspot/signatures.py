"""Verification of the signatures HubSpot puts on requests it sends to an app.

Three versions exist (hubspot-contract.md §5, "Signatures"):

- v1 (webhook deliveries): hex(SHA-256(client_secret + body)) in `X-HubSpot-Signature`.
- v2 (workflow webhooks, custom workflow actions, CRM cards):
  hex(SHA-256(client_secret + METHOD + URI + body)) in `X-HubSpot-Signature`.
- v3 (all outgoing requests): base64(HMAC-SHA256(client_secret, METHOD + URI + body + timestamp))
  in `X-HubSpot-Signature-v3`, with the epoch-milliseconds timestamp in
  `X-HubSpot-Request-Timestamp`; requests older than 5 minutes must be refused.

All comparisons are constant-time. `verify_request` picks the version from the headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

from spoke.hubspot.errors import InvalidSignature

__all__ = [
    "MAX_TIMESTAMP_AGE",
    "sign_v1",
    "sign_v2",
    "sign_v3",
    "verify_request",
    "verify_v1",
    "verify_v2",
    "verify_v3",
]

MAX_TIMESTAMP_AGE = 300.0
"""Seconds a v3 request stays acceptable (HubSpot's SDK: `MAX_ALLOWED_TIMESTAMP = 300`)."""

# v3 signs the URI with these escapes decoded (HubSpot's "validating requests" doc); the `?`
# that starts the query is literal already, so decoding `%3F` elsewhere is what the doc means.
_V3_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def _decode_v3_uri(uri: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(uri):
        chunk = uri[i : i + 3].upper()
        if uri[i] == "%" and chunk in _V3_DECODE:
            out.append(_V3_DECODE[chunk])
            i += 3
        else:
            out.append(uri[i])
            i += 1
    return "".join(out)


def sign_v1(client_secret: str, body: bytes | str) -> str:
    """Compute a v1 signature.

    Args:
        client_secret: the app's client secret.
        body: the raw request body.

    Returns:
        The lowercase hex SHA-256 digest.
    """
    return hashlib.sha256(client_secret.encode("utf-8") + _as_bytes(body)).hexdigest()


def sign_v2(client_secret: str, method: str, uri: str, body: bytes | str) -> str:
    """Compute a v2 signature.

    Args:
        client_secret: the app's client secret.
        method: the HTTP method, e.g. `POST`.
        uri: the full URL HubSpot called, exactly (scheme, host, path, query in order).
        body: the raw request body (empty for a GET).

    Returns:
        The lowercase hex SHA-256 digest.
    """
    source = (client_secret + method.upper() + uri).encode("utf-8") + _as_bytes(body)
    return hashlib.sha256(source).hexdigest()


def sign_v3(client_secret: str, method: str, uri: str, body: bytes | str, timestamp: str) -> str:
    """Compute a v3 signature.

    Args:
        client_secret: the app's client secret (the HMAC key).
        method: the HTTP method.
        uri: the full public URL HubSpot called; the escapes HubSpot decodes are decoded here.
        body: the raw request body.
        timestamp: the `X-HubSpot-Request-Timestamp` header value (epoch milliseconds).

    Returns:
        The base64 HMAC-SHA256 digest.
    """
    message = (method.upper() + _decode_v3_uri(uri)).encode("utf-8")
    message += _as_bytes(body) + timestamp.encode("utf-8")
    digest = hmac.new(client_secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _check(expected: str, given: str | None, version: str) -> None:
    if not given or not hmac.compare_digest(expected.encode(), given.strip().encode()):
        raise InvalidSignature(f"{version} signature does not match")


def verify_v1(client_secret: str, body: bytes | str, signature: str | None) -> None:
    """Check a v1 signature.

    Args:
        client_secret: the app's client secret.
        body: the raw request body.
        signature: the `X-HubSpot-Signature` header.

    Raises:
        InvalidSignature: the signature is missing or wrong.
    """
    _check(sign_v1(client_secret, body), signature, "v1")


def verify_v2(
    client_secret: str, method: str, uri: str, body: bytes | str, signature: str | None
) -> None:
    """Check a v2 signature.

    Args:
        client_secret: the app's client secret.
        method: the HTTP method.
        uri: the full URL HubSpot called.
        body: the raw request body.
        signature: the `X-HubSpot-Signature` header.

    Raises:
        InvalidSignature: the signature is missing or wrong.
    """
    _check(sign_v2(client_secret, method, uri, body), signature, "v2")


def verify_v3(
    client_secret: str,
    method: str,
    uri: str,
    body: bytes | str,
    signature: str | None,
    timestamp: str | None,
    *,
    max_age: float = MAX_TIMESTAMP_AGE,
    now: float | None = None,
) -> None:
    """Check a v3 signature and its timestamp window.

    Args:
        client_secret: the app's client secret.
        method: the HTTP method.
        uri: the full public URL HubSpot called.
        body: the raw request body.
        signature: the `X-HubSpot-Signature-v3` header.
        timestamp: the `X-HubSpot-Request-Timestamp` header (epoch milliseconds).
        max_age: how far (seconds) the timestamp may be from now, either way.
        now: the current epoch time in seconds; defaults to the system clock.

    Raises:
        InvalidSignature: the timestamp is missing, malformed or outside the window, or the
            signature is missing or wrong.
    """
    if timestamp is None:
        raise InvalidSignature("v3 request has no X-HubSpot-Request-Timestamp")
    try:
        sent_at = int(timestamp) / 1000
    except ValueError:
        raise InvalidSignature("v3 timestamp is not epoch milliseconds") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > max_age:
        raise InvalidSignature("v3 timestamp is outside the allowed window")
    _check(sign_v3(client_secret, method, uri, body, timestamp), signature, "v3")


def verify_request(
    client_secret: str,
    method: str,
    uri: str,
    body: bytes | str,
    headers: Mapping[str, str],
    *,
    max_age: float = MAX_TIMESTAMP_AGE,
    now: float | None = None,
) -> str:
    """Check whichever signature a HubSpot request carries, preferring v3.

    Args:
        client_secret: the app's client secret.
        method: the HTTP method.
        uri: the full public URL HubSpot called.
        body: the raw request body.
        headers: the request headers; looked up case-insensitively.
        max_age: the v3 timestamp window in seconds.
        now: the current epoch time in seconds; defaults to the system clock.

    Returns:
        The version that was verified: `v3`, `v2` or `v1`.

    Raises:
        InvalidSignature: no signature header, an unknown version, or a failed check.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    if "x-hubspot-signature-v3" in lowered:
        verify_v3(
            client_secret,
            method,
            uri,
            body,
            lowered["x-hubspot-signature-v3"],
            lowered.get("x-hubspot-request-timestamp"),
            max_age=max_age,
            now=now,
        )
        return "v3"
    signature = lowered.get("x-hubspot-signature")
    if signature is None:
        raise InvalidSignature("request carries no HubSpot signature")
    version = lowered.get("x-hubspot-signature-version", "v1").strip().lower()
    if version == "v1":
        verify_v1(client_secret, body, signature)
    elif version == "v2":
        verify_v2(client_secret, method, uri, body, signature)
    else:
        raise InvalidSignature(f"unknown signature version {version!r}")
    return version
