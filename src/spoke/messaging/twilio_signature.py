"""Twilio's request signature (`X-Twilio-Signature`), as Twilio documents it for webhooks:
base64 of HMAC-SHA1, keyed with the account's auth token, over the full URL Twilio was given
followed by every POST parameter, sorted by name, as name + value with no separators."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence

SIGNATURE_HEADER = "X-Twilio-Signature"


def signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify(
    auth_token: str, urls: Sequence[str], params: Sequence[tuple[str, str]], given: str
) -> bool:
    """True when `given` signs `params` for one of `urls` (the URL Spoke handed Twilio, and
    the URL the request arrived at, which differ behind a proxy that rewrites hosts)."""
    return any(
        hmac.compare_digest(signature(auth_token, url, params), given) for url in urls if given
    )
