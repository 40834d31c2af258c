"""Webhooks end to end: the management API through the SDK, and deliveries to a real HTTP
receiver (signatures, batching, retries, duplicates and reordering)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from hubspot.utils.signature import Signature
from tests.sandbox.harness import PortalHandle, Receiver, subscribe

from spoke.sandbox.hubspot.webhooks import sign

C = "/crm/v3/objects/contacts"


@pytest.fixture(autouse=True)
def _fast_retries(portal: PortalHandle) -> Iterator[None]:
    config = portal.sandbox.store.config
    config.webhook_time_scale = 0.0005  # 60 s -> 30 ms
    yield
    config.webhook_time_scale = 1.0


class TestManagementApi:
    def test_bad_developer_key(self, portal: PortalHandle) -> None:
        app_id = portal.portal.oauth_app_id
        resp = httpx.get(
            f"{portal.sandbox.base_url}/webhooks/v3/{app_id}/subscriptions",
            params={"hapikey": "wrong"},
        )
        assert resp.status_code == 401

    def test_property_change_needs_a_property(self, portal: PortalHandle) -> None:
        app = portal.sandbox.store.apps[portal.portal.oauth_app_id]
        resp = httpx.post(
            f"{portal.sandbox.base_url}/webhooks/v3/{app.app_id}/subscriptions",
            params={"hapikey": app.developer_api_key},
            json={"eventType": "contact.propertyChange"},
        )
        assert resp.status_code == 400


class TestDelivery:
    def test_signed_creation_event(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.creation")
        cid = http.post(C, json={"properties": {"email": "hook@example.com"}}).json()["id"]
        receiver.wait(lambda: bool(receiver.events()))
        request = receiver.requests[0]
        [event] = request.events
        assert event["subscriptionType"] == "contact.creation"
        assert event["objectId"] == int(cid)
        assert event["portalId"] == portal.id
        assert event["attemptNumber"] == 0
        assert event["changeFlag"] == "NEW"
        secret = portal.client_secret
        body = request.body.decode()
        assert Signature.is_valid(
            signature=request.headers["x-hubspot-signature-v3"],
            client_secret=secret,
            request_body=body,
            http_uri=receiver.url,
            signature_version="v3",
            timestamp=request.headers["x-hubspot-request-timestamp"],
        )
        assert request.headers["x-hubspot-signature-version"] == "v1"
        assert Signature.is_valid(
            signature=request.headers["x-hubspot-signature"],
            client_secret=secret,
            request_body=body,
            signature_version="v1",
        )

    def test_v2_is_selectable(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.creation", signatureVersion="v2")
        http.post(C, json={"properties": {"email": "v2@example.com"}})
        receiver.wait(lambda: bool(receiver.events()))
        request = receiver.requests[0]
        assert request.headers["x-hubspot-signature-version"] == "v2"
        assert Signature.is_valid(
            signature=request.headers["x-hubspot-signature"],
            client_secret=portal.client_secret,
            request_body=request.body.decode(),
            http_uri=receiver.url,
            http_method="POST",
            signature_version="v2",
        )

    def test_own_changes_are_recognisable(self, portal: PortalHandle, receiver: Receiver) -> None:
        subscribe(portal, receiver, "contact.propertyChange", prop="firstname")
        token = httpx.post(portal.admin("/tokens"), json={}).json()["access_token"]
        with httpx.Client(
            base_url=portal.sandbox.base_url, headers={"Authorization": f"Bearer {token}"}
        ) as oauth:
            cid = oauth.post(C, json={"properties": {"email": "own@example.com"}}).json()["id"]
            oauth.patch(f"{C}/{cid}", json={"properties": {"lastname": "Ignored"}})
            oauth.patch(f"{C}/{cid}", json={"properties": {"firstname": "Seen"}})
        receiver.wait(lambda: bool(receiver.events()))
        time.sleep(0.1)
        [event] = receiver.events()
        assert event["propertyName"] == "firstname"
        assert event["propertyValue"] == "Seen"
        assert event["changeSource"] == "INTEGRATION"
        assert event["sourceId"] == str(portal.portal.oauth_app_id)

    def test_each_event_names_its_own_subscription(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.propertyChange", prop="firstname")
        subscribe(portal, receiver, "contact.propertyChange", prop="lastname")
        app = portal.sandbox.store.apps[portal.portal.oauth_app_id]
        subs = httpx.get(
            f"{portal.sandbox.base_url}/webhooks/v3/{app.app_id}/subscriptions",
            params={"hapikey": app.developer_api_key},
        ).json()["results"]
        by_prop = {s["propertyName"]: int(s["id"]) for s in subs}
        cid = http.post(C, json={"properties": {"email": "two@example.com"}}).json()["id"]
        http.patch(f"{C}/{cid}", json={"properties": {"firstname": "F", "lastname": "L"}})
        receiver.wait(lambda: len(receiver.events()) == 2)
        assert {e["propertyName"]: e["subscriptionId"] for e in receiver.events()} == by_prop

    def test_gdpr_delete_fires_privacy_deletion_and_deletion_once(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.privacyDeletion", "contact.deletion")
        cid = http.post(C, json={"properties": {"email": "gdpr@example.com"}}).json()["id"]
        assert http.post(f"{C}/gdpr-delete", json={"objectId": cid}).status_code == 204
        receiver.wait(lambda: len(receiver.events()) >= 2)
        time.sleep(0.1)
        kinds = sorted(e["subscriptionType"] for e in receiver.events())
        assert kinds == ["contact.deletion", "contact.privacyDeletion"]

    def test_batches_hold_at_most_100_events(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.creation")
        httpx.post(portal.admin("/seed"), json={"contacts": 250, "seed": 5})
        receiver.wait(lambda: len(receiver.events()) == 250)
        assert max(len(r.events) for r in receiver.requests) == 100
        assert len({e["objectId"] for e in receiver.events()}) == 250
        assert receiver.events()[0]["changeSource"] == "IMPORT"

    def test_failures_are_retried_with_increasing_attempt_numbers(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        receiver.statuses = [500, 429]
        subscribe(portal, receiver, "contact.deletion")
        cid = http.post(C, json={"properties": {"email": "retry@example.com"}}).json()["id"]
        http.delete(f"{C}/{cid}")
        receiver.wait(lambda: bool(receiver.events()))
        assert [r.headers["x-answered"] for r in receiver.requests] == ["500", "429", "200"]
        assert [r.events[0]["attemptNumber"] for r in receiver.requests] == [0, 1, 2]
        counters = httpx.get(portal.admin("/counters")).json()["webhooks"]
        assert counters["delivered"] == 1
        assert counters["failed"] == 2

    def test_gives_up_after_ten_retries(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        portal.sandbox.store.config.webhook_time_scale = 0.00001
        receiver.statuses = [503] * 20
        subscribe(portal, receiver, "contact.creation")
        http.post(C, json={"properties": {"email": "never@example.com"}})
        receiver.wait(
            lambda: httpx.get(portal.admin("/counters")).json()["webhooks"]["given_up"] == 1
        )
        assert len(receiver.requests) == 11  # the first try and ten retries

    def test_duplicates_and_reordering(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        httpx.put(
            portal.admin("/faults"),
            json={"webhook_duplicate_rate": 1.0, "webhook_reorder": True, "seed": 1},
        )
        subscribe(portal, receiver, "contact.creation")
        inputs = [{"properties": {"email": f"d{i}@example.com"}} for i in range(20)]
        http.post(f"{C}/batch/create", json={"inputs": inputs})
        receiver.wait(lambda: len(receiver.events()) == 40)
        ids = [e["objectId"] for e in receiver.events()]
        assert len(set(ids)) == 20  # every event twice
        assert ids != sorted(ids)

    def test_merge_and_association_events(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.merge", "contact.associationChange")
        a = http.post(C, json={"properties": {"email": "ma@example.com"}}).json()["id"]
        b = http.post(C, json={"properties": {"email": "mb@example.com"}}).json()["id"]
        company = http.post("/crm/v3/objects/companies", json={"properties": {"name": "M"}}).json()[
            "id"
        ]
        http.put(f"/crm/v4/objects/contacts/{a}/associations/default/companies/{company}")
        http.post(f"{C}/merge", json={"primaryObjectId": a, "objectIdToMerge": b})
        receiver.wait(
            lambda: (
                {e["subscriptionType"] for e in receiver.events()}
                == {"contact.merge", "contact.associationChange"}
            )
        )
        by_type = {e["subscriptionType"]: e for e in receiver.events()}
        assert by_type["contact.merge"]["mergedObjectIds"] == [int(b)]
        assoc = by_type["contact.associationChange"]
        assert assoc["associationType"] == "CONTACT_TO_COMPANY"
        assert assoc["toObjectId"] == int(company)
        assert assoc["associationRemoved"] is False


def test_signature_vectors_from_the_contract() -> None:
    secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
    body = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
        b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
    )
    v1 = sign(secret, "POST", "https://www.example.com/webhook_uri", body, "v1", 0)
    assert (
        v1["X-HubSpot-Signature"]
        == "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    )
    v2 = sign(
        secret,
        "POST",
        "https://www.example.com/webhook_uri",
        b'{"example_field":"example_value"}',
        "v2",
        0,
    )
    assert (
        v2["X-HubSpot-Signature"]
        == "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900"
    )
