"""The optional HubSpot list: checked when the settings are saved (it must exist, hold
contacts and be a MANUAL list), and every contact the sync sends is added to it once."""

from __future__ import annotations

from typing import Any

from tests.sync.conftest import Sync


def _members(sync: Sync, list_id: str) -> set[str]:
    page = sync.hubspot("GET", f"/crm/v3/lists/{list_id}/memberships?limit=250")
    return {m["recordId"] for m in page["results"]}


def _list_adds(sync: Sync) -> int:
    counters = sync.sandbox.admin("GET", f"/portals/{sync.portal_id}/counters")
    return sum(
        n for key, n in counters["requests_by_endpoint"].items() if key.endswith("/memberships/add")
    )


def _manual_list(sync: Sync, name: str) -> str:
    made: dict[str, Any] = sync.hubspot(
        "POST",
        "/crm/v3/lists",
        {"name": name, "objectTypeId": "0-1", "processingType": "MANUAL"},
    )
    return str(made["list"]["listId"])


def test_contacts_the_sync_sends_are_added_to_the_list_once(sync: Sync) -> None:
    list_id = _manual_list(sync, "From Spoke")
    saved = sync.http.put("/v1/sync/contacts/settings", json={"hubspot_list_id": list_id})
    assert saved.status_code == 200, saved.text
    assert saved.json()["hubspot_list_id"] == list_id
    batch = [{"external_id": f"l{i}", "email": f"l{i}@example.com"} for i in range(3)]
    assert sync.http.post("/v1/users/batch", json={"items": batch}).status_code == 200
    sync.settle()
    ids = {sync.contact_by_email(f"l{i}@example.com")["id"] for i in range(3)}
    assert _members(sync, list_id) == ids
    adds = _list_adds(sync)
    records = sync.http.get("/v1/sync/contacts/records").json()["data"]
    assert {r["hubspot_list_id"] for r in records} == {list_id}

    sync.http.patch("/v1/users/l0", json={"first_name": "Changed"})
    sync.settle()
    assert _list_adds(sync) == adds  # already in the list: not added again
    assert _members(sync, list_id) == ids


def test_a_list_add_that_fails_is_retried_and_a_retry_can_be_asked_for(sync: Sync) -> None:
    list_id = _manual_list(sync, "Gone for a while")
    sync.http.put("/v1/sync/contacts/settings", json={"hubspot_list_id": list_id})
    sync.hubspot("DELETE", f"/crm/v3/lists/{list_id}")
    sync.http.put("/v1/users/lx", json={"email": "lx@example.com", "first_name": "X"})
    sync.settle()
    assert sync.contact_by_email("lx@example.com")["id"]  # the contact itself synced
    record = sync.http.get("/v1/sync/contacts/records", params={"state": "failing"}).json()
    [failing] = record["data"]
    assert failing["external_id"] == "lx"
    assert f"HubSpot list {list_id}" in failing["reason"]
    assert failing["next_attempt_at"] is not None

    sync.hubspot("PUT", f"/crm/v3/lists/{list_id}/restore")
    retried = sync.http.post("/v1/sync/contacts/records/lx/retry")
    assert retried.status_code == 200, retried.text
    sync.settle()
    link = sync.link_of("lx")
    assert link is not None
    assert (link.state, link.hubspot_list_id, link.failures) == ("in_sync", list_id, 0)
    assert _members(sync, list_id) == {link.hubspot_id}


def test_the_list_is_checked_when_saved(sync: Sync) -> None:
    before = sync.http.get("/v1/sync/contacts/settings").json()
    dynamic = sync.sandbox.admin(
        "POST", f"/portals/{sync.portal_id}/lists", {"name": "Active", "processing_type": "DYNAMIC"}
    )["listId"]
    companies: dict[str, Any] = sync.hubspot(
        "POST",
        "/crm/v3/lists",
        {"name": "Firms", "objectTypeId": "0-2", "processingType": "MANUAL"},
    )
    cases = {
        "987654": "has no list 987654",
        dynamic: "DYNAMIC list",
        companies["list"]["listId"]: "does not hold contacts",
    }
    for list_id, why in cases.items():
        refused = sync.http.put("/v1/sync/contacts/settings", json={"hubspot_list_id": list_id})
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        problem = refused.json()
        assert why in problem["detail"]
        assert problem["errors"][0]["field"] == "body.hubspot_list_id"
    malformed = sync.http.put("/v1/sync/contacts/settings", json={"hubspot_list_id": "abc"})
    assert malformed.status_code == 422
    after = sync.http.get("/v1/sync/contacts/settings").json()
    assert after["hubspot_list_id"] is None
    assert after["version"] == before["version"]
