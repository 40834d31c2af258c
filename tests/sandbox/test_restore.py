"""Restoring archived records from the recycle bin (admin route), over real HTTP, and the
`contact.restore` / `company.restore` webhook events delivered to a real receiving server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hubspot.utils.signature import Signature
from tests.sandbox.harness import PortalHandle, Receiver, subscribe

from spoke.sandbox.hubspot import SandboxStore
from spoke.sandbox.hubspot.crm import restore
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.schema import OBJECT_TYPES

pytestmark = pytest.mark.timeout(60)

C = "/crm/v3/objects/contacts"
CO = "/crm/v3/objects/companies"
DAY_S = 24 * 3600


def _create(http: httpx.Client, path: str = C, **props: str) -> str:
    resp = http.post(path, json={"properties": props})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _restore(portal: PortalHandle, object_type: str, object_id: str, **body: Any) -> httpx.Response:
    return httpx.post(
        portal.admin(f"/objects/{object_type}/{object_id}/restore"), json=body or None, timeout=10
    )


def _hubspot_error(resp: httpx.Response, status: int, category: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["status"] == "error"
    assert body["category"] == category
    assert body["correlationId"]
    return body


def _search_ids(http: httpx.Client, email: str) -> list[str]:
    body = {
        "filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": email}]}]
    }
    resp = http.post(f"{C}/search", json=body)
    assert resp.status_code == 200, resp.text
    return [r["id"] for r in resp.json()["results"]]


class TestRestore:
    def test_same_id_properties_history_and_associations(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        cid = _create(http, email="Back@Example.com", firstname="First")
        http.patch(f"{C}/{cid}", json={"properties": {"firstname": "Second"}})
        company = _create(http, CO, name="Acme")
        linked = http.put(
            f"/crm/v4/objects/contacts/{cid}/associations/default/companies/{company}"
        )
        assert linked.is_success
        params = {
            "properties": "email,firstname",
            "propertiesWithHistory": "firstname",
            "associations": "companies",
        }
        before = http.get(f"{C}/{cid}", params=params).json()
        assert http.delete(f"{C}/{cid}").status_code == 204
        assert http.get(f"{C}/{cid}").status_code == 404
        assert http.get(f"{C}/{cid}", params={"archived": "true"}).json()["archived"] is True

        resp = _restore(portal, "contacts", cid)

        assert resp.status_code == 200, resp.text
        assert resp.json()["id"] == cid
        assert resp.json()["archived"] is False
        after = http.get(f"{C}/{cid}", params=params).json()
        assert after == before
        assert after["properties"]["email"] == "back@example.com"
        assert [h["value"] for h in after["propertiesWithHistory"]["firstname"]] == [
            "Second",
            "First",
        ]
        assert after["associations"]["companies"]["results"][0]["id"] == company
        assert http.get(f"{C}/{cid}", params={"archived": "true"}).status_code == 404
        assert http.get(C, params={"archived": "true"}).json()["results"] == []
        assert [r["id"] for r in http.get(C).json()["results"]] == [cid]
        # The email is the restored contact's again: it resolves and a duplicate is refused.
        by_email = http.get(f"{C}/back@example.com", params={"idProperty": "email"})
        assert by_email.json()["id"] == cid
        duplicate = http.post(C, json={"properties": {"email": "back@example.com"}})
        body = _hubspot_error(duplicate, 409, "CONFLICT")
        assert body["message"] == f"Contact already exists. Existing ID: {cid}"
        assert httpx.get(portal.admin()).json()["record_counts"]["contacts"] == 1

    @pytest.mark.parametrize(
        ("segment", "props"),
        [
            ("companies", {"name": "Globex", "domain": "globex.example.com"}),
            ("company", {"name": "Initech"}),
            ("meetings", {"hs_timestamp": "2026-10-05T13:00:00Z", "hs_meeting_title": "Kick-off"}),
            ("0-46", {"hs_timestamp": "2026-10-05T13:00:00Z", "hs_note_body": "Remember"}),
        ],
    )
    def test_other_object_types(
        self, http: httpx.Client, portal: PortalHandle, segment: str, props: dict[str, str]
    ) -> None:
        path = f"/crm/v3/objects/{segment}"
        oid = _create(http, path, **props)
        names = ",".join(props)
        before = http.get(f"{path}/{oid}", params={"properties": names}).json()
        assert http.post(f"{path}/batch/archive", json={"inputs": [{"id": oid}]}).status_code == 204
        assert http.get(f"{path}/{oid}").status_code == 404

        assert _restore(portal, segment, oid).status_code == 200

        assert http.get(f"{path}/{oid}", params={"properties": names}).json() == before
        assert http.get(f"{path}/{oid}", params={"archived": "true"}).status_code == 404

    def test_email_taken_by_another_live_contact_is_409(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        old = _create(http, email="reused@example.com")
        http.delete(f"{C}/{old}")
        new = _create(http, email="reused@example.com")

        body = _hubspot_error(_restore(portal, "contacts", old), 409, "CONFLICT")

        assert body["message"] == f"Contact already exists. Existing ID: {new}"
        assert http.get(f"{C}/{old}", params={"archived": "true"}).status_code == 200
        assert (
            http.get(f"{C}/reused@example.com", params={"idProperty": "email"}).json()["id"] == new
        )
        # Once the email is free again, the restore goes through.
        http.delete(f"{C}/{new}")
        assert _restore(portal, "contacts", old).status_code == 200
        by_email = http.get(f"{C}/reused@example.com", params={"idProperty": "email"})
        assert by_email.json()["id"] == old

    def test_gdpr_deleted_contact_cannot_be_restored(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        cid = _create(http, email="forgotten@example.com")
        assert http.post(f"{C}/gdpr-delete", json={"objectId": cid}).status_code == 204

        body = _hubspot_error(_restore(portal, "contacts", cid), 404, "OBJECT_NOT_FOUND")

        assert "permanently deleted (GDPR delete)" in body["message"]
        assert body["context"] == {"id": [cid]}
        assert http.get(f"{C}/{cid}").status_code == 404

    def test_merged_away_contact_cannot_be_restored(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        primary = _create(http, email="keep@example.com")
        merged = _create(http, email="gone@example.com")
        merge = http.post(
            f"{C}/merge", json={"primaryObjectId": primary, "objectIdToMerge": merged}
        )
        assert merge.status_code == 200

        body = _hubspot_error(_restore(portal, "contacts", merged), 400, "VALIDATION_ERROR")

        assert f"was merged into {primary}" in body["message"]
        assert body["context"]["mergedInto"] == [primary]
        assert http.get(f"{C}/{merged}").json()["id"] == primary  # still resolves to the primary

    def test_refusals_for_live_unknown_and_bad_requests(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        live = _create(http, email="alive@example.com")
        body = _hubspot_error(_restore(portal, "contacts", live), 400, "VALIDATION_ERROR")
        assert "is not archived" in body["message"]
        body = _hubspot_error(_restore(portal, "contacts", "999999"), 404, "OBJECT_NOT_FOUND")
        assert body["message"] == "Object not found.  objectId are usually numeric."
        _hubspot_error(_restore(portal, "widgets", live), 400, "VALIDATION_ERROR")
        bad_source = _restore(portal, "contacts", live, change_source=7)
        assert bad_source.status_code == 400
        assert bad_source.json()["error"] == "invalid_source"
        no_portal = httpx.post(
            f"{portal.sandbox.base_url}/_sandbox/portals/1/objects/contacts/{live}/restore"
        )
        assert no_portal.status_code == 404
        assert no_portal.json()["error"] == "portal_not_found"

    def test_recycle_bin_keeps_records_for_90_days(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        early = _create(http, email="early@example.com")
        late = _create(http, email="late@example.com")
        http.delete(f"{C}/{early}")
        http.delete(f"{C}/{late}")
        store = portal.sandbox.store
        offset = store.clock_offset_ms
        clock = f"{portal.sandbox.base_url}/_sandbox/clock"
        try:
            assert httpx.post(clock, json={"advance_seconds": 89 * DAY_S}).is_success
            assert _restore(portal, "contacts", early).status_code == 200
            assert httpx.post(clock, json={"advance_seconds": 2 * DAY_S}).is_success
            body = _hubspot_error(_restore(portal, "contacts", late), 400, "VALIDATION_ERROR")
            assert "more than 90 days ago" in body["message"]
        finally:
            store.clock_offset_ms = offset
        assert http.get(f"{C}/{late}", params={"archived": "true"}).status_code == 200

    def test_search_sees_the_restore_after_the_configured_lag(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        cid = _create(http, email="lagged@example.com")
        http.delete(f"{C}/{cid}")
        assert _search_ids(http, "lagged@example.com") == []
        lag = httpx.patch(portal.admin("/settings"), json={"search_lag_ms": 2000})
        assert lag.is_success

        started = time.monotonic()
        assert _restore(portal, "contacts", cid).status_code == 200
        assert _search_ids(http, "lagged@example.com") == []  # not yet: within the 2 s lag
        assert http.get(f"{C}/{cid}").status_code == 200  # reads by id are immediate
        deadline = time.monotonic() + 10
        while (found := _search_ids(http, "lagged@example.com")) != [cid]:
            assert time.monotonic() < deadline, "restored contact never became searchable"
            time.sleep(0.05)

        assert found == [cid]
        assert time.monotonic() - started >= 1.8


def test_gdpr_tombstones_survive_a_state_file(tmp_path: Path) -> None:
    """The reason a GDPR-deleted id cannot be restored is kept in the state file."""
    store = SandboxStore()
    portal = store.create_portal()
    portal.tables["contacts"].purged.add("123")
    state = tmp_path / "sandbox.json"
    store.save(state)
    loaded = SandboxStore()
    assert loaded.load(state)
    with pytest.raises(SandboxError) as raised:
        restore(loaded.portals[portal.id], OBJECT_TYPES["contacts"], "123", 0, ("CRM_UI", None))
    assert raised.value.status_code == 404
    assert "GDPR" in raised.value.message


class TestRestoreWebhooks:
    def test_signed_restore_events_for_contacts_and_companies(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.restore", "company.restore")
        cid = _create(http, email="phoenix@example.com")
        company = _create(http, CO, name="Phoenix Inc")
        blocked = _create(http, email="blocked@example.com")
        http.delete(f"{C}/{cid}")
        http.delete(f"{CO}/{company}")
        http.delete(f"{C}/{blocked}")
        _create(http, email="blocked@example.com")
        assert _restore(portal, "contacts", blocked).status_code == 409  # refused: no event
        time.sleep(0.2)
        assert receiver.requests == []  # archiving and creating fire no restore events

        assert _restore(portal, "contacts", cid).status_code == 200
        restored_company = _restore(
            portal, "companies", company, change_source="INTEGRATION", source_id="42"
        )
        assert restored_company.status_code == 200

        receiver.wait(lambda: len(receiver.events()) >= 2)
        time.sleep(0.2)  # nothing else may follow
        by_type = {e["subscriptionType"]: e for e in receiver.events()}
        assert len(receiver.events()) == 2
        contact_event = by_type["contact.restore"]
        assert contact_event["objectId"] == int(cid)
        assert contact_event["portalId"] == portal.id
        assert contact_event["appId"] == portal.portal.oauth_app_id
        assert contact_event["changeSource"] == "CRM_UI"
        assert contact_event["sourceId"] == "userId:1"
        assert contact_event["attemptNumber"] == 0
        assert isinstance(contact_event["occurredAt"], int)
        assert "propertyName" not in contact_event
        company_event = by_type["company.restore"]
        assert company_event["objectId"] == int(company)
        assert company_event["changeSource"] == "INTEGRATION"
        assert company_event["sourceId"] == "42"
        assert contact_event["subscriptionId"] != company_event["subscriptionId"]
        for request in receiver.requests:
            body = request.body.decode()
            assert Signature.is_valid(
                signature=request.headers["x-hubspot-signature-v3"],
                client_secret=portal.client_secret,
                request_body=body,
                http_uri=receiver.url,
                signature_version="v3",
                timestamp=request.headers["x-hubspot-request-timestamp"],
            )
            assert Signature.is_valid(
                signature=request.headers["x-hubspot-signature"],
                client_secret=portal.client_secret,
                request_body=body,
                signature_version="v1",
            )

    def test_restore_of_a_meeting_sends_nothing(
        self, http: httpx.Client, portal: PortalHandle, receiver: Receiver
    ) -> None:
        subscribe(portal, receiver, "contact.restore", "contact.creation")
        meeting = _create(http, "/crm/v3/objects/meetings", hs_timestamp="2026-10-05T13:00:00Z")
        http.delete(f"/crm/v3/objects/meetings/{meeting}")
        assert _restore(portal, "meetings", meeting).status_code == 200
        marker = _create(http, email="marker@example.com")  # a later event, to know we waited
        receiver.wait(lambda: bool(receiver.events()))
        time.sleep(0.1)
        assert [(e["subscriptionType"], e["objectId"]) for e in receiver.events()] == [
            ("contact.creation", int(marker))
        ]
