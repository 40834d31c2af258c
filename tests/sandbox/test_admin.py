"""The `/_sandbox/` admin API, OAuth error paths and persistence."""

from __future__ import annotations

from pathlib import Path

import httpx
from tests.sandbox.harness import PortalHandle, Sandbox

from spoke.sandbox.hubspot import SandboxStore
from spoke.sandbox.hubspot.admin import seed_portal

C = "/crm/v3/objects/contacts"


class TestPortals:
    def test_create_portal_returns_credentials(self, sandbox: Sandbox) -> None:
        resp = httpx.post(f"{sandbox.base_url}/_sandbox/portals", json={"name": "Mine"})
        assert resp.status_code == 201
        body = resp.json()
        assert body["private_app_token"].startswith("pat-")
        assert {"app_id", "client_id", "client_secret"} <= set(body["oauth_app"])
        headers = {"Authorization": f"Bearer {body['private_app_token']}"}
        assert httpx.get(sandbox.base_url + C, headers=headers).status_code == 200
        assert (
            httpx.delete(f"{sandbox.base_url}/_sandbox/portals/{body['portal_id']}").status_code
            == 204
        )
        assert httpx.get(sandbox.base_url + C, headers=headers).status_code == 401

    def test_portals_are_isolated(self, http: httpx.Client, sandbox: Sandbox) -> None:
        other = sandbox.store.create_portal()
        http.post(C, json={"properties": {"email": "iso@example.com"}})
        resp = httpx.get(
            sandbox.base_url + C, headers={"Authorization": f"Bearer {other.private_token}"}
        )
        assert resp.json()["results"] == []


class TestSeedAndReset:
    def test_seed_is_deterministic(self, sandbox: Sandbox) -> None:
        store = SandboxStore()
        a, b = store.create_portal(), store.create_portal()
        seed_portal(a, 20, 3, seed=42, now=0)
        seed_portal(b, 20, 3, seed=42, now=0)

        def emails(p: object) -> list[str]:
            return [r.props["email"] for r in p.tables["contacts"].records.values()]  # type: ignore[attr-defined]

        assert emails(a) == emails(b)
        assert len(set(emails(a))) == 20

    def test_seed_reset_and_counters(self, http: httpx.Client, portal: PortalHandle) -> None:
        resp = httpx.post(portal.admin("/seed"), json={"contacts": 30, "companies": 3, "seed": 1})
        assert resp.json()["contacts"] == 30
        page = http.get(C, params={"limit": 100, "associations": "companies"}).json()
        assert len(page["results"]) == 30
        assert page["results"][0]["associations"]["companies"]["results"][0]["type"]
        counters = httpx.get(portal.admin("/counters")).json()
        assert counters["requests_by_endpoint"] == {"GET /crm/v3/objects/{objectType}": 1}
        assert counters["responses_by_status"] == {"200": 1}
        log = httpx.get(portal.admin("/requests")).json()["results"]
        assert log[-1]["path"] == C
        assert log[-1]["status"] == 200

        assert httpx.post(portal.admin("/reset")).status_code == 204
        assert http.get(C).json()["results"] == []

    def test_429s_are_counted(self, http: httpx.Client, portal: PortalHandle) -> None:
        httpx.put(portal.admin("/rate-limits"), json={"enabled": True, "private_app_burst": 1})
        http.get(C)
        http.get(C)
        assert httpx.get(portal.admin("/counters")).json()["rate_limited_served"] == 1


class TestTimeline:
    def test_meetings_and_notes_of_a_contact(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        cid = http.post(C, json={"properties": {"email": "t@example.com"}}).json()["id"]
        assoc = [
            {
                "to": {"id": cid},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}],
            }
        ]
        http.post(
            "/crm/v3/objects/meetings",
            json={"properties": {"hs_timestamp": "2026-01-01T10:00:00Z"}, "associations": assoc},
        )
        note_assoc = [
            {
                "to": {"id": cid},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
            }
        ]
        http.post(
            "/crm/v3/objects/notes",
            json={
                "properties": {"hs_timestamp": "2026-02-01T10:00:00Z", "hs_note_body": "hi"},
                "associations": note_assoc,
            },
        )
        items = httpx.get(portal.admin(f"/contacts/{cid}/timeline")).json()["results"]
        assert [i["type"] for i in items] == ["NOTE", "MEETING"]


class TestOAuthErrors:
    def test_bad_refresh_token(self, portal: PortalHandle) -> None:
        resp = httpx.post(
            f"{portal.sandbox.base_url}/oauth/v1/token",
            data={
                "grant_type": "refresh_token",
                "client_id": portal.client_id,
                "client_secret": portal.client_secret,
                "refresh_token": "nope",
            },
        )
        assert resp.status_code == 400
        assert resp.json()["status"] == "BAD_REFRESH_TOKEN"
        assert resp.json()["error"] == "invalid_grant"

    def test_codes_are_single_use(self, portal: PortalHandle) -> None:
        base = portal.sandbox.base_url
        redirect = "http://127.0.0.1:1/cb"
        loc = httpx.get(
            f"{base}/oauth/{portal.id}/authorize",
            params={"client_id": portal.client_id, "redirect_uri": redirect, "scope": "oauth"},
        ).headers["location"]
        code = loc.split("code=")[1]
        form = {
            "grant_type": "authorization_code",
            "client_id": portal.client_id,
            "client_secret": portal.client_secret,
            "redirect_uri": redirect,
            "code": code,
        }
        assert httpx.post(f"{base}/oauth/v1/token", data=form).status_code == 200
        again = httpx.post(f"{base}/oauth/v1/token", data=form)
        assert again.json()["status"] == "BAD_AUTH_CODE"


class TestTokenEndpoints:
    def _tokens(self, portal: PortalHandle) -> dict[str, str]:
        resp = httpx.post(portal.admin("/tokens"), json={"expires_in": 60})
        tokens: dict[str, str] = resp.json()
        return tokens

    def test_v3_token_endpoint_refreshes(self, portal: PortalHandle) -> None:
        tokens = self._tokens(portal)
        resp = httpx.post(
            f"{portal.sandbox.base_url}/oauth/v3/token",
            data={
                "grant_type": "refresh_token",
                "client_id": portal.client_id,
                "client_secret": portal.client_secret,
                "refresh_token": tokens["refresh_token"],
            },
        )
        assert resp.status_code == 200
        assert resp.json()["expires_in"] == 1800
        assert resp.json()["hub_id"] == portal.id

    def test_wrong_secret(self, portal: PortalHandle) -> None:
        resp = httpx.post(
            f"{portal.sandbox.base_url}/oauth/v1/token",
            data={
                "grant_type": "refresh_token",
                "client_id": portal.client_id,
                "client_secret": "x",
            },
        )
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_client"

    def test_deleting_a_refresh_token_keeps_access_tokens(self, portal: PortalHandle) -> None:
        tokens = self._tokens(portal)
        base = portal.sandbox.base_url
        info = httpx.get(f"{base}/oauth/v1/refresh-tokens/{tokens['refresh_token']}").json()
        assert info["hub_id"] == portal.id
        assert (
            httpx.delete(f"{base}/oauth/v1/refresh-tokens/{tokens['refresh_token']}").status_code
            == 204
        )
        assert (
            httpx.get(f"{base}/oauth/v1/refresh-tokens/{tokens['refresh_token']}").status_code
            == 404
        )
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert httpx.get(f"{base}{C}", headers=headers).status_code == 200

    def test_access_token_info_counts_down(self, portal: PortalHandle) -> None:
        tokens = self._tokens(portal)
        info = httpx.get(
            f"{portal.sandbox.base_url}/oauth/v1/access-tokens/{tokens['access_token']}"
        )
        assert 55 <= info.json()["expires_in"] <= 60
        assert info.json()["app_id"] == portal.portal.oauth_app_id


class TestPersistence:
    def test_save_and_load_round_trip(self, tmp_path: Path) -> None:
        path = tmp_path / "state.json"
        store = SandboxStore(state_file=path)
        portal = store.create_portal()
        seed_portal(portal, 5, 2, seed=3, now=store.now_ms())
        store.save()

        loaded = SandboxStore(state_file=path)
        assert loaded.load()
        again = loaded.portals[portal.id]
        assert again.tables["contacts"].records.keys() == portal.tables["contacts"].records.keys()
        assert loaded.tokens[portal.private_token].portal_id == portal.id
        email = next(iter(portal.tables["contacts"].unique["email"]))
        assert again.tables["contacts"].unique["email"][email]
        assert again.assoc == portal.assoc
