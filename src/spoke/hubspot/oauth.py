"""HubSpot OAuth v1: the authorize URL, token grants and token info (hubspot-contract.md §6).

These calls need the app's client id and secret, not a portal token, so they live apart from
`HubSpotClient`: installing an app exchanges a code before any portal client exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel

from spoke.hubspot._http import send
from spoke.hubspot.errors import error_from_response
from spoke.hubspot.models import AccessTokenInfo, RefreshTokenInfo, TokenResponse

__all__ = ["DEFAULT_APP_URL", "DEFAULT_BASE_URL", "OAuthClient"]

DEFAULT_BASE_URL = "https://api.hubapi.com"
DEFAULT_APP_URL = "https://app.hubspot.com"

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class OAuthClient:
    """Token endpoints of one OAuth app.

    Args:
        http: the httpx client to send with.
        client_id: the app's client id.
        client_secret: the app's client secret.
        base_url: the API root (`https://api.hubapi.com` or a sandbox).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        client_id: str,
        client_secret: str,
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        self._http = http
        self.client_id = client_id
        self._client_secret = client_secret
        self.base_url = base_url.rstrip("/")

    def authorize_url(
        self,
        *,
        redirect_uri: str,
        scopes: Iterable[str],
        optional_scopes: Iterable[str] = (),
        state: str | None = None,
        app_url: str = DEFAULT_APP_URL,
        portal_id: int | None = None,
    ) -> str:
        """Build the URL that sends a user to HubSpot's consent screen.

        Args:
            redirect_uri: where HubSpot sends the browser back with `code` and `state`.
            scopes: required scopes.
            optional_scopes: scopes granted only if the portal has them.
            state: an opaque value echoed back; use it against CSRF.
            app_url: HubSpot's app root (the sandbox serves `/oauth/authorize` itself).
            portal_id: pin the install to one portal (`/oauth/{portalId}/authorize`).

        Returns:
            The authorize URL.
        """
        params = {"client_id": self.client_id, "redirect_uri": redirect_uri}
        params["scope"] = " ".join(scopes)
        optional = " ".join(optional_scopes)
        if optional:
            params["optional_scope"] = optional
        if state is not None:
            params["state"] = state
        path = f"/oauth/{portal_id}/authorize" if portal_id is not None else "/oauth/authorize"
        return f"{app_url.rstrip('/')}{path}?{urlencode(params, quote_via=quote)}"

    async def _token(self, form: dict[str, str]) -> TokenResponse:
        request = self._http.build_request(
            "POST",
            f"{self.base_url}/oauth/v1/token",
            data=form,
            headers={"Accept": "application/json"},
        )
        response = await send(self._http, request)
        if response.status_code != 200:
            raise error_from_response(response, oauth=True)
        return TokenResponse.model_validate_json(response.content)

    async def exchange_code(
        self, code: str, *, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenResponse:
        """Exchange an authorization code for tokens (`grant_type=authorization_code`).

        Args:
            code: the `code` HubSpot appended to the redirect.
            redirect_uri: the same redirect URI the authorize URL used.
            code_verifier: the PKCE verifier, if the authorize request used a challenge.

        Returns:
            The access token, refresh token and lifetime (and `hub_id` when HubSpot sends it).

        Raises:
            OAuthError: HubSpot refused the code (`BAD_AUTH_CODE`, `BAD_REDIRECT_URI`, …).
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the request failed on the network.
        """
        form = {
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "redirect_uri": redirect_uri,
            "code": code,
        }
        if code_verifier is not None:
            form["code_verifier"] = code_verifier
        return await self._token(form)

    async def refresh(self, refresh_token: str) -> TokenResponse:
        """Get a new access token (`grant_type=refresh_token`).

        Args:
            refresh_token: the portal's refresh token.

        Returns:
            The new tokens; `refresh_token` is the same one HubSpot already issued.

        Raises:
            OAuthError: the refresh token is unknown or revoked (`BAD_REFRESH_TOKEN`): the
                connection must be re-installed.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the request failed on the network.
        """
        return await self._token(
            {
                "grant_type": "refresh_token",
                "client_id": self.client_id,
                "client_secret": self._client_secret,
                "refresh_token": refresh_token,
            }
        )

    async def _get(self, path: str, model: type[_ModelT]) -> _ModelT:
        request = self._http.build_request("GET", f"{self.base_url}{path}")
        response = await send(self._http, request)
        if response.status_code != 200:
            raise error_from_response(response)
        return model.model_validate_json(response.content)

    async def access_token_info(self, access_token: str) -> AccessTokenInfo:
        """Read an access token's portal, app, user and scopes.

        Args:
            access_token: the token to describe.

        Returns:
            Its metadata (`hub_id` is the portal id).

        Raises:
            ObjectNotFound: the token is unknown or expired (HubSpot answers 404).
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the request failed on the network.
        """
        return await self._get(
            f"/oauth/v1/access-tokens/{quote(access_token, safe='')}", AccessTokenInfo
        )

    async def refresh_token_info(self, refresh_token: str) -> RefreshTokenInfo:
        """Read a refresh token's portal, client and scopes.

        Args:
            refresh_token: the token to describe.

        Returns:
            Its metadata.

        Raises:
            ObjectNotFound: the token is unknown.
            HubSpotResponseError: another error answer.
            HubSpotTransportError: the request failed on the network.
        """
        return await self._get(
            f"/oauth/v1/refresh-tokens/{quote(refresh_token, safe='')}", RefreshTokenInfo
        )

    async def delete_refresh_token(self, refresh_token: str) -> None:
        """Revoke a refresh token (uninstall); access tokens already issued stay valid.

        Args:
            refresh_token: the token to revoke.

        Raises:
            HubSpotResponseError: HubSpot refused.
            HubSpotTransportError: the request failed on the network.
        """
        request = self._http.build_request(
            "DELETE", f"{self.base_url}/oauth/v1/refresh-tokens/{quote(refresh_token, safe='')}"
        )
        response = await send(self._http, request)
        if response.status_code not in (200, 204):
            raise error_from_response(response)
