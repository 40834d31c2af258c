"""Small helpers shared by the users tests: reading the feed and all pages of users."""

from __future__ import annotations

from typing import Any

from tests.conftest import Tenant


def feed(tenant: Tenant, after_seq: int = 0) -> list[dict[str, Any]]:
    """The whole workspace change feed after `after_seq`."""
    rows: list[dict[str, Any]] = []
    while True:
        page = tenant.http.get("/v1/changes", params={"after_seq": after_seq, "limit": 1000})
        assert page.status_code == 200, page.text
        batch = page.json()
        if not batch:
            return rows
        rows.extend(batch)
        after_seq = batch[-1]["seq"]


def last_seq(tenant: Tenant) -> int:
    rows = feed(tenant)
    return rows[-1]["seq"] if rows else 0


def all_users(tenant: Tenant, **params: Any) -> list[dict[str, Any]]:
    """Every user matching `params`, following cursors to the end."""
    users: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get("/v1/users", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        users.extend(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return users


def put(tenant: Tenant, external_id: str, **values: Any) -> dict[str, Any]:
    response = tenant.http.put(f"/v1/users/{external_id}", json=values)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert `response` is an RFC 9457 problem with `status` and `code`; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status
    assert body["code"] == code
    return body


def fields_named(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors") or []}


def declare(tenant: Tenant, name: str, type_: str, **extra: Any) -> dict[str, Any]:
    """Declare a custom field (or fail the test)."""
    response = tenant.http.post("/v1/fields", json={"name": name, "type": type_, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())
