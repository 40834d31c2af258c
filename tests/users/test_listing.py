"""`GET /v1/users`: filters and cursor pagination."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import Tenant
from tests.users.support import all_users, fields_named, problem, put


def _ids(users: list[dict[str, object]]) -> list[object]:
    return [u["external_id"] for u in users]


def _batch(tenant: Tenant, items: list[dict[str, object]]) -> None:
    response = tenant.http.post("/v1/users/batch", json={"items": items})
    assert response.status_code == 200
    assert response.json()["failed"] == 0


def test_pages_cover_every_user_once_in_creation_order(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": f"u{i:03d}"} for i in range(95)])
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        body = tenant.http.get("/v1/users", params=params).json()
        pages.append(_ids(body["data"]))
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [10] * 9 + [5]
    assert [x for p in pages for x in p] == [f"u{i:03d}" for i in range(95)]


def test_an_exact_last_page_has_no_next_cursor(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": f"u{i}"} for i in range(4)])
    first = tenant.http.get("/v1/users", params={"limit": 2}).json()
    second = tenant.http.get("/v1/users", params={"limit": 2, "cursor": first["next_cursor"]})
    assert len(second.json()["data"]) == 2
    assert second.json()["next_cursor"] is None


def test_default_page_size_and_limit_bounds(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": f"u{i:03d}"} for i in range(60)])
    body = tenant.http.get("/v1/users").json()
    assert len(body["data"]) == 50
    assert body["next_cursor"] is not None
    problem(tenant.http.get("/v1/users", params={"limit": 0}), 422, "invalid_input")
    problem(tenant.http.get("/v1/users", params={"limit": 1001}), 422, "invalid_input")


def test_writes_between_pages_cause_no_duplicates_or_gaps(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": f"u{i:03d}"} for i in range(20)])
    first = tenant.http.get("/v1/users", params={"limit": 7}).json()
    # Meanwhile: a new user, an update and a delete of an unseen user.
    put(tenant, "u999")
    tenant.http.patch("/v1/users/u002", json={"first_name": "changed"})
    tenant.http.delete("/v1/users/u015")
    seen = _ids(first["data"])
    cursor = first["next_cursor"]
    while cursor:
        body = tenant.http.get("/v1/users", params={"limit": 7, "cursor": cursor}).json()
        seen.extend(_ids(body["data"]))
        cursor = body["next_cursor"]
    assert len(seen) == len(set(seen))
    expected = [f"u{i:03d}" for i in range(20) if i != 15] + ["u999"]
    assert seen == expected


def test_updated_since_orders_by_update_time_and_pages_without_gaps(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": f"old{i}"} for i in range(5)])
    time.sleep(0.01)
    marker = put(tenant, "marker")["updated_at"]
    # One batch: many users share one updated_at, so the id breaks the ties.
    _batch(tenant, [{"external_id": f"new{i:02d}"} for i in range(23)])
    tenant.http.patch("/v1/users/old1", json={"first_name": "touched"})
    users = all_users(tenant, updated_since=marker, limit=4)
    expected = ["marker", *[f"new{i:02d}" for i in range(23)], "old1"]
    assert _ids(users) == expected
    stamps = [u["updated_at"] for u in users]
    assert stamps == sorted(stamps)


def test_updated_since_a_poller_resumes_and_sees_later_updates(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": f"u{i}"} for i in range(6)])
    start = tenant.http.get("/v1/users/u0").json()["updated_at"]
    first = tenant.http.get("/v1/users", params={"updated_since": start, "limit": 3}).json()
    assert _ids(first["data"]) == ["u0", "u1", "u2"]
    time.sleep(0.01)
    tenant.http.patch("/v1/users/u0", json={"first_name": "again"})
    rest = all_users(tenant, updated_since=start, limit=3, cursor=first["next_cursor"])
    # u0 changed after the first page: it shows up again at the end, nothing is skipped.
    assert _ids(rest) == ["u3", "u4", "u5", "u0"]


def test_updated_since_needs_a_time_zone(tenant: Tenant) -> None:
    problem(
        tenant.http.get("/v1/users", params={"updated_since": "2026-01-01T00:00:00"}),
        422,
        "invalid_input",
    )
    problem(
        tenant.http.get("/v1/users", params={"updated_since": "yesterday"}), 422, "invalid_input"
    )
    ok = tenant.http.get("/v1/users", params={"updated_since": "2000-01-01T00:00:00+09:00"})
    assert ok.status_code == 200


def test_updated_since_in_the_future_is_empty(tenant: Tenant) -> None:
    put(tenant, "u1")
    body = tenant.http.get("/v1/users", params={"updated_since": "2999-01-01T00:00:00Z"}).json()
    assert body == {"data": [], "next_cursor": None}


def test_filter_by_email_is_normalised(tenant: Tenant) -> None:
    put(tenant, "a", email="ann@example.com")
    put(tenant, "b", email="bob@example.com")
    put(tenant, "c", email="ann@example.com")
    assert _ids(all_users(tenant, email="  ANN@example.COM ")) == ["a", "c"]
    assert all_users(tenant, email="nobody@example.com") == []
    body = problem(tenant.http.get("/v1/users", params={"email": "nope"}), 422, "invalid_input")
    assert fields_named(body) == {"query.email"}


def test_filter_by_tag_and_tag_value(tenant: Tenant) -> None:
    put(tenant, "a", tags={"plan": "pro"})
    put(tenant, "b", tags={"plan": "free"})
    put(tenant, "c", tags={"beta": "yes"})
    assert _ids(all_users(tenant, tag="plan")) == ["a", "b"]
    assert _ids(all_users(tenant, tag="plan", tag_value="free")) == ["b"]
    assert all_users(tenant, tag="plan", tag_value="team") == []
    problem(tenant.http.get("/v1/users", params={"tag_value": "x"}), 422, "invalid_input")


def test_filter_by_list_and_combined_filters(tenant: Tenant) -> None:
    for ext, email, plan in (
        ("a", "x@example.com", "pro"),
        ("b", "x@example.com", "free"),
        ("c", "y@example.com", "pro"),
    ):
        put(tenant, ext, email=email, tags={"plan": plan})
    lst = tenant.http.post("/v1/lists", json={"name": "L"}).json()
    tenant.http.post(f"/v1/lists/{lst['id']}/members", json={"external_ids": ["a", "b", "c"]})
    assert _ids(all_users(tenant, list=lst["id"])) == ["a", "b", "c"]
    assert _ids(all_users(tenant, list=lst["id"], tag="plan", tag_value="pro")) == ["a", "c"]
    assert _ids(
        all_users(tenant, list=lst["id"], email="x@example.com", tag="plan", tag_value="pro")
    ) == ["a"]
    problem(tenant.http.get("/v1/users", params={"list": "lst_nope"}), 404, "list_not_found")


def test_include_deleted(tenant: Tenant) -> None:
    for ext in ("a", "b", "c"):
        put(tenant, ext, tags={"t": "1"})
    tenant.http.delete("/v1/users/b")
    assert _ids(all_users(tenant)) == ["a", "c"]
    assert _ids(all_users(tenant, tag="t")) == ["a", "c"]
    everyone = all_users(tenant, include_deleted="true", limit=1)
    assert _ids(everyone) == ["a", "b", "c"]
    assert everyone[1]["deleted_at"] is not None


def test_other_workspaces_users_are_not_listed(tenant: Tenant, other_tenant: Tenant) -> None:
    put(other_tenant, "theirs", email="x@example.com", tags={"t": "1"})
    put(tenant, "mine")
    assert _ids(all_users(tenant)) == ["mine"]
    assert all_users(tenant, email="x@example.com") == []
    assert all_users(tenant, tag="t") == []


def test_bad_cursors_are_400_invalid_cursor(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": f"u{i}"} for i in range(3)])
    by_id = tenant.http.get("/v1/users", params={"limit": 1}).json()["next_cursor"]
    since = {"updated_since": "2000-01-01T00:00:00Z"}
    by_time = tenant.http.get("/v1/users", params={"limit": 1, **since}).json()["next_cursor"]
    for cursor, extra in (
        ("garbage!!", {}),
        ("bm90IGpzb24", {}),  # base64 of "not json"
        ("e30", {}),  # base64 of "{}"
        ("WyJ4Il0", {}),  # ["x"]
        (by_id, since),  # an id cursor used while ordering by time
        (by_time, {}),
        ("WyJub3QgYSB0aW1lIiwgMV0", since),  # ["not a time", 1]
        ("WzEsIDJd", since),  # [1, 2]
        ("WzEuNV0", {}),  # [1.5]
        ("W3RydWVd", {}),  # [true]
        ("W251bGxd", {}),  # [null]
        ("WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDBd", {}),  # [10**30]
        ("WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwgMV0", since),  # a time without a zone
        ("WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgIngiXQ", since),  # a string id
    ):
        response = tenant.http.get("/v1/users", params={"cursor": cursor, **extra})
        problem(response, 400, "invalid_cursor")
