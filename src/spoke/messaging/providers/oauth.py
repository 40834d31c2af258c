"""OAuth 2.0 access tokens for a Google service account, through `google-auth`.

`google.oauth2.service_account.Credentials` signs the JWT-bearer assertion and exchanges it
at the key file's `token_uri` (so the FCM emulator's key files work unchanged; the
assertion's `aud` stays Google's endpoint, shared/reference/stack-facts.md §3). Its own
transports need `requests` or `aiohttp`, neither of which Spoke depends on, so
`HttpxRequest` implements google-auth's documented transport interface
(`google.auth.transport.Request` returning a `google.auth.transport.Response`) over a
synchronous httpx client. A refresh is blocking I/O plus an RSA signature: `AccessTokens`
runs it in a thread, one at a time, only when the credentials are no longer valid
(google-auth treats a token as stale 3 min 45 s before it expires).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.transport
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt
from google.oauth2 import service_account

from spoke.messaging.providers.base import ProviderConfigError

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REQUIRED = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")


class _Response(google.auth.transport.Response):
    def __init__(self, answer: httpx.Response) -> None:
        self._answer = answer

    @property
    def status(self) -> int:
        return self._answer.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._answer.headers

    @property
    def data(self) -> bytes:
        return self._answer.content


class HttpxRequest(google.auth.transport.Request):
    """google-auth's transport interface over a synchronous `httpx.Client`."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        try:
            answer = self._client.request(
                method,
                url,
                content=body,
                headers=dict(headers or {}),
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            # google-auth ships py.typed but leaves these signatures unannotated.
            problem = f"{type(exc).__name__}: {exc}"
            raise google.auth.exceptions.TransportError(problem) from exc  # type: ignore[no-untyped-call]
        return _Response(answer)


_client_lock = threading.Lock()
_shared_client: httpx.Client | None = None


def _token_client() -> httpx.Client:
    """One client per process: building one loads a CA bundle (tens of ms), and token
    requests are rare (one an hour per account)."""
    global _shared_client
    with _client_lock:
        if _shared_client is None:
            # No keep-alive: a token request comes once an hour, an idle socket would linger.
            _shared_client = httpx.Client(
                timeout=15, limits=httpx.Limits(max_keepalive_connections=0)
            )
        return _shared_client


@dataclass(frozen=True)
class ServiceAccount:
    """A checked service-account key file: what the API shows, and what signs."""

    project_id: str
    client_email: str
    private_key_id: str
    token_uri: str
    signer: crypt.RSASigner

    @classmethod
    def from_info(cls, info: Mapping[str, Any], *, stored: bool = False) -> ServiceAccount:
        """Read a service-account key file's JSON.

        `stored=True` is for a key Spoke checked when it was saved: RSA key validation (the
        expensive part of loading, ~100 ms) is skipped then, so a send starts sooner.

        Raises:
            ValueError: a field is missing or the private key is not a readable RSA PEM key.
        """
        missing = [k for k in _REQUIRED if not isinstance(info.get(k), str) or not info[k]]
        if missing:
            raise ValueError(f"the service-account key lacks {', '.join(missing)}")
        if info["type"] != "service_account":
            raise ValueError("`type` must be `service_account`")
        if not str(info["token_uri"]).startswith(("https://", "http://")):
            raise ValueError("`token_uri` must be an http(s) URL")
        try:
            key = serialization.load_pem_private_key(
                info["private_key"].encode(), password=None, unsafe_skip_rsa_key_validation=stored
            )
        except (ValueError, TypeError) as exc:
            raise ValueError("`private_key` is not a readable PEM private key") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("`private_key` must be an RSA key")
        return cls(
            project_id=info["project_id"],
            client_email=info["client_email"],
            private_key_id=info["private_key_id"],
            token_uri=info["token_uri"],
            signer=crypt.RSASigner(key, info["private_key_id"]),  # type: ignore[no-untyped-call]
        )

    def credentials(self, scopes: tuple[str, ...]) -> service_account.Credentials:
        """google-auth credentials for `scopes`, as `from_service_account_info` builds them
        (the key is parsed once, here, not by google-auth again)."""
        return service_account.Credentials(  # type: ignore[no-untyped-call]
            self.signer,
            self.client_email,
            self.token_uri,
            scopes=list(scopes),
            project_id=self.project_id,
        )


_RECHECK_SECONDS = 1.0
_credentials_lock = threading.Lock()
_credentials_cache: dict[tuple[str, str, str, str], service_account.Credentials] = {}
_CACHE_SIZE = 256


def _shared_credentials(account: ServiceAccount, scope: str) -> service_account.Credentials:
    """One credentials object per key and scope in this process: a token stays good for an
    hour, so a worker's next fan-out starts without fetching one."""
    cache_key = (account.client_email, account.private_key_id, account.token_uri, scope)
    with _credentials_lock:
        found = _credentials_cache.get(cache_key)
        if found is None:
            if len(_credentials_cache) >= _CACHE_SIZE:
                _credentials_cache.pop(next(iter(_credentials_cache)))
            found = _credentials_cache[cache_key] = account.credentials((scope,))
        return found


class AccessTokens:
    """A cached access token for one account and scope, refreshed by one task at a time."""

    def __init__(self, account: ServiceAccount, scope: str) -> None:
        self._credentials = _shared_credentials(account, scope)
        self._lock = asyncio.Lock()
        # (token, monotonic deadline): asking google-auth whether the token is still valid
        # reads the wall clock through its helpers, which cost ~5% of a fan-out's loop when
        # done for every message; once a second is as good (it keeps minutes of margin).
        self._trusted: tuple[str, float] | None = None

    def invalidate(self, token: str) -> None:
        """FCM refused `token` (401): the next `get()` fetches a new one."""
        self._trusted = None
        if self._credentials.token == token:
            self._credentials.token = None

    async def get(self) -> str:
        """The current token, fetching a new one when needed.

        Raises:
            ProviderConfigError: the token endpoint refused the key, or never answered.
        """
        trusted = self._trusted
        now = time.monotonic()
        if trusted is not None and now < trusted[1]:
            return trusted[0]
        if not self._credentials.valid:
            async with self._lock:
                if not self._credentials.valid:
                    await asyncio.to_thread(self._refresh)
        token = self._credentials.token
        assert isinstance(token, str)
        self._trusted = (token, now + _RECHECK_SECONDS)
        return token

    def _refresh(self) -> None:
        try:
            self._credentials.refresh(HttpxRequest(_token_client()))  # type: ignore[no-untyped-call]
        except google.auth.exceptions.RefreshError as exc:
            raise ProviderConfigError(
                f"the token endpoint refused the service-account key: {exc.args[0]}"
            ) from exc
        except google.auth.exceptions.TransportError as exc:
            raise ProviderConfigError(f"the token endpoint failed: {exc}") from exc
