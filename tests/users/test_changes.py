"""The change feed: one row per change, with origin, actor, old/new values and a gap-free seq."""

from __future__ import annotations

import threading

from tests.conftest import Tenant
from tests.users.support import declare, feed, problem, put


def test_every_write_records_old_and_new_values(tenant: Tenant) -> None:
    response = tenant.http.put(
        "/v1/users/u1",
        json={"email": "A@Example.com", "tags": {"plan": "pro"}},
        headers={"X-Request-Id": "req-create-1"},
    )
    assert response.status_code == 201
    tenant.http.patch("/v1/users/u1", json={"email": "b@example.com", "first_name": "Bo"})
    tenant.http.put("/v1/users/u1", json={"first_name": "Bo"})
    tenant.http.delete("/v1/users/u1")
    tenant.http.post("/v1/users/u1/restore")

    rows = tenant.http.get("/v1/users/u1/changes").json()
    assert [r["kind"] for r in rows] == ["created", "updated", "updated", "deleted", "restored"]
    assert rows[0]["changes"] == {"email": [None, "a@example.com"], "tags.plan": [None, "pro"]}
    assert rows[0]["request_id"] == "req-create-1"
    assert rows[1]["changes"] == {
        "email": ["a@example.com", "b@example.com"],
        "first_name": [None, "Bo"],
    }
    # PUT without the email clears it; tags are untouched because they were not given.
    assert rows[2]["changes"] == {"email": ["b@example.com", None]}
    deleted_at = rows[3]["changes"]["deleted_at"]
    assert deleted_at[0] is None
    assert deleted_at[1] is not None
    assert rows[4]["changes"] == {"deleted_at": [deleted_at[1], None]}
    for row in rows:
        assert row["external_id"] == "u1"
        assert row["origin"] == "api"
        assert row["actor"] == tenant.key_id
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert tenant.http.get("/v1/users/u1").json()["version"] == 5


def test_custom_field_changes_are_recorded_per_field(tenant: Tenant) -> None:
    declare(tenant, "score", "number")
    put(tenant, "u1", custom={"score": 1})
    tenant.http.patch("/v1/users/u1", json={"custom": {"score": 2}})
    tenant.http.patch("/v1/users/u1", json={"custom": {"score": None}})
    changes = [r["changes"] for r in tenant.http.get("/v1/users/u1/changes").json()]
    assert changes == [
        {"custom.score": [None, 1]},
        {"custom.score": [1, 2]},
        {"custom.score": [2, None]},
    ]


def test_user_feed_pages_with_after_seq(tenant: Tenant) -> None:
    put(tenant, "u1", first_name="A")
    put(tenant, "other", first_name="X")
    for name in ("B", "C", "D"):
        tenant.http.patch("/v1/users/u1", json={"first_name": name})
    rows = tenant.http.get("/v1/users/u1/changes").json()
    assert [r["seq"] for r in rows] == [1, 3, 4, 5]
    page = tenant.http.get("/v1/users/u1/changes", params={"after_seq": 3, "limit": 1}).json()
    assert [r["seq"] for r in page] == [4]
    problem(tenant.http.get("/v1/users/ghost/changes"), 404, "user_not_found")
    tenant.http.delete("/v1/users/u1")
    # A deleted user's history stays readable.
    assert tenant.http.get("/v1/users/u1/changes").json()[-1]["kind"] == "deleted"


def test_workspace_feed_is_gap_free_and_resumable(tenant: Tenant, other_tenant: Tenant) -> None:
    put(other_tenant, "noise", first_name="N")
    items = [{"external_id": f"u{i}", "first_name": f"N{i}"} for i in range(30)]
    tenant.http.post("/v1/users/batch", json={"items": items})
    put(tenant, "u0", first_name="Again")
    tenant.http.patch("/v1/users/u1/tags", json={"tags": {"k": "v"}})
    rows = feed(tenant)
    assert [r["seq"] for r in rows] == list(range(1, 33))
    assert [r["external_id"] for r in rows[:30]] == [f"u{i}" for i in range(30)]
    assert {r["external_id"] for r in rows} <= {f"u{i}" for i in range(30)}
    page = tenant.http.get("/v1/changes", params={"after_seq": 10, "limit": 5}).json()
    assert [r["seq"] for r in page] == [11, 12, 13, 14, 15]
    assert tenant.http.get("/v1/changes", params={"after_seq": 32}).json() == []
    assert [r["seq"] for r in feed(other_tenant)] == [1]


def test_failed_writes_leave_no_feed_rows_and_no_gaps(tenant: Tenant) -> None:
    put(tenant, "u1")
    problem(tenant.http.put("/v1/users/u2", json={"email": "bad"}), 422, "invalid_input")
    problem(tenant.http.put("/v1/users/u3", json={"custom": {"nope": 1}}), 422, "invalid_input")
    put(tenant, "u4")
    assert [(r["seq"], r["external_id"]) for r in feed(tenant)] == [(1, "u1"), (2, "u4")]


def test_concurrent_writers_get_distinct_gap_free_seqs(tenant: Tenant) -> None:
    import httpx

    errors: list[str] = []

    def writer(n: int) -> None:
        with httpx.Client(
            base_url=tenant.backend.url, headers=dict(tenant.http.headers), timeout=30
        ) as http:
            for i in range(5):
                response = http.put(f"/v1/users/w{n}-{i}", json={"first_name": str(i)})
                if response.status_code != 201:
                    errors.append(response.text)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = feed(tenant)
    assert [r["seq"] for r in rows] == list(range(1, 21))
    assert len({r["external_id"] for r in rows}) == 20


def test_client_writes_are_marked_with_their_origin(tenant: Tenant) -> None:
    with tenant.client() as client:
        response = client.patch("/v1/client/users/app-1", json={"language": "KO"})
    assert response.status_code == 200
    assert response.json()["language"] == "ko"
    row = feed(tenant)[-1]
    assert (row["origin"], row["actor"], row["kind"]) == ("client", "client", "created")
    assert row["changes"] == {"language": [None, "ko"]}


def test_feed_query_parameters_are_validated(tenant: Tenant) -> None:
    problem(tenant.http.get("/v1/changes", params={"after_seq": -1}), 422, "invalid_input")
    problem(tenant.http.get("/v1/changes", params={"limit": 0}), 422, "invalid_input")
    problem(tenant.http.get("/v1/changes", params={"limit": 1001}), 422, "invalid_input")
    problem(tenant.http.get("/v1/changes", params={"after_seq": "x"}), 422, "invalid_input")


def test_concurrent_batches_creating_the_same_users_all_succeed(tenant: Tenant) -> None:
    # Four batches creating the same 300 users at once: each call succeeds (none is a 500
    # from a lost unique-index race) and each user exists once.
    import httpx

    items = [{"external_id": f"same-{i}", "email": f"same{i}@example.com"} for i in range(300)]
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def writer() -> None:
        with httpx.Client(
            base_url=tenant.backend.url, headers=dict(tenant.http.headers), timeout=60
        ) as http:
            barrier.wait()
            statuses.append(http.post("/v1/users/batch", json={"items": items}).status_code)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 4
    listed = tenant.http.get("/v1/users", params={"limit": 1000}).json()["data"]
    assert sorted(u["external_id"] for u in listed) == sorted(i["external_id"] for i in items)
