"""Tags: `PATCH /v1/users/{id}/tags` sets keys, `""` deletes one, others are kept."""

from __future__ import annotations

from tests.conftest import Tenant
from tests.users.support import feed, fields_named, problem, put


def test_tags_patch_sets_and_deletes_keys(tenant: Tenant) -> None:
    put(tenant, "u1", tags={"plan": "pro", "seat": "3"})
    response = tenant.http.patch(
        "/v1/users/u1/tags", json={"tags": {"seat": "", "region": "eu", "plan": "team"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["tags"] == {"plan": "team", "region": "eu"}
    assert body["version"] == 2
    assert tenant.http.get("/v1/users/u1").json()["tags"] == body["tags"]
    change = feed(tenant)[-1]
    assert change["changes"] == {
        "tags.seat": ["3", None],
        "tags.region": [None, "eu"],
        "tags.plan": ["pro", "team"],
    }


def test_deleting_a_missing_tag_changes_nothing(tenant: Tenant) -> None:
    put(tenant, "u1", tags={"plan": "pro"})
    seen = feed(tenant)
    body = tenant.http.patch("/v1/users/u1/tags", json={"tags": {"nope": ""}}).json()
    assert body["tags"] == {"plan": "pro"}
    assert body["version"] == 1
    assert feed(tenant) == seen


def test_tags_patch_leaves_the_profile_alone(tenant: Tenant) -> None:
    put(tenant, "u1", email="a@example.com", first_name="Ann")
    body = tenant.http.patch("/v1/users/u1/tags", json={"tags": {"k": "v"}}).json()
    assert (body["email"], body["first_name"]) == ("a@example.com", "Ann")


def test_tags_patch_on_a_missing_user_is_404(tenant: Tenant) -> None:
    problem(
        tenant.http.patch("/v1/users/ghost/tags", json={"tags": {"k": "v"}}), 404, "user_not_found"
    )
    problem(tenant.http.get("/v1/users/ghost"), 404, "user_not_found")


def test_bad_tags_are_422_and_change_nothing(tenant: Tenant) -> None:
    put(tenant, "u1", tags={"plan": "pro"})
    cases = [
        ({"tags": {" padded": "v"}}, "body.tags"),
        ({"tags": {"": "v"}}, "body.tags"),
        ({"tags": {"k" * 129: "v"}}, "body.tags"),
        ({"tags": {"k": "v" * 1025}}, "body.tags.k"),
        ({"tags": {"k": 5}}, "body.tags.k"),
        ({"tags": {"k": None}}, "body.tags.k"),
        ({"tags": {f"k{i}": "v" for i in range(201)}}, "body.tags"),
        ({"tags": ["k"]}, "body.tags"),
        ({}, "body.tags"),
        ({"tags": {"k": "v"}, "other": 1}, "body.other"),
    ]
    for payload, field in cases:
        body = problem(tenant.http.patch("/v1/users/u1/tags", json=payload), 422, "invalid_input")
        assert fields_named(body) == {field}, (payload, body)
    assert tenant.http.get("/v1/users/u1").json()["tags"] == {"plan": "pro"}
    assert len(feed(tenant)) == 1


def test_tags_take_any_printable_key_and_unicode_values(tenant: Tenant) -> None:
    body = tenant.http.put(
        "/v1/users/u1", json={"tags": {"app.version": "2.1", "언어": "한국어", "a b": "x"}}
    ).json()
    assert body["tags"] == {"app.version": "2.1", "언어": "한국어", "a b": "x"}
