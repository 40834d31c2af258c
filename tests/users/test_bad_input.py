"""Bad input gets a clear 4xx problem document, and nothing is written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.conftest import Tenant
from tests.users.support import declare, feed, fields_named, problem, put

JSON = {"Content-Type": "application/json"}


def _unchanged(tenant: Tenant, before: list[dict[str, Any]]) -> None:
    """Nothing was written: the feed and the single seeded user are as they were."""
    assert feed(tenant) == before
    user = tenant.http.get("/v1/users/u1").json()
    assert (user["first_name"], user["version"], user["tags"]) == ("Ann", 1, {"plan": "pro"})
    assert [u["external_id"] for u in tenant.http.get("/v1/users").json()["data"]] == ["u1"]


@pytest.fixture
def seeded(tenant: Tenant) -> list[dict[str, Any]]:
    put(tenant, "u1", first_name="Ann", tags={"plan": "pro"})
    return feed(tenant)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/users/u1"),
        ("PATCH", "/v1/users/u1"),
        ("PUT", "/v1/users/u2"),
        ("PATCH", "/v1/users/u1/tags"),
        ("POST", "/v1/users/batch"),
        ("POST", "/v1/fields"),
        ("POST", "/v1/lists"),
    ],
)
@pytest.mark.parametrize(
    "content", [b"{", b'{"first_name": "x",}', b"{'first_name': 'x'}", b"\xff\xfe", b"nul"]
)
def test_malformed_json_is_400_invalid_json(
    tenant: Tenant, seeded: list[dict[str, Any]], method: str, path: str, content: bytes
) -> None:
    response = tenant.http.request(method, path, content=content, headers=JSON)
    problem(response, 400, "invalid_json")
    _unchanged(tenant, seeded)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"first_name": 5}, "body.first_name"),
        ({"first_name": ["Ann"]}, "body.first_name"),
        ({"email": True}, "body.email"),
        ({"custom": "x"}, "body.custom"),
        ({"custom": []}, "body.custom"),
        ({"tags": "plan=pro"}, "body.tags"),
        ({"tags": {"plan": 1}}, "body.tags.plan"),
        ({"first_name": "A", "nickname": "x"}, "body.nickname"),
        ({"external_id": "u9"}, "body.external_id"),
        ({"version": 7}, "body.version"),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_wrong_types_and_unknown_fields_are_422_naming_the_field(
    tenant: Tenant, seeded: list[dict[str, Any]], method: str, body: dict[str, Any], field: str
) -> None:
    response = tenant.http.request(method, "/v1/users/u1", json=body)
    problem_body = problem(response, 422, "invalid_input")
    assert fields_named(problem_body) == {field}
    assert field in problem_body["detail"]
    _unchanged(tenant, seeded)


@pytest.mark.parametrize("body", [[], ["first_name"], "Ann", 5, None])
def test_a_body_that_is_not_an_object_is_422(
    tenant: Tenant, seeded: list[dict[str, Any]], body: Any
) -> None:
    response = tenant.http.put(
        "/v1/users/u1", content=httpx.Request("PUT", "/", json=body).content, headers=JSON
    )
    problem(response, 422, "invalid_input")
    _unchanged(tenant, seeded)


def test_a_missing_body_is_422(tenant: Tenant, seeded: list[dict[str, Any]]) -> None:
    problem(tenant.http.put("/v1/users/u1"), 422, "invalid_input")
    problem(tenant.http.post("/v1/users/batch"), 422, "invalid_input")
    _unchanged(tenant, seeded)


def test_an_oversized_body_is_413(tenant: Tenant, seeded: list[dict[str, Any]]) -> None:
    limit = tenant.backend.runtime.settings.api.max_body_bytes
    big = b'{"items": [' + b'{"external_id": "x"},' * (limit // 20) + b'{"external_id": "y"}]}'
    assert len(big) > limit
    response = tenant.http.post("/v1/users/batch", content=big, headers=JSON)
    problem(response, 413, "payload_too_large")

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(0, len(big), 1 << 20):
            yield big[: 1 << 20]

    streamed = tenant.http.post("/v1/users/batch", content=chunks(), headers=JSON)
    problem(streamed, 413, "payload_too_large")
    _unchanged(tenant, seeded)


def test_an_oversized_csv_upload_is_413(tenant: Tenant, seeded: list[dict[str, Any]]) -> None:
    limit = tenant.backend.runtime.settings.api.max_body_bytes
    rows = b"external_id\n" + b"x\n" * (limit // 2 + 1)
    response = tenant.http.post("/v1/imports", content=rows, headers={"Content-Type": "text/csv"})
    problem(response, 413, "payload_too_large")
    _unchanged(tenant, seeded)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "ten"},
        {"include_deleted": "maybe"},
        {"email": "x" * 321},
        {"cursor": "x" * 401},
    ],
)
def test_bad_list_queries_are_4xx_problems(tenant: Tenant, params: dict[str, str]) -> None:
    response = tenant.http.get("/v1/users", params=params)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+09:00", "9999-12-31T23:59:59-09:00", "2026-01-01T00:00:00"]
)
def test_updated_since_out_of_range_or_naive_is_422(tenant: Tenant, since: str) -> None:
    response = tenant.http.get("/v1/users", params={"updated_since": since})
    assert fields_named(problem(response, 422, "invalid_input")) == {"query.updated_since"}


def test_bad_cursor_is_400_and_changes_nothing(
    tenant: Tenant, seeded: list[dict[str, Any]]
) -> None:
    problem(tenant.http.get("/v1/users", params={"cursor": "%%%"}), 400, "invalid_cursor")
    _unchanged(tenant, seeded)


def test_an_overlong_external_id_is_422(tenant: Tenant, seeded: list[dict[str, Any]]) -> None:
    problem(tenant.http.put(f"/v1/users/{'x' * 256}", json={}), 422, "invalid_input")
    assert tenant.http.put(f"/v1/users/{'x' * 255}", json={}).status_code == 201


def test_non_finite_and_huge_numbers_are_refused(tenant: Tenant) -> None:
    declare(tenant, "score", "number")
    for raw in (
        b'{"custom": {"score": NaN}}',
        b'{"custom": {"score": Infinity}}',
        b'{"custom": {"score": 1e400}}',
        b'{"custom": {"score": 1' + b"0" * 5000 + b"}}",
    ):
        response = tenant.http.put("/v1/users/u1", content=raw, headers=JSON)
        assert response.status_code in (400, 422), (raw[:40], response.text)
    problem(tenant.http.get("/v1/users/u1"), 404, "user_not_found")


def test_deeply_nested_json_is_refused_cleanly(tenant: Tenant) -> None:
    declare(tenant, "note", "string")
    nested = b'{"custom": {"note": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    response = tenant.http.put("/v1/users/u1", content=nested, headers=JSON)
    assert response.status_code in (400, 422), response.text
    problem(tenant.http.get("/v1/users/u1"), 404, "user_not_found")


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/v1/changes", "after_seq"),
        ("/v1/users/u1/changes", "after_seq"),
        ("/v1/imports/{import_id}/errors", "after_row"),
    ],
)
def test_huge_positions_are_not_a_server_error(
    tenant: Tenant, seeded: list[dict[str, Any]], path: str, param: str
) -> None:
    upload = tenant.http.post(
        "/v1/imports", content=b"external_id\nu9\n", headers={"Content-Type": "text/csv"}
    )
    url = path.format(import_id=upload.json()["id"])
    for value in (2**31, 2**63, 10**30):
        response = tenant.http.get(url, params={param: value})
        assert response.status_code in (200, 422), (value, response.text)
        if response.status_code == 200:
            assert response.json() == []
