"""Connecting a workspace to HubSpot: OAuth and private-app token, scopes, roles, status,
token refresh and storage, disconnect and reconnect keeping the settings."""

from __future__ import annotations

import httpx
import sqlalchemy as sa
from tests.conftest import create_tenant
from tests.sync.conftest import SandboxServer, SpokeApp, Sync, connect_oauth, new_portal

from spoke.connections.models import HubSpotConnection
from spoke.core.db import session_scope
from spoke.workspaces import service as workspaces
from spoke.workspaces.models import Role


def test_oauth_connect_reports_portal_scopes_and_who(sync: Sync) -> None:
    answer = sync.http.get("/v1/hubspot/connection")
    assert answer.status_code == 200
    body = answer.json()
    assert body["portal_id"] == sync.portal_id
    assert body["auth_type"] == "oauth"
    assert body["status"] == "connected"
    assert {"crm.objects.contacts.read", "crm.objects.contacts.write"} <= set(body["scopes"])
    assert body["connected_by"] == sync.tenant.key_id
    assert body["properties_available"] > 10
    assert body["token_expires_at"] is not None


def test_tokens_are_encrypted_at_rest(sync: Sync) -> None:
    with session_scope(sync.runtime.sessions) as session:
        row = session.get(HubSpotConnection, sync.tenant.workspace_id)
        assert row is not None
        assert row.access_token
        assert row.refresh_token
        stored = row.access_token + row.refresh_token
        plain = sync.runtime.encryptor.decrypt(row.access_token)
    assert plain not in stored
    assert "refresh" not in stored.lower() or plain not in stored


def test_expired_token_is_refreshed_and_stored(sync: Sync) -> None:
    with session_scope(sync.runtime.sessions) as session:
        row = session.get(HubSpotConnection, sync.tenant.workspace_id)
        assert row is not None
        assert row.access_token
        before = sync.runtime.encryptor.decrypt(row.access_token)
        row.expires_at = row.connected_at  # long past: the client must refresh first
    sync.http.put("/v1/users/u1", json={"email": "refresh@example.com", "first_name": "R"})
    sync.settle()
    with session_scope(sync.runtime.sessions) as session:
        row = session.get(HubSpotConnection, sync.tenant.workspace_id)
        assert row is not None
        assert row.access_token
        assert row.expires_at
        after = sync.runtime.encryptor.decrypt(row.access_token)
        assert row.expires_at > row.connected_at
    assert after != before
    assert sync.contact_by_email("refresh@example.com")["properties"]["firstname"] == "R"
    usage = sync.http.get("/v1/hubspot/connection").json()["api_calls_today"]
    assert usage >= 2  # the refresh's retry and the upsert at least


def test_private_app_token_connects_and_missing_scopes_are_named(
    spoke_app: SpokeApp, hubspot_sandbox: SandboxServer
) -> None:
    tenant = create_tenant(spoke_app.backend)
    portal = new_portal(
        hubspot_sandbox, scopes=["crm.objects.contacts.read", "crm.schemas.contacts.read"]
    )
    refused = tenant.http.put(
        "/v1/hubspot/connection",
        json={"private_app_token": portal["private_app_token"], "portal_id": portal["portal_id"]},
    )
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "hubspot_missing_scopes"
    assert "crm.objects.contacts.write" in refused.json()["detail"]
    assert tenant.http.get("/v1/hubspot/connection").status_code == 404

    good = new_portal(hubspot_sandbox)
    answer = tenant.http.put(
        "/v1/hubspot/connection",
        json={
            "private_app_token": good["private_app_token"],
            "portal_id": good["portal_id"],
            "webhook_secret": good["oauth_app"]["client_secret"],
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["auth_type"] == "private_app"
    assert answer.json()["portal_id"] == good["portal_id"]

    wrong = tenant.http.put(
        "/v1/hubspot/connection",
        json={"private_app_token": "pat-not-a-token", "portal_id": good["portal_id"]},
    )
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "hubspot_refused"
    tenant.http.close()


def test_only_owners_and_managers_connect_or_disconnect(sync: Sync) -> None:
    with session_scope(sync.runtime.sessions) as session:
        member = workspaces.add_member(
            session, sync.tenant.workspace_id, email="m@example.com", name="M", role=Role.member
        )
        key, secret = workspaces.create_key(
            session, sync.tenant.workspace_id, member_id=member.id, name="m"
        )
    with httpx.Client(
        base_url=sync.tenant.backend.url,
        headers={"X-Api-Key": key.id, "X-Secret-Key": secret},
        timeout=10,
    ) as as_member:
        assert as_member.delete("/v1/hubspot/connection").status_code == 403
        assert as_member.post("/v1/hubspot/connection/oauth").status_code == 403
        put = as_member.put(
            "/v1/hubspot/connection", json={"private_app_token": "x", "portal_id": 1}
        )
        assert put.status_code == 403
        assert as_member.get("/v1/hubspot/connection").status_code == 200


def test_disconnect_keeps_settings_and_reconnect_restores_them(
    sync: Sync, spoke_app: SpokeApp
) -> None:
    saved = sync.http.put("/v1/sync/contacts/settings", json={"direction": "to_hubspot"})
    assert saved.status_code == 200, saved.text
    gone = sync.http.delete("/v1/hubspot/connection")
    assert gone.status_code == 200
    assert gone.json()["status"] == "disconnected"
    with session_scope(sync.runtime.sessions) as session:
        row = session.get(HubSpotConnection, sync.tenant.workspace_id)
        assert row is not None
        assert row.access_token is None
        assert row.refresh_token is None
    again = connect_oauth(sync.tenant, sync.portal_id)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "connected"
    settings = sync.http.get("/v1/sync/contacts/settings").json()
    assert settings["direction"] == "to_hubspot"


def test_callback_refuses_a_forged_state(spoke_app: SpokeApp) -> None:
    answer = httpx.get(
        f"{spoke_app.backend.url}/oauth/hubspot/callback",
        params={"code": "x", "state": "not-ours"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "hubspot_invalid_oauth_state"
    with session_scope(spoke_app.backend.runtime.sessions) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(HubSpotConnection)) >= 0
