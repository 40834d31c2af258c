"""`POST /v1/users/batch`: up to 1,000 upserts with per-item results."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant
from tests.users.support import all_users, feed, fields_named, problem, put


def _batch(tenant: Tenant, items: list[dict[str, Any]]) -> dict[str, Any]:
    response = tenant.http.post("/v1/users/batch", json={"items": items})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_thousand_mixed_items_report_per_item_in_order(tenant: Tenant) -> None:
    assert (
        tenant.http.post("/v1/fields", json={"name": "score", "type": "number"}).status_code == 201
    )
    put(tenant, "u0003", first_name="Before")
    bad: dict[int, str] = {}
    items: list[dict[str, Any]] = []
    for i in range(1000):
        item: dict[str, Any] = {"external_id": f"u{i:04d}", "first_name": f"N{i}"}
        if i % 10 == 7:
            item["email"] = f"broken{i}"
            bad[i] = "invalid_input"
        elif i % 10 == 9:
            item["custom"] = {"score": "high"}
            bad[i] = "invalid_custom_field"
        elif i % 50 == 1:
            item["unknown_field"] = 1
            bad[i] = "invalid_input"
        else:
            item["email"] = f"User{i}@Example.com"
            item["custom"] = {"score": i}
        items.append(item)
    body = _batch(tenant, items)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(1000))
    assert [r["external_id"] for r in results] == [f"u{i:04d}" for i in range(1000)]
    for i, result in enumerate(results):
        if i in bad:
            assert result["status"] == "error", result
            assert result["error"]["code"] == bad[i], result
            assert result["version"] is None
        elif i == 3:
            assert result["status"] == "updated"
            assert result["version"] == 2
        else:
            assert result["status"] == "created", result
            assert result["version"] == 1
            assert result["error"] is None
    assert body["failed"] == len(bad)
    assert body["updated"] == 1
    assert body["created"] == 1000 - len(bad) - 1
    assert body["unchanged"] == 0

    stored = {u["external_id"]: u for u in all_users(tenant, limit=500)}
    assert set(stored) == {f"u{i:04d}" for i in range(1000) if i not in bad}
    assert stored["u0000"]["email"] == "user0@example.com"
    assert stored["u0998"]["custom"] == {"score": 998}
    # Nothing of the invalid items reached the feed either.
    written = {row["external_id"] for row in feed(tenant)}
    assert written == set(stored)


def test_item_errors_name_the_field(tenant: Tenant) -> None:
    assert (
        tenant.http.post("/v1/fields", json={"name": "score", "type": "number"}).status_code == 201
    )
    body = _batch(
        tenant,
        [
            {"external_id": "a", "email": "nope"},
            {"external_id": "b", "custom": {"score": "x"}},
            {"external_id": "c", "custom": {"nope": 1}},
            {"external_id": "d", "phone": "12", "country": "US"},
            {"first_name": "no id"},
            {"external_id": "e", "first_name": 5},
        ],
    )
    errors = [r["error"] for r in body["results"]]
    assert fields_named(errors[0]) == {"email"}
    assert fields_named(errors[1]) == {"custom.score"}
    assert errors[2]["code"] == "unknown_custom_field"
    assert fields_named(errors[2]) == {"custom.nope"}
    assert fields_named(errors[3]) == {"phone"}
    assert fields_named(errors[4]) == {"external_id"}
    assert body["results"][4]["external_id"] is None
    assert fields_named(errors[5]) == {"first_name"}
    assert body["failed"] == 6
    assert tenant.http.get("/v1/users").json()["data"] == []
    assert feed(tenant) == []


def test_batch_items_update_only_the_fields_they_name(tenant: Tenant) -> None:
    put(tenant, "u1", email="a@example.com", first_name="Ann", tags={"plan": "pro"})
    body = _batch(tenant, [{"external_id": "u1", "last_name": "Lee", "tags": {"seat": "2"}}])
    assert body["results"][0]["status"] == "updated"
    user = tenant.http.get("/v1/users/u1").json()
    assert user["email"] == "a@example.com"
    assert user["first_name"] == "Ann"
    assert user["last_name"] == "Lee"
    assert user["tags"] == {"plan": "pro", "seat": "2"}


def test_unchanged_items_are_reported_and_not_fed(tenant: Tenant) -> None:
    _batch(tenant, [{"external_id": "u1", "first_name": "Ann"}])
    seen = len(feed(tenant))
    body = _batch(tenant, [{"external_id": "u1", "first_name": "Ann"}])
    assert body["unchanged"] == 1
    assert body["results"][0]["status"] == "unchanged"
    assert body["results"][0]["version"] == 1
    assert len(feed(tenant)) == seen


def test_duplicate_external_ids_apply_in_order_like_two_calls(tenant: Tenant) -> None:
    body = _batch(
        tenant,
        [
            {"external_id": "dup", "first_name": "One", "tags": {"a": "1"}},
            {"external_id": "other", "first_name": "X"},
            {"external_id": "dup", "last_name": "Two", "tags": {"a": "", "b": "2"}},
            {"external_id": "dup", "email": "bad"},
        ],
    )
    statuses = [(r["external_id"], r["status"], r["version"]) for r in body["results"]]
    assert statuses == [
        ("dup", "created", 1),
        ("other", "created", 1),
        ("dup", "updated", 2),
        ("dup", "error", None),
    ]
    user = tenant.http.get("/v1/users/dup").json()
    assert (user["first_name"], user["last_name"], user["email"]) == ("One", "Two", None)
    assert user["tags"] == {"b": "2"}
    assert user["version"] == 2
    kinds = [(row["external_id"], row["kind"]) for row in feed(tenant)]
    assert kinds == [("dup", "created"), ("other", "created"), ("dup", "updated")]


def test_batch_over_the_limit_is_422_and_writes_nothing(tenant: Tenant) -> None:
    items = [{"external_id": f"u{i}"} for i in range(1001)]
    body = problem(tenant.http.post("/v1/users/batch", json={"items": items}), 422, "invalid_input")
    assert fields_named(body) == {"body.items"}
    assert tenant.http.get("/v1/users").json()["data"] == []
    assert feed(tenant) == []


def test_empty_batch_is_422(tenant: Tenant) -> None:
    body = problem(tenant.http.post("/v1/users/batch", json={"items": []}), 422, "invalid_input")
    assert any(f.startswith("body.items") for f in fields_named(body))


def test_batch_with_non_object_items_is_422(tenant: Tenant) -> None:
    response = tenant.http.post("/v1/users/batch", json={"items": [{"external_id": "a"}, 5]})
    body = problem(response, 422, "invalid_input")
    assert any(f.startswith("body.items.1") for f in fields_named(body))
    problem(tenant.http.get("/v1/users/a"), 404, "user_not_found")


def test_batch_with_unknown_top_level_field_is_422(tenant: Tenant) -> None:
    response = tenant.http.post(
        "/v1/users/batch", json={"items": [{"external_id": "a"}], "mode": "replace"}
    )
    body = problem(response, 422, "invalid_input")
    assert fields_named(body) == {"body.mode"}
    problem(tenant.http.get("/v1/users/a"), 404, "user_not_found")
