"""The settings' HubSpot list on every path: the manual sync to HubSpot adds what it sends
(once per link, one membership call per page; a dry run only counts), a changed list is
filled on the next send, and contacts that only came from HubSpot stay out of it until
Spoke sends them (see `contact_marks`)."""

from __future__ import annotations

from typing import Any

from tests.sync.conftest import Sync


def _manual_list(sync: Sync, name: str) -> str:
    made: dict[str, Any] = sync.hubspot(
        "POST", "/crm/v3/lists", {"name": name, "objectTypeId": "0-1", "processingType": "MANUAL"}
    )
    return str(made["list"]["listId"])


def _members(sync: Sync, list_id: str) -> set[str]:
    found: set[str] = set()
    after = 0
    while True:
        page = sync.hubspot("GET", f"/crm/v3/lists/{list_id}/memberships?limit=250&after={after}")
        found |= {m["recordId"] for m in page["results"]}
        if not page.get("paging"):
            return found
        after = int(page["paging"]["next"]["after"])


def _list_add_calls(sync: Sync) -> int:
    counters = sync.sandbox.admin("GET", f"/portals/{sync.portal_id}/counters")
    return sum(
        n for key, n in counters["requests_by_endpoint"].items() if key.endswith("/memberships/add")
    )


def _settings(sync: Sync, **body: Any) -> None:
    saved = sync.http.put("/v1/sync/contacts/settings", json=body)
    assert saved.status_code == 200, saved.text


def _existing_users(sync: Sync, count: int, list_id: str) -> None:
    """Users that existed before the sync was switched on: real time never sent them."""
    _settings(sync, state="paused", hubspot_list_id=list_id)
    items = [{"external_id": f"u{i}", "email": f"u{i}@example.com"} for i in range(count)]
    assert sync.http.post("/v1/users/batch", json={"items": items}).status_code == 200
    sync.skip_changes_so_far()
    _settings(sync, hubspot_list_id=list_id)


def _run(sync: Sync, **body: Any) -> dict[str, Any]:
    started = sync.http.post("/v1/sync/contacts/runs", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    sync.runtime.jobs.run_now("sync.manual_run", run_id=run_id)
    run: dict[str, Any] = sync.http.get(f"/v1/sync/contacts/runs/{run_id}").json()
    assert run["status"] == "succeeded", run
    return run


def _contact_ids(sync: Sync, count: int) -> set[str]:
    return {sync.contact_by_email(f"u{i}@example.com")["id"] for i in range(count)}


def test_manual_run_to_hubspot_adds_what_it_sends_once_per_link(sync: Sync) -> None:
    list_id = _manual_list(sync, "From Spoke")
    _existing_users(sync, 150, list_id)
    _settings(sync, state="paused", hubspot_list_id=list_id)  # leave u7 to the manual run
    sync.hubspot("POST", "/crm/v3/objects/contacts", {"properties": {"email": "u7@example.com"}})
    sync.settle()

    dry = _run(sync, direction="to_hubspot", dry_run=True)
    assert dry["list_adds"] == 150  # the created and the one matched by email alike
    assert _list_add_calls(sync) == 0
    assert _members(sync, list_id) == set()

    run = _run(sync, direction="to_hubspot")
    assert (run["list_adds"], run["failed"]) == (150, 0)
    assert _members(sync, list_id) == _contact_ids(sync, 150)
    assert _list_add_calls(sync) == 2  # one call per page of 100
    records = sync.http.get("/v1/sync/contacts/records", params={"limit": 500}).json()["data"]
    assert {(r["state"], r["hubspot_list_id"]) for r in records} == {("in_sync", list_id)}

    again = _run(sync, direction="to_hubspot")
    assert again["list_adds"] == 0
    assert _list_add_calls(sync) == 2  # every link remembers the list: nothing re-added
    assert _run(sync, direction="to_hubspot", dry_run=True)["list_adds"] == 0
    before = _list_add_calls(sync)
    _settings(sync, hubspot_list_id=list_id)
    sync.settle()  # nor does real time add anything afterwards
    assert _list_add_calls(sync) == before


def test_manual_run_with_hubspot_as_source_adds_unchanged_contacts_too(sync: Sync) -> None:
    list_id = _manual_list(sync, "Compared")
    _existing_users(sync, 3, list_id)
    _settings(sync, state="paused", hubspot_list_id=list_id)
    sync.hubspot("POST", "/crm/v3/objects/contacts", {"properties": {"email": "u1@example.com"}})
    sync.settle()
    run = _run(sync, direction="to_hubspot", source_app="hubspot")
    assert (run["created"], run["unchanged"], run["list_adds"]) == (2, 1, 3)
    assert _members(sync, list_id) == _contact_ids(sync, 3)


def test_a_new_list_is_filled_on_the_next_send_in_real_time_and_by_a_manual_run(
    sync: Sync,
) -> None:
    first = _manual_list(sync, "First")
    _settings(sync, hubspot_list_id=first)
    batch = [{"external_id": f"u{i}", "email": f"u{i}@example.com"} for i in range(3)]
    assert sync.http.post("/v1/users/batch", json={"items": batch}).status_code == 200
    sync.settle()
    contacts = _contact_ids(sync, 3)
    assert _members(sync, first) == contacts

    second = _manual_list(sync, "Second")
    _settings(sync, hubspot_list_id=second)
    sync.http.patch("/v1/users/u0", json={"first_name": "Sent again"})
    sync.settle()
    u0 = sync.contact_by_email("u0@example.com")["id"]
    assert _members(sync, second) == {u0}  # only the contact sent since the change
    assert _members(sync, first) == contacts  # nothing is taken out of the old list
    calls = _list_add_calls(sync)

    run = _run(sync, direction="to_hubspot")
    assert run["list_adds"] == 2  # the two not yet sent to the new list
    assert _members(sync, second) == contacts
    assert _list_add_calls(sync) == calls + 1
    for external_id in ("u0", "u1", "u2"):
        link = sync.link_of(external_id)
        assert link is not None
        assert link.hubspot_list_id == second


def test_contacts_that_only_came_from_hubspot_stay_out_of_the_list(sync: Sync) -> None:
    list_id = _manual_list(sync, "Spoke's")
    _settings(sync, hubspot_list_id=list_id)
    made = sync.hubspot(
        "POST", "/crm/v3/objects/contacts", {"properties": {"email": "hs@example.com"}}
    )
    sync.settle()  # inbound in real time
    assert sync.http.get(f"/v1/users/hubspot-{made['id']}").status_code == 200
    _settings(sync, state="paused", hubspot_list_id=list_id)
    sync.hubspot("POST", "/crm/v3/objects/contacts", {"properties": {"email": "old@example.com"}})
    sync.settle()
    to_spoke = _run(sync, direction="to_spoke")  # the manual sync to Spoke
    assert to_spoke["created"] == 1
    assert to_spoke["list_adds"] == 0
    _settings(sync, hubspot_list_id=list_id)
    sync.settle()
    assert _members(sync, list_id) == set()
    assert _list_add_calls(sync) == 0

    # Once Spoke sends one (a change made in Spoke), it is a contact from Spoke too.
    patched = sync.http.patch(f"/v1/users/hubspot-{made['id']}", json={"first_name": "Edited"})
    assert patched.status_code == 200, patched.text
    sync.settle()
    assert _members(sync, list_id) == {made["id"]}
