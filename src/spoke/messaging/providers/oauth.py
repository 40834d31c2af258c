"""OAuth 2.0 access tokens for a Google service account (the JWT-bearer grant, RFC 7523).

This is what `google-auth`'s `service_account.Credentials.refresh()` does, written out
because google-auth is not a dependency here: an RS256-signed assertion is POSTed as a
form to the key file's `token_uri`, which answers `{access_token, expires_in}`. As in
google-auth, the assertion's `aud` is always Google's token endpoint, whatever
`token_uri` says (shared/reference/stack-facts.md §3), and a token is reused until
3 min 45 s before it expires.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from spoke.messaging.providers.base import ProviderConfigError

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # noqa: S105 (a URL)
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REFRESH_MARGIN = 225.0
_REQUIRED = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    private_key_id: str
    token_uri: str
    key: rsa.RSAPrivateKey

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ServiceAccount:
        """Read a service-account key file's JSON.

        Raises:
            ValueError: a field is missing or the private key is not an RSA PEM key.
        """
        missing = [k for k in _REQUIRED if not isinstance(info.get(k), str) or not info[k]]
        if missing:
            raise ValueError(f"the service-account key lacks {', '.join(missing)}")
        if info["type"] != "service_account":
            raise ValueError("`type` must be `service_account`")
        if not str(info["token_uri"]).startswith(("https://", "http://")):
            raise ValueError("`token_uri` must be an http(s) URL")
        try:
            key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError("`private_key` is not a readable PEM private key") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("`private_key` must be an RSA key")
        return cls(
            project_id=info["project_id"],
            client_email=info["client_email"],
            private_key_id=info["private_key_id"],
            token_uri=info["token_uri"],
            key=key,
        )

    def assertion(self, scope: str, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.private_key_id}
        claims = {
            "iss": self.client_email,
            "scope": scope,
            "aud": GOOGLE_TOKEN_AUDIENCE,
            "iat": issued,
            "exp": issued + 3600,
        }
        signing_input = f"{_b64(orjson.dumps(header))}.{_b64(orjson.dumps(claims))}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


class AccessTokens:
    """A cached access token for one account and scope, refreshed by one task at a time."""

    def __init__(self, account: ServiceAccount, scope: str, *, attempts: int = 3) -> None:
        self._account = account
        self._scope = scope
        self._attempts = attempts
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def invalidate(self, token: str) -> None:
        if self._token == token:
            self._token = None

    async def get(self) -> str:
        """The current token, fetching a new one when needed.

        Raises:
            ProviderConfigError: the token endpoint refused the credentials, or never answered.
        """
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        async with self._lock:
            if self._token is not None and time.monotonic() < self._expires:
                return self._token
            self._token, lifetime = await self._fetch()
            self._expires = time.monotonic() + max(lifetime - _REFRESH_MARGIN, 1.0)
            return self._token

    async def _fetch(self) -> tuple[str, float]:
        form = {"grant_type": JWT_BEARER, "assertion": self._account.assertion(self._scope)}
        last = "no answer"
        async with httpx.AsyncClient(timeout=15) as client:
            for attempt in range(self._attempts):
                try:
                    response = await client.post(self._account.token_uri, data=form)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code < 500:
                        return self._parse(response)
                    last = f"HTTP {response.status_code}"
                await asyncio.sleep(0.2 * 2**attempt)
        raise ProviderConfigError(f"the token endpoint failed: {last}")

    @staticmethod
    def _parse(response: httpx.Response) -> tuple[str, float]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            error = body.get("error", f"HTTP {response.status_code}")
            detail = body.get("error_description", "")
            raise ProviderConfigError(f"the token endpoint refused the key: {error} {detail}")
        expires_in = body.get("expires_in", 3600)
        return body["access_token"], float(expires_in) if isinstance(expires_in, int) else 3600.0
