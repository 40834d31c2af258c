"""Where the client gets its bearer token: a private-app token, or OAuth tokens it refreshes.

OAuth access tokens live 30 minutes (hubspot-contract.md §6). `OAuthTokenProvider` refreshes a
token shortly before it expires, and once more when HubSpot answers 401 anyway (revoked early,
clock skew). Concurrent requests share one refresh. HubSpot keeps the same refresh token across
refreshes, so two processes refreshing at once both get valid access tokens; the `on_refresh`
callback persists whichever arrives.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio

from spoke.hubspot.models import TokenResponse
from spoke.hubspot.oauth import OAuthClient

__all__ = ["OAuthTokenProvider", "OAuthTokens", "PrivateAppToken", "TokenProvider"]


class TokenProvider(Protocol):
    """Supplies the bearer token for each request."""

    async def access_token(self) -> str:
        """Return a token to send now.

        Raises:
            HubSpotError: a needed refresh failed.
        """
        ...

    async def refresh_after_unauthorized(self, rejected: str) -> bool:
        """React to HubSpot answering 401 to `rejected`.

        Args:
            rejected: the token that was refused.

        Returns:
            True if a different token is now available and the call should be tried again.

        Raises:
            HubSpotError: a refresh was attempted and failed.
        """
        ...


class PrivateAppToken:
    """A private app's static `pat-…` token; it cannot be refreshed.

    Args:
        token: the token.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "PrivateAppToken(***)"

    async def access_token(self) -> str:
        return self._token

    async def refresh_after_unauthorized(self, rejected: str) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class OAuthTokens:
    """An OAuth token pair and when the access token expires.

    Attributes:
        access_token: the bearer token.
        refresh_token: the long-lived token used to get new access tokens.
        expires_at: epoch seconds at which the access token stops working.
    """

    access_token: str
    refresh_token: str
    expires_at: float

    def __repr__(self) -> str:
        return f"OAuthTokens(access_token=***, refresh_token=***, expires_at={self.expires_at})"

    @classmethod
    def from_response(
        cls, response: TokenResponse, *, refresh_token: str | None = None, now: float | None = None
    ) -> OAuthTokens:
        """Build tokens from a token endpoint answer.

        Args:
            response: the answer of a code exchange or refresh.
            refresh_token: the refresh token to keep if the answer carries none.
            now: epoch seconds the answer was received; defaults to the clock.

        Returns:
            The tokens.

        Raises:
            ValueError: there is no refresh token at all.
        """
        kept = response.refresh_token or refresh_token
        if not kept:
            raise ValueError("the token response has no refresh token")
        received = time.time() if now is None else now
        return cls(
            access_token=response.access_token,
            refresh_token=kept,
            expires_at=received + response.expires_in,
        )


RefreshCallback = Callable[[OAuthTokens], Awaitable[None] | None]


class OAuthTokenProvider:
    """OAuth tokens of one installed portal, refreshed as needed.

    Args:
        oauth: the app's token client.
        tokens: the current tokens (from storage or a code exchange).
        on_refresh: called with the new tokens after each refresh, sync or async; persist
            them here. An exception it raises propagates to the request.
        refresh_margin: refresh this many seconds before expiry.
        clock: epoch seconds; injectable for tests.
    """

    def __init__(
        self,
        oauth: OAuthClient,
        tokens: OAuthTokens,
        *,
        on_refresh: RefreshCallback | None = None,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._oauth = oauth
        self._tokens = tokens
        self._on_refresh = on_refresh
        self._margin = refresh_margin
        self._clock = clock
        self._lock = anyio.Lock()

    @property
    def tokens(self) -> OAuthTokens:
        """The tokens in use now."""
        return self._tokens

    def _fresh(self) -> bool:
        return self._tokens.expires_at - self._margin > self._clock()

    async def _refresh(self) -> None:
        answer = await self._oauth.refresh(self._tokens.refresh_token)
        self._tokens = OAuthTokens.from_response(
            answer, refresh_token=self._tokens.refresh_token, now=self._clock()
        )
        if self._on_refresh is not None:
            result = self._on_refresh(self._tokens)
            if inspect.isawaitable(result):
                await result

    async def access_token(self) -> str:
        if self._fresh():
            return self._tokens.access_token
        async with self._lock:
            if not self._fresh():
                await self._refresh()
            return self._tokens.access_token

    async def refresh_after_unauthorized(self, rejected: str) -> bool:
        async with self._lock:
            if self._tokens.access_token != rejected:
                # Another request refreshed while this one was in flight.
                return True
            await self._refresh()
            return True
