"""Audience filters resolved by the database (SQLite and PostgreSQL): every operator, OR
groups, custom fields, lists, last seen; saved segments; sends to them through FCM."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import Tenant
from tests.messaging.support import Fcm, connect_fcm, register, run_fanout, token_for
from tests.users.support import problem

from spoke.core.db import session_scope
from spoke.users.models import User

PEOPLE: dict[str, dict[str, Any]] = {
    "ann": {
        "first_name": "Ann",
        "email": "ann@example.com",
        "country": "KR",
        "tags": {"plan": "pro", "region": "kr"},
        "custom": {"score": 90, "vip": True, "nickname": "annie", "joined": "2024-01-05"},
    },
    "bob": {
        "first_name": "Bob",
        "country": "JP",
        "tags": {"plan": "free", "region": "jp"},
        "custom": {"score": 40, "vip": False, "joined": "2025-06-01"},
    },
    "cy": {
        "email": "cy@example.com",
        "tags": {"plan": "pro", "beta": "yes"},
        "custom": {"score": 65.5},
    },
    "dee": {"first_name": "Dee", "country": "KR"},
}
FIELDS = {"score": "number", "vip": "boolean", "nickname": "string", "joined": "date"}


@pytest.fixture
def people(tenant: Tenant) -> Tenant:
    for name, type_ in FIELDS.items():
        assert tenant.http.post("/v1/fields", json={"name": name, "type": type_}).is_success
    for external_id, fields in PEOPLE.items():
        response = tenant.http.put(f"/v1/users/{external_id}", json=fields)
        assert response.status_code == 201, response.text
    return tenant


def _members(tenant: Tenant, *filters: dict[str, Any]) -> set[str]:
    """Who a saved segment with these filters holds, every page read."""
    created = tenant.http.post(
        "/v1/segments", json={"name": f"s-{uuid.uuid4().hex[:8]}", "filters": list(filters)}
    )
    assert created.status_code == 201, created.text
    found: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get(f"/v1/segments/{created.json()['id']}/users", params=params)
        assert page.status_code == 200, page.text
        found += [u["external_id"] for u in page.json()["data"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            assert len(found) == len(set(found))
            return set(found)


def _tag(key: str, relation: str, **operand: Any) -> dict[str, Any]:
    return {"field": "tag", "key": key, "relation": relation, **operand}


def _custom(key: str, relation: str, **operand: Any) -> dict[str, Any]:
    return {"field": "custom", "key": key, "relation": relation, **operand}


def test_tag_operators(people: Tenant) -> None:
    assert _members(people, _tag("plan", "=", value="pro")) == {"ann", "cy"}
    assert _members(people, _tag("plan", "!=", value="pro")) == {"bob", "dee"}
    assert _members(people, _tag("beta", "exists")) == {"cy"}
    assert _members(people, _tag("region", "not_exists")) == {"cy", "dee"}
    assert _members(people, _tag("region", "in", values=["kr", "jp"])) == {"ann", "bob"}
    assert _members(people, _tag("region", "not_in", values=["kr"])) == {"bob", "cy", "dee"}
    pairs = {"plan": "pro", "region": "kr"}
    assert _members(people, {"field": "tags", "relation": "has_all", "tags": pairs}) == {"ann"}
    assert _members(people, {"field": "tags", "relation": "has_any", "tags": pairs}) == {
        "ann",
        "cy",
    }
    assert _members(people, {"field": "tags", "relation": "has_none", "tags": pairs}) == {
        "bob",
        "dee",
    }


def test_profile_field_operators(people: Tenant) -> None:
    assert _members(people, {"field": "country", "relation": "=", "value": "kr"}) == {
        "ann",
        "dee",
    }
    assert _members(people, {"field": "country", "relation": "!=", "value": "KR"}) == {
        "bob",
        "cy",
    }
    assert _members(people, {"field": "email", "relation": "exists"}) == {"ann", "cy"}
    assert _members(people, {"field": "first_name", "relation": "not_exists"}) == {"cy"}
    by_ids = {"field": "external_id", "relation": "in", "values": ["ann", "dee", "zed"]}
    assert _members(people, by_ids) == {"ann", "dee"}
    not_named = {"field": "first_name", "relation": "not_in", "values": ["Ann", "Bob"]}
    assert _members(people, not_named) == {"cy", "dee"}
    email = {"field": "email", "relation": "=", "value": " ANN@example.com "}
    assert _members(people, email) == {"ann"}


def test_custom_field_operators(people: Tenant) -> None:
    assert _members(people, _custom("score", ">", value=60)) == {"ann", "cy"}
    assert _members(people, _custom("score", ">=", value=65.5)) == {"ann", "cy"}
    assert _members(people, _custom("score", "<", value=65.5)) == {"bob"}
    assert _members(people, _custom("score", "<=", value=40)) == {"bob"}
    assert _members(people, _custom("score", "=", value=90)) == {"ann"}
    assert _members(people, _custom("score", "!=", value=90)) == {"bob", "cy", "dee"}
    assert _members(people, _custom("score", "in", values=[40, 65.5])) == {"bob", "cy"}
    assert _members(people, _custom("vip", "=", value=True)) == {"ann"}
    assert _members(people, _custom("vip", "=", value=False)) == {"bob"}
    assert _members(people, _custom("vip", "exists")) == {"ann", "bob"}
    assert _members(people, _custom("vip", "not_exists")) == {"cy", "dee"}
    assert _members(people, _custom("nickname", "=", value="annie")) == {"ann"}
    assert _members(people, _custom("nickname", "not_in", values=["annie"])) == {
        "bob",
        "cy",
        "dee",
    }
    assert _members(people, _custom("joined", "<", value="2025-01-01")) == {"ann"}
    assert _members(people, _custom("joined", ">", value="2025-01-01")) == {"bob"}


def test_custom_fields_of_another_type_elsewhere_never_break_a_filter(
    people: Tenant, other_tenant: Tenant
) -> None:
    # The other workspace's `score` is a string: on PostgreSQL a plain CAST would fail on it.
    other_tenant.http.post("/v1/fields", json={"name": "score", "type": "string"})
    other_tenant.http.put("/v1/users/x", json={"custom": {"score": "high"}})
    assert _members(people, _custom("score", ">", value=50)) == {"ann", "cy"}
    assert _members(other_tenant, _custom("score", "=", value="high")) == {"x"}


def test_or_groups_combine_with_and_inside(people: Tenant) -> None:
    either = [
        _tag("plan", "=", value="pro"),
        _custom("score", ">", value=80),
        {"operator": "OR"},
        {"field": "country", "relation": "=", "value": "JP"},
    ]
    assert _members(people, *either) == {"ann", "bob"}
    explicit_and = [_tag("plan", "=", value="pro"), {"operator": "AND"}, _tag("beta", "exists")]
    assert _members(people, *explicit_and) == {"cy"}
    three = [
        _tag("beta", "exists"),
        {"operator": "OR"},
        {"field": "first_name", "relation": "=", "value": "Dee"},
        {"operator": "OR"},
        _custom("vip", "=", value=False),
    ]
    assert _members(people, *three) == {"bob", "cy", "dee"}


def test_list_membership(people: Tenant) -> None:
    vip_list = people.http.post("/v1/lists", json={"name": "vips"}).json()
    added = people.http.post(
        f"/v1/lists/{vip_list['id']}/members", json={"external_ids": ["ann", "dee"]}
    )
    assert added.status_code == 200, added.text
    in_list = {"field": "list", "relation": "in", "value": vip_list["id"]}
    assert _members(people, in_list) == {"ann", "dee"}
    assert _members(people, {**in_list, "relation": "not_in"}) == {"bob", "cy"}
    # A list a saved segment reads can't be deleted from under it.
    problem(people.http.delete(f"/v1/lists/{vip_list['id']}"), 409, "list_in_use")
    for segment in people.http.get("/v1/segments").json()["data"]:
        assert people.http.delete(f"/v1/segments/{segment['id']}").status_code == 204
    assert people.http.delete(f"/v1/lists/{vip_list['id']}").status_code == 204


def test_last_seen_follows_client_calls(people: Tenant) -> None:
    with people.client() as app:
        assert app.patch("/v1/client/users/ann", json={"language": "ko"}).status_code == 200
        event = {"name": "opened", "user_id": "bob"}
        assert app.post("/v1/client/events", json=event).status_code == 200
        device = {"external_id": "cy", "token": token_for(f"seen-{uuid.uuid4().hex[:6]}")}
        assert app.post("/v1/client/devices", json=device).status_code == 201
    shown = people.http.get("/v1/users/ann").json()
    assert shown["last_seen_at"] is not None
    assert shown["version"] == 2  # the language change; being seen is not a new version
    # Bob was last seen 10 days ago, Cy 40 days ago.
    now = datetime.now(UTC)
    with session_scope(people.backend.runtime.sessions) as session:
        for external_id, days in (("bob", 10), ("cy", 40)):
            session.execute(
                sa.update(User)
                .where(User.workspace_id == people.workspace_id, User.external_id == external_id)
                .values(last_seen_at=now - timedelta(days=days))
            )
    seen = {"field": "last_seen"}
    assert _members(people, {**seen, "relation": "within_days", "days": 7}) == {"ann"}
    assert _members(people, {**seen, "relation": "within_days", "days": 30}) == {"ann", "bob"}
    assert _members(people, {**seen, "relation": "not_within_days", "days": 30}) == {"cy", "dee"}
    assert _members(people, {**seen, "relation": "exists"}) == {"ann", "bob", "cy"}
    assert _members(people, {**seen, "relation": "not_exists"}) == {"dee"}
    cut = (now - timedelta(days=20)).isoformat()
    assert _members(people, {**seen, "relation": "before", "value": cut}) == {"cy"}
    assert _members(people, {**seen, "relation": "after", "value": cut}) == {"ann", "bob"}
    created = {"field": "created_at", "relation": "within_days", "days": 1}
    assert _members(people, created) == set(PEOPLE)


def test_deleted_users_are_never_members(people: Tenant) -> None:
    assert people.http.delete("/v1/users/ann").status_code == 204
    assert _members(people, _tag("plan", "=", value="pro")) == {"cy"}


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        ({"field": "tag", "relation": "=", "value": "x"}, "body.filters.0"),  # no key
        ({"field": "tags", "relation": "=", "tags": {"a": "b"}}, "body.filters.0"),
        ({"field": "email", "relation": ">", "value": "a"}, "body.filters.0"),
        ({"field": "email", "relation": "=", "values": ["a"]}, "body.filters.0"),
        ({"field": "email", "relation": "exists", "value": "a"}, "body.filters.0"),
        ({"field": "last_seen", "relation": "before", "value": "yesterday"}, "body.filters.0"),
        ({"field": "last_seen", "relation": "before", "value": "2026-01-01T00:00"}, None),
        ({"field": "custom", "key": "nope", "relation": "exists"}, "body.filters.0"),
        ({"field": "custom", "key": "score", "relation": "=", "value": "many"}, None),
        ({"field": "custom", "key": "nickname", "relation": ">", "value": "a"}, None),
        ({"field": "list", "relation": "in", "value": "lst_missing"}, "body.filters.0"),
        ({"field": "country", "relation": "=", "value": 7}, "body.filters.0"),
        ({"field": "last_seen", "relation": "within_days", "days": 0}, None),
        ({"operator": "XOR"}, None),
    ],
)
def test_bad_filters_are_refused_by_name(
    people: Tenant, condition: dict[str, Any], field: str | None
) -> None:
    response = people.http.post("/v1/segments", json={"name": "bad", "filters": [condition]})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] in ("invalid_input", "invalid_segment")
    if field is not None:
        assert body["errors"][0]["field"].startswith(field)
    assert people.http.get("/v1/segments").json()["data"] == []


def test_empty_or_groups_are_refused(people: Tenant) -> None:
    for filters in (
        [{"operator": "OR"}, _tag("plan", "exists")],
        [_tag("plan", "exists"), {"operator": "OR"}],
        [{"operator": "OR"}],
    ):
        response = people.http.post("/v1/segments", json={"name": "e", "filters": filters})
        problem(response, 422, "invalid_segment")


def test_saved_segments_crud(people: Tenant, other_tenant: Tenant) -> None:
    pros = [_tag("plan", "=", value="pro")]
    created = people.http.post("/v1/segments", json={"name": "pros", "filters": pros})
    assert created.status_code == 201, created.text
    segment = created.json()
    assert segment["filters"] == pros
    assert people.http.get(f"/v1/segments/{segment['id']}").json() == segment
    problem(
        people.http.post("/v1/segments", json={"name": "pros", "filters": pros}),
        409,
        "segment_name_taken",
    )
    korea = [{"field": "country", "relation": "=", "value": "kr"}]
    updated = people.http.patch(
        f"/v1/segments/{segment['id']}", json={"name": "korea", "filters": korea}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["filters"] == [{**korea[0], "value": "KR"}]  # stored normalised
    listed = people.http.get("/v1/segments").json()
    assert [s["name"] for s in listed["data"]] == ["korea"]
    problem(other_tenant.http.get(f"/v1/segments/{segment['id']}"), 404, "segment_not_found")
    problem(other_tenant.http.get(f"/v1/segments/{segment['id']}/users"), 404, "segment_not_found")
    problem(
        people.http.get(f"/v1/segments/{segment['id']}/users", params={"cursor": "WyJ4Il0"}),
        400,
        "invalid_cursor",
    )
    assert people.http.delete(f"/v1/segments/{segment['id']}").status_code == 204
    problem(people.http.get(f"/v1/segments/{segment['id']}"), 404, "segment_not_found")


def test_sends_to_filters_and_saved_segments(people: Tenant, fcm: Fcm) -> None:
    connect_fcm(people, fcm)
    prefix = uuid.uuid4().hex[:8]
    for name in PEOPLE:
        register(people, name, token_for(f"{prefix}-{name}"))
    filters = [
        _tag("plan", "=", value="pro"),
        _custom("score", ">", value=80),
        {"operator": "OR"},
        {"field": "country", "relation": "=", "value": "JP"},
    ]
    response = people.http.post(
        "/v1/notifications",
        json={"channel": "push", "audience": {"filters": filters}, "title": "Hi {{ first_name }}"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["recipients"] == 2
    result = run_fanout(people, response.json()["id"])
    assert (result["counts"]["recipients"], result["counts"]["sent"]) == (2, 2)
    assert fcm.messages(token_for(f"{prefix}-ann"))[0]["notification"] == {"title": "Hi Ann"}
    assert fcm.messages(token_for(f"{prefix}-bob"))[0]["notification"] == {"title": "Hi Bob"}
    assert fcm.messages(token_for(f"{prefix}-cy")) == []

    saved = people.http.post(
        "/v1/segments", json={"name": "beta", "filters": [_tag("beta", "exists")]}
    ).json()
    to_saved = people.http.post(
        "/v1/notifications",
        json={"channel": "push", "audience": {"segment_id": saved["id"]}, "body": "Beta news"},
    )
    assert to_saved.status_code == 202, to_saved.text
    # Editing the segment after the send was accepted does not change who gets it.
    people.http.patch(
        f"/v1/segments/{saved['id']}", json={"filters": [_tag("plan", "=", value="free")]}
    )
    done = run_fanout(people, to_saved.json()["id"])
    assert done["audience"]["segment_id"] == saved["id"]
    assert done["counts"]["sent"] == 1
    assert fcm.messages(token_for(f"{prefix}-cy"))[0]["notification"] == {"body": "Beta news"}
    assert len(fcm.messages(token_for(f"{prefix}-bob"))) == 1

    unknown = people.http.post(
        "/v1/notifications",
        json={"channel": "push", "audience": {"segment_id": "seg_nope"}, "body": "x"},
    )
    problem(unknown, 404, "segment_not_found")
    bad = people.http.post(
        "/v1/notifications",
        json={
            "channel": "push",
            "audience": {"filters": [_custom("ghost", "exists")]},
            "body": "x",
        },
    )
    assert problem(bad, 422, "invalid_segment")["errors"][0]["field"] == "body.audience.filters.0"
    two = people.http.post(
        "/v1/notifications",
        json={
            "channel": "push",
            "audience": {"segment_id": saved["id"], "tags": {"a": "b"}},
            "body": "x",
        },
    )
    problem(two, 422, "invalid_input")
