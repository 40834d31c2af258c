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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import google.auth.exceptions
import google.auth.transport
import httpx
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
            _shared_client = httpx.Client(timeout=15)
        return _shared_client


@dataclass(frozen=True)
class ServiceAccount:
    """A checked service-account key file: what the API shows, and what signs."""

    project_id: str
    client_email: str
    private_key_id: str
    token_uri: str
    info: Mapping[str, Any]

    @classmethod
    def from_info(cls, info: Mapping[str, Any]) -> ServiceAccount:
        """Read a service-account key file's JSON.

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
        account = cls(
            project_id=info["project_id"],
            client_email=info["client_email"],
            private_key_id=info["private_key_id"],
            token_uri=info["token_uri"],
            info=dict(info),
        )
        account.credentials(())  # parses the key now, so a bad one is refused at once
        return account

    def credentials(self, scopes: tuple[str, ...]) -> service_account.Credentials:
        try:
            credentials: service_account.Credentials = (
                service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                    self.info, scopes=list(scopes)
                )
            )
        except (ValueError, TypeError, IndexError) as exc:
            raise ValueError("`private_key` is not a readable RSA PEM private key") from exc
        return credentials


class AccessTokens:
    """A cached access token for one account and scope, refreshed by one task at a time."""

    def __init__(self, account: ServiceAccount, scope: str) -> None:
        self._credentials = account.credentials((scope,))
        self._lock = asyncio.Lock()

    def invalidate(self, token: str) -> None:
        """FCM refused `token` (401): the next `get()` fetches a new one."""
        if self._credentials.token == token:
            self._credentials.token = None

    async def get(self) -> str:
        """The current token, fetching a new one when needed.

        Raises:
            ProviderConfigError: the token endpoint refused the key, or never answered.
        """
        if not self._credentials.valid:
            async with self._lock:
                if not self._credentials.valid:
                    await asyncio.to_thread(self._refresh)
        token = self._credentials.token
        assert isinstance(token, str)
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
