"""`Idempotency-Key`: a retried write is applied once and answered with the first response."""

from __future__ import annotations

import threading

import httpx
from tests.conftest import Tenant
from tests.users.support import feed, problem, put


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


def test_a_replayed_put_returns_the_first_response_and_writes_nothing(tenant: Tenant) -> None:
    first = tenant.http.put("/v1/users/u1", json={"first_name": "Ann"}, headers=_key("k1"))
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    seen = feed(tenant)
    # The user changes in between; the replay still answers what the first call did.
    tenant.http.patch("/v1/users/u1", json={"first_name": "Changed"})
    seen = feed(tenant)
    replay = tenant.http.put("/v1/users/u1", json={"first_name": "Ann"}, headers=_key("k1"))
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert feed(tenant) == seen
    assert tenant.http.get("/v1/users/u1").json()["first_name"] == "Changed"


def test_a_replayed_batch_writes_nothing_more(tenant: Tenant) -> None:
    items = [{"external_id": f"u{i}", "tags": {"n": str(i)}} for i in range(20)]
    first = tenant.http.post("/v1/users/batch", json={"items": items}, headers=_key("batch-1"))
    assert first.json()["created"] == 20
    seen = feed(tenant)
    assert len(seen) == 20
    for _ in range(2):
        replay = tenant.http.post("/v1/users/batch", json={"items": items}, headers=_key("batch-1"))
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
    assert feed(tenant) == seen


def test_same_key_with_a_different_body_is_409(tenant: Tenant) -> None:
    tenant.http.put("/v1/users/u1", json={"first_name": "Ann"}, headers=_key("k1"))
    seen = feed(tenant)
    other = tenant.http.put("/v1/users/u1", json={"first_name": "Bob"}, headers=_key("k1"))
    problem(other, 409, "idempotency_key_reused")
    other_path = tenant.http.put("/v1/users/u2", json={"first_name": "Ann"}, headers=_key("k1"))
    problem(other_path, 409, "idempotency_key_reused")
    other_method = tenant.http.patch("/v1/users/u1", json={"first_name": "Ann"}, headers=_key("k1"))
    problem(other_method, 409, "idempotency_key_reused")
    assert tenant.http.get("/v1/users/u1").json()["first_name"] == "Ann"
    problem(tenant.http.get("/v1/users/u2"), 404, "user_not_found")
    assert feed(tenant) == seen


def test_keys_are_scoped_to_the_workspace(tenant: Tenant, other_tenant: Tenant) -> None:
    a = tenant.http.put("/v1/users/u1", json={"first_name": "A"}, headers=_key("shared"))
    b = other_tenant.http.put("/v1/users/u1", json={"first_name": "B"}, headers=_key("shared"))
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers
    assert other_tenant.http.get("/v1/users/u1").json()["first_name"] == "B"


def test_a_failed_request_does_not_burn_the_key(tenant: Tenant) -> None:
    bad = tenant.http.put("/v1/users/u1", json={"email": "nope"}, headers=_key("k1"))
    problem(bad, 422, "invalid_input")
    retry = tenant.http.put("/v1/users/u1", json={"email": "nope"}, headers=_key("k1"))
    problem(retry, 422, "invalid_input")
    assert "Idempotent-Replayed" not in retry.headers
    fixed = tenant.http.put("/v1/users/u1", json={"email": "a@example.com"}, headers=_key("k1"))
    assert fixed.status_code == 201


def test_replays_cover_deletes_lists_and_memberships(tenant: Tenant) -> None:
    put(tenant, "u1")
    created = tenant.http.post("/v1/lists", json={"name": "L"}, headers=_key("list"))
    again = tenant.http.post("/v1/lists", json={"name": "L"}, headers=_key("list"))
    assert created.status_code == again.status_code == 201
    assert again.json()["id"] == created.json()["id"]
    assert len(tenant.http.get("/v1/lists").json()) == 1

    path = f"/v1/lists/{created.json()['id']}/members"
    body = {"external_ids": ["u1"]}
    added = tenant.http.post(path, json=body, headers=_key("add"))
    assert tenant.http.post(path, json=body, headers=_key("add")).json() == added.json()
    assert added.json()["changed"] == 1

    deleted = tenant.http.delete("/v1/users/u1", headers=_key("del"))
    seen = feed(tenant)
    replay = tenant.http.delete("/v1/users/u1", headers=_key("del"))
    assert deleted.status_code == replay.status_code == 204
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert feed(tenant) == seen


def test_concurrent_requests_with_one_key_apply_once(tenant: Tenant) -> None:
    items = [{"external_id": f"c{i}", "first_name": "C"} for i in range(50)]
    statuses: list[int] = []
    bodies: list[object] = []

    def send() -> None:
        with httpx.Client(
            base_url=tenant.backend.url, headers=dict(tenant.http.headers), timeout=30
        ) as http:
            response = http.post("/v1/users/batch", json={"items": items}, headers=_key("race"))
            statuses.append(response.status_code)
            if response.status_code == 200:
                bodies.append(response.json()["results"])

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(statuses) <= {200, 409}, statuses
    assert 200 in statuses
    assert all(b == bodies[0] for b in bodies)
    rows = feed(tenant)
    assert len(rows) == 50
    assert [r["seq"] for r in rows] == list(range(1, 51))


def test_invalid_keys_are_400(tenant: Tenant) -> None:
    long = tenant.http.put("/v1/users/u1", json={}, headers=_key("k" * 256))
    problem(long, 400, "invalid_idempotency_key")
    problem(tenant.http.get("/v1/users/u1"), 404, "user_not_found")
