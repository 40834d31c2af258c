"""Custom fields: declaring them, typed values, errors naming `custom.<name>`, deletion."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Tenant
from tests.users.support import declare, fields_named, problem, put

FIELDS: list[dict[str, Any]] = [
    {"name": "nickname", "type": "string"},
    {"name": "score", "type": "number"},
    {"name": "vip", "type": "boolean"},
    {"name": "birthday", "type": "date"},
    {"name": "last_seen", "type": "datetime"},
    {"name": "plan", "type": "enumeration", "options": ["free", "pro", "team"]},
]


def _declare_all(tenant: Tenant) -> None:
    for spec in FIELDS:
        response = tenant.http.post("/v1/fields", json=spec)
        assert response.status_code == 201, response.text


def test_fields_are_created_listed_and_fetched(tenant: Tenant) -> None:
    created = tenant.http.post(
        "/v1/fields", json={"name": "plan", "type": "enumeration", "options": ["free", "pro"]}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["id"].startswith("fld")
    assert (body["name"], body["type"], body["options"], body["label"]) == (
        "plan",
        "enumeration",
        ["free", "pro"],
        "Plan",
    )
    declare(tenant, "a_b", "string", label="AB")
    names = [f["name"] for f in tenant.http.get("/v1/fields").json()]
    assert names == ["a_b", "plan"]
    assert tenant.http.get("/v1/fields/plan").json() == body
    problem(tenant.http.get("/v1/fields/nope"), 404, "field_not_found")


def test_fields_are_per_workspace(tenant: Tenant, other_tenant: Tenant) -> None:
    declare(other_tenant, "x", "string")
    assert tenant.http.get("/v1/fields").json() == []
    problem(tenant.http.get("/v1/fields/x"), 404, "field_not_found")
    body = problem(
        tenant.http.put("/v1/users/u", json={"custom": {"x": "1"}}), 422, "invalid_input"
    )
    assert fields_named(body) == {"body.custom.x"}


def test_duplicate_field_is_409(tenant: Tenant) -> None:
    declare(tenant, "x", "string")
    problem(
        tenant.http.post("/v1/fields", json={"name": "x", "type": "number"}), 409, "field_exists"
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "Bad Name", "type": "string"}, "body.name"),
        ({"name": "1st", "type": "string"}, "body.name"),
        ({"name": "x", "type": "color"}, "body.type"),
        ({"name": "x", "type": "enumeration"}, "body"),
        ({"name": "x", "type": "enumeration", "options": ["a", "a"]}, "body"),
        ({"name": "x", "type": "string", "options": ["a"]}, "body"),
        ({"name": "x", "type": "enumeration", "options": [""]}, "body.options.0"),
        ({"name": "x", "type": "string", "extra": 1}, "body.extra"),
    ],
)
def test_invalid_field_declarations_are_422(
    tenant: Tenant, spec: dict[str, Any], field: str
) -> None:
    body = problem(tenant.http.post("/v1/fields", json=spec), 422, "invalid_input")
    assert field in fields_named(body)
    assert tenant.http.get("/v1/fields").json() == []


def test_a_standard_field_name_is_refused(tenant: Tenant) -> None:
    problem(
        tenant.http.post("/v1/fields", json={"name": "email", "type": "string"}),
        422,
        "invalid_input",
    )


def test_values_of_every_type_are_stored_in_their_json_form(tenant: Tenant) -> None:
    _declare_all(tenant)
    custom = {
        "nickname": "Annie",
        "score": 4.5,
        "vip": False,
        "birthday": "1990-02-28",
        "last_seen": "2026-03-01T09:30:00+09:00",
        "plan": "pro",
    }
    body = put(tenant, "u1", custom=custom)
    assert body["custom"] == {**custom, "last_seen": "2026-03-01T00:30:00Z"}
    assert tenant.http.get("/v1/users/u1").json()["custom"] == body["custom"]
    assert put(tenant, "u2", custom={"score": 12})["custom"] == {"score": 12}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("nickname", 5),
        ("nickname", "x" * 2001),
        ("score", "12"),
        ("score", True),
        ("score", 2**60),
        ("vip", "true"),
        ("vip", 1),
        ("birthday", "28/02/1990"),
        ("birthday", "1990-02-30"),
        ("birthday", 19900228),
        ("last_seen", "2026-03-01T09:30:00"),  # no time zone
        ("last_seen", "yesterday"),
        ("plan", "enterprise"),
        ("plan", "PRO"),
    ],
)
def test_invalid_values_are_422_naming_custom_field(tenant: Tenant, name: str, value: Any) -> None:
    _declare_all(tenant)
    put(tenant, "u1", custom={"nickname": "keep"})
    response = tenant.http.patch("/v1/users/u1", json={"custom": {name: value}})
    body = problem(response, 422, "invalid_input")
    assert fields_named(body) == {f"body.custom.{name}"}
    assert tenant.http.get("/v1/users/u1").json()["custom"] == {"nickname": "keep"}


def test_an_undeclared_custom_field_is_refused(tenant: Tenant) -> None:
    response = tenant.http.put("/v1/users/u1", json={"custom": {"nope": 1}})
    body = problem(response, 422, "invalid_input")
    assert fields_named(body) == {"body.custom.nope"}
    problem(tenant.http.get("/v1/users/u1"), 404, "user_not_found")


def test_put_replaces_custom_values(tenant: Tenant) -> None:
    _declare_all(tenant)
    put(tenant, "u1", custom={"nickname": "A", "score": 1})
    assert put(tenant, "u1", custom={"vip": True})["custom"] == {"vip": True}
    assert put(tenant, "u1")["custom"] == {}


def test_deleting_a_field_strips_its_values_from_every_user(tenant: Tenant) -> None:
    _declare_all(tenant)
    put(tenant, "u1", custom={"nickname": "A", "score": 1})
    put(tenant, "u2", custom={"score": 2})
    deleted = tenant.http.delete("/v1/fields/score")
    assert deleted.status_code == 204
    assert tenant.http.get("/v1/users/u1").json()["custom"] == {"nickname": "A"}
    assert tenant.http.get("/v1/users/u2").json()["custom"] == {}
    problem(tenant.http.get("/v1/fields/score"), 404, "field_not_found")
    problem(tenant.http.delete("/v1/fields/score"), 404, "field_not_found")
    # Re-declaring the name later does not resurface the old values.
    declare(tenant, "score", "string")
    assert tenant.http.get("/v1/users/u2").json()["custom"] == {}
    assert put(tenant, "u2", custom={"score": "high"})["custom"] == {"score": "high"}


def test_deleting_a_field_leaves_other_workspaces_alone(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    for t in (tenant, other_tenant):
        declare(t, "score", "number")
        put(t, "u1", custom={"score": 7})
    assert tenant.http.delete("/v1/fields/score").status_code == 204
    assert other_tenant.http.get("/v1/users/u1").json()["custom"] == {"score": 7}


def test_field_labels_and_enumeration_options_can_change(tenant: Tenant) -> None:
    _declare_all(tenant)
    put(tenant, "u1", custom={"plan": "pro"})
    relabelled = tenant.http.patch("/v1/fields/plan", json={"label": "Pricing plan"})
    assert relabelled.json()["label"] == "Pricing plan"
    grown = tenant.http.patch("/v1/fields/plan", json={"options": ["free", "pro", "team", "ent"]})
    assert grown.status_code == 200
    assert grown.json()["options"] == ["free", "pro", "team", "ent"]
    assert put(tenant, "u2", custom={"plan": "ent"})["custom"] == {"plan": "ent"}
    # Unused options may go.
    shrunk = tenant.http.patch("/v1/fields/plan", json={"options": ["pro", "ent"]})
    assert shrunk.status_code == 200, shrunk.text
    problem(
        tenant.http.put("/v1/users/u3", json={"custom": {"plan": "free"}}), 422, "invalid_input"
    )


def test_an_option_in_use_cannot_be_removed(tenant: Tenant) -> None:
    _declare_all(tenant)
    put(tenant, "u1", custom={"plan": "pro"})
    response = tenant.http.patch("/v1/fields/plan", json={"options": ["free", "team"]})
    body = problem(response, 409, "field_option_in_use")
    assert body["options"] == ["pro"]
    assert tenant.http.get("/v1/fields/plan").json()["options"] == ["free", "pro", "team"]
    # Once no user has it, it can go.
    tenant.http.patch("/v1/users/u1", json={"custom": {"plan": "team"}})
    ok = tenant.http.patch("/v1/fields/plan", json={"options": ["free", "team"]})
    assert ok.status_code == 200, ok.text


def test_options_only_for_enumerations_and_unique(tenant: Tenant) -> None:
    _declare_all(tenant)
    problem(tenant.http.patch("/v1/fields/score", json={"options": ["a"]}), 422, "invalid_input")
    problem(
        tenant.http.patch("/v1/fields/plan", json={"options": ["a", "a"]}), 422, "invalid_input"
    )
    problem(tenant.http.patch("/v1/fields/nope", json={"label": "x"}), 404, "field_not_found")


def test_deleting_a_field_records_a_change_for_each_user_that_had_a_value(tenant: Tenant) -> None:
    tenant.http.post("/v1/fields", json={"name": "score", "type": "number"})
    tenant.http.put("/v1/users/has", json={"custom": {"score": 7}})
    tenant.http.put("/v1/users/lacks", json={"first_name": "L"})
    before = {u: tenant.http.get(f"/v1/users/{u}").json()["version"] for u in ("has", "lacks")}
    assert tenant.http.delete("/v1/fields/score").status_code == 204
    has = tenant.http.get("/v1/users/has").json()
    assert has["custom"] == {}
    assert has["version"] == before["has"] + 1
    assert tenant.http.get("/v1/users/lacks").json()["version"] == before["lacks"]
    last = tenant.http.get("/v1/users/has/changes").json()[-1]
    assert last["changes"] == {"custom.score": [7, None]}
    assert last["kind"] == "updated"
    assert tenant.http.get("/v1/users/lacks/changes").json()[-1]["kind"] == "created"
