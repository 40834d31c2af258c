"""Reconnecting: scopes are checked against the required ones and against the previous
grant (reported by name), and HubSpot's properties are read again: new ones can be mapped,
mappings whose property vanished are reported as stopped."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from tests.sync.conftest import Sync, connect_oauth

OPTIONAL = {
    "crm.lists.read",
    "crm.lists.write",
    "crm.schemas.contacts.write",
    "behavioral_events.event_definitions.read_write",
    "analytics.behavioral_events.send",
}


def _reconnect_granting(sync: Sync, *, drop: set[str]) -> httpx.Response:
    """The OAuth dance, with the admin's portal not granting the scopes in `drop`."""
    started = sync.http.post("/v1/hubspot/connection/oauth").json()["authorize_url"]
    parts = urlsplit(started)
    query = []
    for key, value in parse_qsl(parts.query):
        if key in ("scope", "optional_scope"):
            value = " ".join(s for s in value.split() if s not in drop)
            if not value:
                continue
        query.append((key, value))
    query.append(("portal_id", str(sync.portal_id)))
    consent = httpx.get(urlunsplit(parts._replace(query=urlencode(query))), timeout=10)
    assert consent.status_code == 302, consent.text
    return httpx.get(consent.headers["location"], timeout=30)


def test_reconnect_names_scopes_lost_since_the_previous_grant(sync: Sync) -> None:
    first = sync.http.get("/v1/hubspot/connection").json()
    assert set(first["scopes"]) >= OPTIONAL
    assert first["scopes_lost"] == []
    assert first["missing_optional_scopes"] == {}

    answer = _reconnect_granting(sync, drop=OPTIONAL)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scopes_lost"] == sorted(OPTIONAL)
    assert set(body["missing_optional_scopes"]) == OPTIONAL
    assert "HubSpot list" in body["missing_optional_scopes"]["crm.lists.write"]
    assert sync.http.get("/v1/hubspot/connection").json()["scopes_lost"] == sorted(OPTIONAL)

    # What the lost scopes enabled is refused by name.
    made = sync.hubspot(
        "POST", "/crm/v3/lists", {"name": "L", "objectTypeId": "0-1", "processingType": "MANUAL"}
    )
    refused = sync.http.put(
        "/v1/sync/contacts/settings", json={"hubspot_list_id": made["list"]["listId"]}
    )
    assert refused.status_code == 422
    assert "crm.lists.write" in refused.json()["detail"]

    again = _reconnect_granting(sync, drop=set())
    assert again.status_code == 200, again.text
    assert again.json()["scopes_lost"] == []


def test_reconnect_without_a_required_scope_is_refused_and_keeps_the_connection(
    sync: Sync,
) -> None:
    before = sync.http.get("/v1/hubspot/connection").json()
    answer = _reconnect_granting(sync, drop={"crm.objects.contacts.write"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "hubspot_missing_scopes"
    assert "crm.objects.contacts.write" in answer.json()["detail"]
    after = sync.http.get("/v1/hubspot/connection").json()
    assert (after["status"], after["scopes"]) == ("connected", before["scopes"])


def test_private_app_reconnect_probes_optional_scopes(sync: Sync) -> None:
    token = sync.sandbox.admin(
        "POST",
        f"/portals/{sync.portal_id}/tokens",
        {
            "scopes": [
                "crm.objects.contacts.read",
                "crm.objects.contacts.write",
                "crm.schemas.contacts.read",
                "crm.lists.read",
            ]
        },
    )["access_token"]
    answer = sync.http.put(
        "/v1/hubspot/connection", json={"private_app_token": token, "portal_id": sync.portal_id}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "crm.lists.read" in body["scopes"]
    assert set(body["missing_optional_scopes"]) == OPTIONAL - {"crm.lists.read"}
    assert set(body["scopes_lost"]) == OPTIONAL - {"crm.lists.read"}


def test_reconnect_refreshes_properties_and_reports_vanished_ones_as_stopped(
    sync: Sync,
) -> None:
    sync.hubspot(
        "POST",
        "/crm/v3/properties/contacts",
        {
            "name": "plan_tier",
            "label": "Plan tier",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
        },
    )
    mapping = {"mappings": [{"spoke": "custom.tier", "hubspot": "plan_tier", "create_field": True}]}
    assert sync.http.put("/v1/sync/contacts/settings", json=mapping).status_code == 422
    assert connect_oauth(sync.tenant, sync.portal_id).status_code == 200
    saved = sync.http.put("/v1/sync/contacts/settings", json=mapping)
    assert saved.status_code == 200, saved.text
    assert saved.json()["stopped_mappings"] == []

    sync.hubspot("DELETE", "/crm/v3/properties/contacts/plan_tier")
    answer = connect_oauth(sync.tenant, sync.portal_id)
    assert answer.status_code == 200, answer.text
    stopped = [
        {
            "spoke": "custom.tier",
            "hubspot": "plan_tier",
            "reason": "the HubSpot property no longer exists",
        }
    ]
    assert answer.json()["stopped_mappings"] == stopped
    settings = sync.http.get("/v1/sync/contacts/settings").json()
    assert settings["stopped_mappings"] == stopped
    assert all(m["hubspot"] != "plan_tier" for m in settings["mappings"])
