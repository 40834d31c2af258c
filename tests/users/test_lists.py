"""Lists: CRUD, bulk membership, member counts, and lists in use refusing deletion."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant
from tests.users.support import all_users, feed, fields_named, problem, put

from spoke.core.db import session_scope
from spoke.users import lists as lists_service


def _new_list(tenant: Tenant, name: str = "Beta", **extra: Any) -> dict[str, Any]:
    response = tenant.http.post("/v1/lists", json={"name": name, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _members(tenant: Tenant, list_id: str) -> list[str]:
    return [u["external_id"] for u in all_users(tenant, list=list_id)]


def test_list_crud(tenant: Tenant) -> None:
    created = _new_list(tenant, "  Beta testers ", description="Early access")
    assert created["id"].startswith("lst")
    assert (created["name"], created["description"]) == ("Beta testers", "Early access")
    assert (created["member_count"], created["used_by"]) == (0, [])
    assert tenant.http.get(f"/v1/lists/{created['id']}").json() == created
    _new_list(tenant, "Alpha")
    assert [x["name"] for x in tenant.http.get("/v1/lists").json()] == ["Alpha", "Beta testers"]

    renamed = tenant.http.patch(f"/v1/lists/{created['id']}", json={"name": "Gamma"})
    assert renamed.status_code == 200
    assert renamed.json()["name"] == "Gamma"
    assert renamed.json()["description"] == "Early access"
    problem(
        tenant.http.patch(f"/v1/lists/{created['id']}", json={"name": "Alpha"}),
        409,
        "list_name_taken",
    )
    problem(tenant.http.post("/v1/lists", json={"name": "Alpha"}), 409, "list_name_taken")

    assert tenant.http.delete(f"/v1/lists/{created['id']}").status_code == 204
    problem(tenant.http.get(f"/v1/lists/{created['id']}"), 404, "list_not_found")
    problem(tenant.http.delete(f"/v1/lists/{created['id']}"), 404, "list_not_found")
    assert [x["name"] for x in tenant.http.get("/v1/lists").json()] == ["Alpha"]


def test_invalid_list_bodies_are_422(tenant: Tenant) -> None:
    for body, field in (
        ({"name": ""}, "body.name"),
        ({"name": "   "}, "body.name"),
        ({}, "body.name"),
        ({"name": "x", "color": "red"}, "body.color"),
    ):
        response = problem(tenant.http.post("/v1/lists", json=body), 422, "invalid_input")
        assert field in fields_named(response), body
    assert tenant.http.get("/v1/lists").json() == []


def test_bulk_membership_add_and_remove(tenant: Tenant) -> None:
    for ext in ("a", "b", "c"):
        put(tenant, ext, first_name=ext)
    put(tenant, "gone")
    tenant.http.delete("/v1/users/gone")
    lst = _new_list(tenant)
    path = f"/v1/lists/{lst['id']}/members"

    added = tenant.http.post(path, json={"external_ids": ["a", "b", "ghost", "a", "gone"]})
    assert added.status_code == 200
    assert added.json() == {"changed": 2, "unchanged": 0, "not_found": ["ghost", "gone"]}
    assert _members(tenant, lst["id"]) == ["a", "b"]
    assert tenant.http.get(f"/v1/lists/{lst['id']}").json()["member_count"] == 2
    assert tenant.http.get("/v1/users/a").json()["lists"] == [lst["id"]]

    again = tenant.http.post(path, json={"external_ids": ["b", "c"]})
    assert again.json() == {"changed": 1, "unchanged": 1, "not_found": []}
    assert tenant.http.get(f"/v1/lists/{lst['id']}").json()["member_count"] == 3

    removed = tenant.http.post(f"{path}/remove", json={"external_ids": ["a", "c", "ghost"]})
    assert removed.json() == {"changed": 2, "unchanged": 0, "not_found": ["ghost"]}
    assert _members(tenant, lst["id"]) == ["b"]
    assert tenant.http.get("/v1/users/a").json()["lists"] == []
    assert tenant.http.get(f"/v1/lists/{lst['id']}").json()["member_count"] == 1


def test_membership_changes_are_in_the_feed_and_bump_the_user(tenant: Tenant) -> None:
    before = put(tenant, "a")
    lst = _new_list(tenant)
    tenant.http.post(f"/v1/lists/{lst['id']}/members", json={"external_ids": ["a"]})
    after = tenant.http.get("/v1/users/a").json()
    assert after["version"] == before["version"] + 1
    assert after["updated_at"] > before["updated_at"]
    tenant.http.post(f"/v1/lists/{lst['id']}/members/remove", json={"external_ids": ["a"]})
    rows = [r for r in feed(tenant) if r["kind"] == "lists"]
    assert [r["changes"] for r in rows] == [
        {f"lists.{lst['id']}": [False, True]},
        {f"lists.{lst['id']}": [True, False]},
    ]
    assert all(r["external_id"] == "a" and r["origin"] == "api" for r in rows)


def test_deleted_members_are_not_counted_until_restored(tenant: Tenant) -> None:
    put(tenant, "a")
    put(tenant, "b")
    lst = _new_list(tenant)
    tenant.http.post(f"/v1/lists/{lst['id']}/members", json={"external_ids": ["a", "b"]})
    tenant.http.delete("/v1/users/a")
    assert tenant.http.get(f"/v1/lists/{lst['id']}").json()["member_count"] == 1
    assert _members(tenant, lst["id"]) == ["b"]
    tenant.http.post("/v1/users/a/restore")
    assert tenant.http.get(f"/v1/lists/{lst['id']}").json()["member_count"] == 2
    assert tenant.http.get("/v1/users/a").json()["lists"] == [lst["id"]]


def test_membership_requests_are_validated(tenant: Tenant) -> None:
    lst = _new_list(tenant)
    path = f"/v1/lists/{lst['id']}/members"
    problem(tenant.http.post(path, json={"external_ids": []}), 422, "invalid_input")
    too_many = {"external_ids": [f"u{i}" for i in range(1001)]}
    problem(tenant.http.post(path, json=too_many), 422, "invalid_input")
    problem(tenant.http.post(path, json={"external_ids": [" x"]}), 422, "invalid_input")
    problem(
        tenant.http.post("/v1/lists/lst_nope/members", json={"external_ids": ["a"]}),
        404,
        "list_not_found",
    )


def test_deleting_a_list_keeps_its_users(tenant: Tenant) -> None:
    put(tenant, "a")
    put(tenant, "outsider")
    lst = _new_list(tenant)
    tenant.http.post(f"/v1/lists/{lst['id']}/members", json={"external_ids": ["a"]})
    before = tenant.http.get("/v1/users/a").json()
    assert tenant.http.delete(f"/v1/lists/{lst['id']}").status_code == 204
    user = tenant.http.get("/v1/users/a").json()
    assert user["lists"] == []
    # The user's `lists` changed: like a membership removal, it bumps version and updated_at
    # so a poller on updated_since sees it.
    assert user["version"] == before["version"] + 1
    assert user["updated_at"] > before["updated_at"]
    polled = all_users(tenant, updated_since=before["updated_at"])
    assert [u["external_id"] for u in polled] == ["a"]
    assert feed(tenant)[-1]["changes"] == {f"lists.{lst['id']}": [True, False]}
    problem(tenant.http.get("/v1/users", params={"list": lst["id"]}), 404, "list_not_found")


def test_a_list_in_use_refuses_deletion(tenant: Tenant) -> None:
    put(tenant, "a")
    lst = _new_list(tenant)
    tenant.http.post(f"/v1/lists/{lst['id']}/members", json={"external_ids": ["a"]})
    runtime = tenant.backend.runtime
    with session_scope(runtime.sessions) as session:
        found = lists_service.get_list(session, tenant.workspace_id, lst["id"])
        lists_service.add_usage(session, found, "sync.contacts.outbound", "sync_1")
    assert tenant.http.get(f"/v1/lists/{lst['id']}").json()["used_by"] == [
        "sync.contacts.outbound:sync_1"
    ]
    seen = feed(tenant)
    body = problem(tenant.http.delete(f"/v1/lists/{lst['id']}"), 409, "list_in_use")
    assert body["used_by"] == ["sync.contacts.outbound:sync_1"]
    assert tenant.http.get(f"/v1/lists/{lst['id']}").json()["member_count"] == 1
    assert tenant.http.get("/v1/users/a").json()["lists"] == [lst["id"]]
    assert feed(tenant) == seen

    with session_scope(runtime.sessions) as session:
        found = lists_service.get_list(session, tenant.workspace_id, lst["id"])
        lists_service.remove_usage(session, found, "sync.contacts.outbound", "sync_1")
    assert tenant.http.delete(f"/v1/lists/{lst['id']}").status_code == 204


def test_lists_of_another_workspace_are_invisible(tenant: Tenant, other_tenant: Tenant) -> None:
    theirs = _new_list(other_tenant, "Theirs")
    put(tenant, "a")
    problem(tenant.http.get(f"/v1/lists/{theirs['id']}"), 404, "list_not_found")
    problem(
        tenant.http.patch(f"/v1/lists/{theirs['id']}", json={"name": "x"}), 404, "list_not_found"
    )
    problem(
        tenant.http.post(f"/v1/lists/{theirs['id']}/members", json={"external_ids": ["a"]}),
        404,
        "list_not_found",
    )
    problem(tenant.http.get("/v1/users", params={"list": theirs["id"]}), 404, "list_not_found")
    # Same names in two workspaces are fine.
    _new_list(tenant, "Theirs")
    assert other_tenant.http.get(f"/v1/lists/{theirs['id']}").json()["member_count"] == 0
