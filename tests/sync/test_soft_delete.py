"""Deletes in Spoke, as HubSpot sees them: `soft` marks the contact `spoke_deleted` (the
property is created on first need, in a `spoke` group) and a restore clears it; `never`
leaves HubSpot alone."""

from __future__ import annotations

from tests.sync.conftest import Sync


def _spoke_deleted(sync: Sync, contact_id: str) -> str | None:
    found = sync.hubspot(
        "GET", f"/crm/v3/objects/contacts/{contact_id}?properties=spoke_deleted,firstname"
    )
    value: str | None = found["properties"].get("spoke_deleted")
    return value


def test_soft_delete_marks_the_contact_and_restore_clears_it(sync: Sync) -> None:
    assert sync.http.get("/v1/sync/contacts/settings").json()["delete_policy"] == "soft"
    sync.http.put("/v1/users/s1", json={"email": "s1@example.com", "first_name": "S"})
    sync.settle()
    contact_id = sync.contact_by_email("s1@example.com")["id"]

    assert sync.http.delete("/v1/users/s1").status_code == 204
    sync.settle()
    assert _spoke_deleted(sync, contact_id) == "true"
    definition = sync.hubspot("GET", "/crm/v3/properties/contacts/spoke_deleted")
    assert (definition["type"], definition["fieldType"], definition["groupName"]) == (
        "bool",
        "booleancheckbox",
        "spoke",
    )
    link = sync.link_of("s1")
    assert link is not None
    assert (link.state, link.marked_deleted, link.hubspot_id) == ("excluded", True, contact_id)
    assert link.reason is not None
    assert "spoke_deleted" in link.reason

    writes = sync.writes()
    sync.settle()
    assert sync.writes() == writes  # marked once

    assert sync.http.post("/v1/users/s1/restore").status_code == 200
    sync.settle()
    assert _spoke_deleted(sync, contact_id) in (None, "")
    restored = sync.link_of("s1")
    assert restored is not None
    assert (restored.state, restored.marked_deleted) == ("in_sync", False)

    # A second delete reuses the property made the first time.
    assert sync.http.delete("/v1/users/s1").status_code == 204
    sync.settle()
    assert _spoke_deleted(sync, contact_id) == "true"


def test_never_leaves_hubspot_alone(sync: Sync) -> None:
    sync.http.put("/v1/sync/contacts/settings", json={"delete_policy": "never"})
    sync.http.put("/v1/users/n1", json={"email": "n1@example.com", "first_name": "N"})
    sync.settle()
    contact_id = sync.contact_by_email("n1@example.com")["id"]
    writes = sync.writes()
    assert sync.http.delete("/v1/users/n1").status_code == 204
    sync.settle()
    assert sync.writes() == writes
    assert _spoke_deleted(sync, contact_id) is None
    assert sync.contact_by_email("n1@example.com", "firstname")["properties"]["firstname"] == "N"
