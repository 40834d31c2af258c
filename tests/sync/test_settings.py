"""Contact sync settings: defaults, locked mappings, type checks, each field once, lists,
constants, versions, and mappings that stop when their field is deleted."""

from __future__ import annotations

from typing import Any

from tests.sync.conftest import Sync


def _put(sync: Sync, body: dict[str, Any]) -> Any:
    return sync.http.put("/v1/sync/contacts/settings", json=body)


def test_defaults_after_connecting(sync: Sync) -> None:
    body = sync.http.get("/v1/sync/contacts/settings").json()
    assert body["direction"] == "two_way"
    assert body["state"] == "active"
    assert body["lead_status"] == "CONNECTED"
    pairs = [(m["spoke"], m["hubspot"], m["locked"]) for m in body["mappings"]]
    assert pairs[:3] == [
        ("first_name", "firstname", True),
        ("last_name", "lastname", True),
        ("email", "email", True),
    ]
    assert ("phone", "phone", False) in pairs
    assert ("country", "country", False) in pairs
    assert body["pending_changes"] == 0


def test_locked_mappings_cannot_be_changed_but_are_always_kept(sync: Sync) -> None:
    refused = _put(sync, {"mappings": [{"spoke": "first_name", "hubspot": "jobtitle"}]})
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert any(e["type"] == "locked_mapping" for e in refused.json()["errors"])
    kept = _put(sync, {"mappings": [{"spoke": "company", "hubspot": "company"}]})
    assert kept.status_code == 200, kept.text
    pairs = {(m["spoke"], m["hubspot"]) for m in kept.json()["mappings"]}
    assert pairs == {
        ("first_name", "firstname"),
        ("last_name", "lastname"),
        ("email", "email"),
        ("company", "company"),
    }


def test_types_must_match_and_fields_are_mapped_once(sync: Sync) -> None:
    assert sync.http.post("/v1/fields", json={"name": "seats", "type": "number"}).status_code == 201
    mismatch = _put(sync, {"mappings": [{"spoke": "custom.seats", "hubspot": "jobtitle"}]})
    assert mismatch.status_code == 422
    assert [e["type"] for e in mismatch.json()["errors"]] == ["type_mismatch"]
    twice = _put(
        sync,
        {
            "mappings": [
                {"spoke": "company", "hubspot": "company"},
                {"spoke": "company", "hubspot": "jobtitle"},
            ]
        },
    )
    assert twice.status_code == 422
    assert [e["type"] for e in twice.json()["errors"]] == ["duplicate"]
    unknown = _put(sync, {"mappings": [{"spoke": "company", "hubspot": "no_such_prop"}]})
    assert [e["type"] for e in unknown.json()["errors"]] == ["unknown_property"]
    nofield = _put(sync, {"mappings": [{"spoke": "custom.nope", "hubspot": "jobtitle"}]})
    assert [e["type"] for e in nofield.json()["errors"]] == ["unknown_field"]


def test_constants_lists_and_versions(sync: Sync) -> None:
    first = sync.http.get("/v1/sync/contacts/settings").json()["version"]
    bad = _put(
        sync,
        {
            "constants": {"to_hubspot": {"firstname": "x", "nope": "y"}},
            "send_list_ids": ["lst_missing"],
        },
    )
    assert bad.status_code == 422
    kinds = sorted(e["type"] for e in bad.json()["errors"])
    assert kinds == ["duplicate", "unknown_list", "unknown_property"]
    ok = _put(sync, {"constants": {"to_hubspot": {"jobtitle": "From Spoke"}}})
    assert ok.status_code == 200
    assert ok.json()["version"] == first + 1
    same = _put(sync, {"constants": {"to_hubspot": {"jobtitle": "From Spoke"}}})
    assert same.json()["version"] == first + 1  # nothing changed, same version
    paused = _put(
        sync, {"state": "paused", "constants": {"to_hubspot": {"jobtitle": "From Spoke"}}}
    )
    assert paused.json()["version"] == first + 1  # pausing is not a settings change
    assert paused.json()["state"] == "paused"


def test_a_list_used_by_the_sync_cannot_be_deleted(sync: Sync) -> None:
    list_id = sync.http.post("/v1/lists", json={"name": "Synced"}).json()["id"]
    assert _put(sync, {"send_list_ids": [list_id]}).status_code == 200
    refused = sync.http.delete(f"/v1/lists/{list_id}")
    assert refused.status_code == 409
    assert _put(sync, {}).status_code == 200
    assert sync.http.delete(f"/v1/lists/{list_id}").status_code == 204


def test_deleting_a_mapped_custom_field_stops_that_mapping_and_says_so(sync: Sync) -> None:
    assert sync.http.post("/v1/fields", json={"name": "title", "type": "string"}).status_code == 201
    saved = _put(sync, {"mappings": [{"spoke": "custom.title", "hubspot": "jobtitle"}]})
    assert saved.status_code == 200, saved.text
    assert sync.http.delete("/v1/fields/title").status_code == 204
    body = sync.http.get("/v1/sync/contacts/settings").json()
    assert all(m["spoke"] != "custom.title" for m in body["mappings"])
    assert body["stopped_mappings"] == [
        {"spoke": "custom.title", "hubspot": "jobtitle", "reason": "the Spoke field was deleted"}
    ]


def test_settings_need_a_connection_and_an_admin(sync: Sync) -> None:
    from tests.conftest import create_tenant

    lonely = create_tenant(sync.tenant.backend)
    assert lonely.http.get("/v1/sync/contacts/settings").status_code == 404
    assert lonely.http.put("/v1/sync/contacts/settings", json={}).status_code == 404
    lonely.http.close()
