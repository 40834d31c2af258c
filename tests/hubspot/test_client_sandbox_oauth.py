"""OAuth through Spoke's client against the sandbox: install, exchange, refresh, 401, scopes."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from tests.hubspot.support import SandboxPortal

from spoke.hubspot import (
    HubSpotClient,
    MissingScopes,
    OAuthClient,
    OAuthError,
    OAuthTokenProvider,
    OAuthTokens,
    ObjectNotFound,
    Unauthorized,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

REDIRECT = "https://spoke.example.com/oauth/callback"
SCOPES = ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write"]


def oauth_client(http: httpx.AsyncClient, portal: SandboxPortal) -> OAuthClient:
    return OAuthClient(
        http,
        client_id=portal.client_id,
        client_secret=portal.client_secret,
        base_url=portal.base_url,
    )


async def install(http: httpx.AsyncClient, portal: SandboxPortal, oauth: OAuthClient) -> str:
    """Follow the authorize URL as a browser would and return the code."""
    url = oauth.authorize_url(
        redirect_uri=REDIRECT, scopes=SCOPES, state="xyz", app_url=portal.base_url
    )
    answer = await http.get(url, follow_redirects=False)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["location"])
    params = parse_qs(location.query)
    assert location.netloc == "spoke.example.com"
    assert params["state"] == ["xyz"]
    return params["code"][0]


class Recorder:
    def __init__(self) -> None:
        self.saved: list[OAuthTokens] = []

    async def __call__(self, tokens: OAuthTokens) -> None:
        self.saved.append(tokens)


class TestOAuthClient:
    async def test_install_exchange_info_and_refresh(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        oauth = oauth_client(http, portal)
        code = await install(http, portal, oauth)
        tokens = await oauth.exchange_code(code, redirect_uri=REDIRECT)
        assert tokens.token_type == "bearer"
        assert tokens.expires_in == 1800
        assert tokens.refresh_token

        info = await oauth.access_token_info(tokens.access_token)
        assert info.hub_id == portal.id
        assert set(SCOPES) <= set(info.scopes)

        refresh_info = await oauth.refresh_token_info(tokens.refresh_token)
        assert refresh_info.hub_id == portal.id
        assert refresh_info.client_id == portal.client_id

        refreshed = await oauth.refresh(tokens.refresh_token)
        assert refreshed.access_token != tokens.access_token
        client = HubSpotClient(http, auth=refreshed.access_token, base_url=portal.base_url)
        assert (await client.contacts.create({"email": "oauth@example.com"})).id

    async def test_code_is_single_use(self, http: httpx.AsyncClient, portal: SandboxPortal) -> None:
        oauth = oauth_client(http, portal)
        code = await install(http, portal, oauth)
        await oauth.exchange_code(code, redirect_uri=REDIRECT)
        with pytest.raises(OAuthError) as caught:
            await oauth.exchange_code(code, redirect_uri=REDIRECT)
        assert caught.value.error == "BAD_AUTH_CODE"

    async def test_bad_refresh_token(self, http: httpx.AsyncClient, portal: SandboxPortal) -> None:
        with pytest.raises(OAuthError) as caught:
            await oauth_client(http, portal).refresh("na1-not-a-token")
        assert caught.value.error == "BAD_REFRESH_TOKEN"
        assert caught.value.status_code == 400

    async def test_deleted_refresh_token_stops_working(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        oauth = oauth_client(http, portal)
        tokens = await oauth.exchange_code(
            await install(http, portal, oauth), redirect_uri=REDIRECT
        )
        assert tokens.refresh_token is not None
        await oauth.delete_refresh_token(tokens.refresh_token)
        with pytest.raises(OAuthError):
            await oauth.refresh(tokens.refresh_token)

    async def test_unknown_access_token_info(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        with pytest.raises(ObjectNotFound):
            await oauth_client(http, portal).access_token_info("C-not-a-token")


class TestOAuthTokenProvider:
    async def test_refreshes_before_expiry(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        minted = portal.admin_call("POST", "/tokens", {"scopes": SCOPES})
        # Stored tokens that expire in 60 s: inside the 300 s margin, so refreshed first.
        tokens = OAuthTokens(minted["access_token"], minted["refresh_token"], time.time() + 60)
        saved = Recorder()
        provider = OAuthTokenProvider(oauth_client(http, portal), tokens, on_refresh=saved)
        client = HubSpotClient(http, auth=provider, base_url=portal.base_url)
        await client.contacts.create({"email": "early@example.com"})
        assert len(saved.saved) == 1
        assert saved.saved[0].access_token != minted["access_token"]
        assert saved.saved[0].refresh_token == minted["refresh_token"]
        assert saved.saved[0].expires_at > time.time() + 1700
        await client.contacts.list()
        assert len(saved.saved) == 1  # fresh now: no second refresh

    async def test_refreshes_once_on_401(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        # The sandbox issues a token that is already expired; storage thinks it is fresh.
        minted = portal.admin_call("POST", "/tokens", {"scopes": SCOPES, "expires_in": 0})
        tokens = OAuthTokens(minted["access_token"], minted["refresh_token"], time.time() + 1800)
        saved: list[OAuthTokens] = []
        provider = OAuthTokenProvider(oauth_client(http, portal), tokens, on_refresh=saved.append)
        client = HubSpotClient(http, auth=provider, base_url=portal.base_url)
        contact = await client.contacts.create({"email": "late@example.com"})
        assert contact.id
        assert len(saved) == 1
        assert provider.tokens == saved[0]

    async def test_a_second_401_is_raised(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        minted = portal.admin_call("POST", "/tokens", {"scopes": SCOPES, "expires_in": 0})
        # Refreshing yields expired tokens too (portal TTL 0), so the retry is refused as well.
        portal.admin_call("PATCH", "/settings", {"access_token_ttl_s": 0})
        tokens = OAuthTokens(minted["access_token"], minted["refresh_token"], time.time() + 1800)
        provider = OAuthTokenProvider(oauth_client(http, portal), tokens, refresh_margin=-3600)
        client = HubSpotClient(http, auth=provider, base_url=portal.base_url)
        with pytest.raises(Unauthorized) as caught:
            await client.contacts.list()
        assert caught.value.status_code == 401

    async def test_revoked_refresh_token_surfaces_as_oauth_error(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        tokens = OAuthTokens("C-expired", "na1-unknown", time.time() - 1)
        provider = OAuthTokenProvider(oauth_client(http, portal), tokens)
        client = HubSpotClient(http, auth=provider, base_url=portal.base_url)
        with pytest.raises(OAuthError):
            await client.contacts.list()

    async def test_missing_scopes(self, http: httpx.AsyncClient, portal: SandboxPortal) -> None:
        minted = portal.admin_call("POST", "/tokens", {"scopes": ["oauth"]})
        client = HubSpotClient(http, auth=minted["access_token"], base_url=portal.base_url)
        with pytest.raises(MissingScopes) as caught:
            await client.contacts.list()
        assert "crm.objects.contacts.read" in caught.value.scopes
