"""Custom behavioural events: definitions, send through the SDK, batch, timeline, limits."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from hubspot.events.send import (
    BatchedBehavioralEventHttpCompletionRequest,
    BehavioralEventHttpCompletionRequest,
)
from tests.sandbox.harness import PortalHandle

from hubspot import HubSpot

D = "/events/v3/event-definitions"


@pytest.fixture
def event_name(http: httpx.Client, portal: PortalHandle) -> str:
    resp = http.post(
        D,
        json={
            "label": "Logged in",
            "includeDefaultProperties": True,
            "propertyDefinitions": [{"label": "Device", "name": "device", "type": "string"}],
        },
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    assert body["name"] == "logged_in"
    assert body["fullyQualifiedName"] == f"pe{portal.id}_logged_in"
    return str(body["fullyQualifiedName"])


def _timeline(portal: PortalHandle, contact_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(
        portal.admin(f"/contacts/{contact_id}/timeline")
    ).json()["results"]
    return items


class TestSend:
    def test_sdk_send_lands_on_the_timeline(
        self, api: HubSpot, http: httpx.Client, portal: PortalHandle, event_name: str
    ) -> None:
        cid = http.post(
            "/crm/v3/objects/contacts", json={"properties": {"email": "e@example.com"}}
        ).json()["id"]
        result = api.events.send.basic_api.send(
            behavioral_event_http_completion_request=BehavioralEventHttpCompletionRequest(
                event_name=event_name,
                email="e@example.com",
                occurred_at=dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC),
                properties={"device": "ios"},
            )
        )
        assert result is None  # 204
        items = _timeline(portal, cid)
        assert items[0]["eventType"] == event_name
        assert items[0]["timestamp"] == "2026-05-01T12:00:00.000Z"
        assert items[0]["properties"] == {"device": "ios"}
        queried = http.get(
            "/events/v3/events", params={"objectType": "contact", "objectId": cid}
        ).json()
        assert [e["eventType"] for e in queried["results"]] == [event_name]

    def test_batch_with_duplicate_uuid_and_new_contact(
        self, api: HubSpot, portal: PortalHandle, event_name: str
    ) -> None:
        inputs = [
            BehavioralEventHttpCompletionRequest(
                event_name=event_name, email="batch@example.com", uuid="u-1", properties={}
            ),
            BehavioralEventHttpCompletionRequest(
                event_name=event_name, email="batch@example.com", uuid="u-1", properties={}
            ),
        ]
        api.events.send.batch_api.send(
            batched_behavioral_event_http_completion_request=BatchedBehavioralEventHttpCompletionRequest(
                inputs=inputs
            )
        )
        contact = api.crm.contacts.basic_api.get_by_id("batch@example.com", id_property="email")
        assert len(_timeline(portal, contact.id)) == 1

    def test_unknown_event_or_property(self, http: httpx.Client, event_name: str) -> None:
        body = {"eventName": "pe1_nope", "email": "x@example.com", "properties": {}}
        assert http.post("/events/v3/send", json=body).status_code == 404
        bad = {"eventName": event_name, "email": "x@example.com", "properties": {"color": "red"}}
        resp = http.post("/events/v3/send", json=bad)
        assert resp.status_code == 400
        assert resp.json()["context"] == {"propertyName": ["color"]}

    def test_batch_limit_and_monthly_cap(
        self, http: httpx.Client, portal: PortalHandle, event_name: str
    ) -> None:
        one = {"eventName": event_name, "email": "cap@example.com", "properties": {}}
        assert http.post("/events/v3/send/batch", json={"inputs": [one] * 501}).status_code == 400
        portal.portal.settings.custom_event_monthly_cap = 2
        assert http.post("/events/v3/send/batch", json={"inputs": [one] * 2}).status_code == 204
        resp = http.post("/events/v3/send", json=one)
        assert resp.status_code == 429
        assert resp.json()["policyName"] == "MONTHLY_EVENT_COMPLETIONS"

    def test_send_needs_its_scope(self, portal: PortalHandle, event_name: str) -> None:
        token = httpx.post(portal.admin("/tokens"), json={"scopes": ["crm.objects.contacts.read"]})
        resp = httpx.post(
            f"{portal.sandbox.base_url}/events/v3/send",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            json={"eventName": event_name, "email": "s@example.com", "properties": {}},
        )
        assert resp.status_code == 403


class TestDefinitions:
    def test_list_get_property_and_archive(self, http: httpx.Client, event_name: str) -> None:
        listed = http.get(D, params={"includeProperties": "true"}).json()
        assert listed["total"] == 1
        assert listed["results"][0]["properties"][0]["name"] == "device"
        added = http.post(f"{D}/logged_in/property", json={"label": "Plan", "type": "enumeration"})
        assert added.status_code == 201
        assert len(http.get(f"{D}/logged_in").json()["properties"]) == 2
        assert http.delete(f"{D}/logged_in").status_code == 204
        assert http.get(f"{D}/logged_in").status_code == 404
