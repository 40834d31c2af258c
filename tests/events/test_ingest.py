"""Product events: ingest (server and client), resends by id, known events, reads."""

from __future__ import annotations

import hashlib
import hmac
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.conftest import Tenant


def _event(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "name": "export_clicked",
        "user_id": f"u{n % 5}",
        "properties": {"format": "csv", "rows": n},
        **extra,
    }


def test_one_event_is_accepted_and_read_back(tenant: Tenant) -> None:
    sent = tenant.http.post(
        "/v1/events",
        json={
            "id": "ev-1",
            "type": "page",
            "name": "pricing",
            "email": " Ann@Example.com ",
            "properties": {"hs_page_url": "https://app.example/pricing"},
            "occurred_at": "2026-11-20T10:00:00+09:00",
        },
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["accepted"] == 1
    page = tenant.http.get("/v1/events").json()
    assert len(page["data"]) == 1
    event = page["data"][0]
    assert (event["id"], event["type"], event["name"], event["email"]) == (
        "ev-1",
        "page",
        "pricing",
        "ann@example.com",
    )
    assert event["occurred_at"].startswith("2026-11-20T01:00:00")
    assert event["properties"] == {"hs_page_url": "https://app.example/pricing"}


def test_a_batch_keeps_good_events_and_reports_bad_ones(tenant: Tenant) -> None:
    events = [_event(n) for n in range(1000)]
    events[3] = {"name": "no user"}
    events[500] = {**_event(500), "type": "click"}
    events[999] = {**_event(999), "properties": {"nested": {"no": "objects"}}}
    result = tenant.http.post("/v1/events", json={"events": events}).json()
    assert (result["accepted"], result["failed"], result["duplicates"]) == (997, 3, 0)
    assert [(r["index"], r["status"]) for r in result["results"]] == [
        (3, "error"),
        (500, "error"),
        (999, "error"),
    ]
    assert result["results"][1]["error"]["errors"][0]["field"] == "type"
    stored, cursor, pages = 0, None, 0
    while True:
        params = {"limit": 400, **({"cursor": cursor} if cursor else {})}
        page = tenant.http.get("/v1/events", params=params).json()
        stored += len(page["data"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (stored, pages) == (997, 3)


def test_too_many_events_is_refused_whole(tenant: Tenant) -> None:
    refused = tenant.http.post("/v1/events", json={"events": [_event(n) for n in range(1001)]})
    assert refused.status_code == 422
    assert tenant.http.get("/v1/events").json()["data"] == []


def test_resends_by_id_are_duplicates_within_and_across_batches(tenant: Tenant) -> None:
    first = tenant.http.post(
        "/v1/events",
        json={"events": [_event(1, id="a"), _event(2, id="b"), _event(3, id="a"), _event(4)]},
    ).json()
    assert first["accepted"] == 3
    assert [(r["index"], r["status"], r["id"]) for r in first["results"]] == [(2, "duplicate", "a")]
    again = tenant.http.post(
        "/v1/events", json={"events": [_event(1, id="a"), _event(5, id="c")]}
    ).json()
    assert again["accepted"] == 1
    assert [(r["index"], r["status"]) for r in again["results"]] == [(0, "duplicate")]
    assert len(tenant.http.get("/v1/events").json()["data"]) == 4


def test_concurrent_resends_store_each_id_once(tenant: Tenant) -> None:
    batch = {"events": [_event(n, id=f"same-{n}") for n in range(200)]}
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: tenant.http.post("/v1/events", json=batch), range(4)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    assert sum(r.json()["accepted"] for r in results) == 200
    assert sum(r.json()["duplicates"] for r in results) == 600
    known = tenant.http.get("/v1/events/known").json()
    assert [(k["name"], k["volume"]) for k in known] == [("export_clicked", 200)]


def test_known_events_count_volume_and_times_and_can_be_core(tenant: Tenant) -> None:
    tenant.http.post(
        "/v1/events",
        json={
            "events": [
                {
                    "type": "feature",
                    "name": "report",
                    "user_id": "u",
                    "occurred_at": "2026-11-01T00:00:00Z",
                },
                {
                    "type": "feature",
                    "name": "report",
                    "user_id": "u",
                    "occurred_at": "2026-11-03T00:00:00Z",
                },
                {
                    "type": "page",
                    "name": "report",
                    "user_id": "u",
                    "occurred_at": "2026-11-02T00:00:00Z",
                },
            ]
        },
    )
    tenant.http.post(
        "/v1/events",
        json={
            "type": "feature",
            "name": "report",
            "user_id": "u",
            "occurred_at": "2026-10-30T00:00:00Z",
        },
    )
    known = {(k["type"], k["name"]): k for k in tenant.http.get("/v1/events/known").json()}
    feature = known[("feature", "report")]
    assert feature["volume"] == 3
    assert feature["first_seen_at"].startswith("2026-10-30")
    assert feature["last_seen_at"].startswith("2026-11-03")
    assert known[("page", "report")]["volume"] == 1
    assert feature["core"] is False
    marked = tenant.http.patch("/v1/events/known/feature/report", json={"core": True})
    assert marked.status_code == 200
    assert marked.json()["core"] is True
    missing = tenant.http.patch("/v1/events/known/track/nope", json={"core": True})
    assert missing.status_code == 404
    assert missing.json()["code"] == "event_not_found"


def test_filters(tenant: Tenant) -> None:
    tenant.http.post(
        "/v1/events",
        json={
            "events": [
                {
                    "type": "page",
                    "name": "home",
                    "user_id": "a",
                    "occurred_at": "2026-11-01T00:00:00Z",
                },
                {
                    "type": "track",
                    "name": "buy",
                    "user_id": "a",
                    "occurred_at": "2026-11-05T00:00:00Z",
                },
                {
                    "type": "track",
                    "name": "buy",
                    "email": "b@example.com",
                    "occurred_at": "2026-11-06T00:00:00Z",
                },
            ]
        },
    )

    def names(**params: str) -> list[str]:
        return [e["name"] for e in tenant.http.get("/v1/events", params=params).json()["data"]]

    assert names(user_id="a") == ["home", "buy"]
    assert names(type="track") == ["buy", "buy"]
    assert names(email="B@example.com") == ["buy"]
    assert names(since="2026-11-05T00:00:00Z") == ["buy", "buy"]
    assert tenant.http.get("/v1/events", params={"since": "2026-11-05T00:00:00"}).status_code == 422
    assert tenant.http.get("/v1/events", params={"cursor": "bm9wZQ"}).status_code == 400


def test_future_and_naive_times_are_refused(tenant: Tenant) -> None:
    result = tenant.http.post(
        "/v1/events",
        json={
            "events": [
                _event(1, occurred_at="2999-01-01T00:00:00Z"),
                _event(2, occurred_at="2026-11-01T00:00:00"),
            ]
        },
    )
    body = result.json()
    assert body["accepted"] == 0
    assert [(r["index"], r["status"]) for r in body["results"]] == [(0, "error"), (1, "error")]


def test_client_route_and_identity_verification(tenant: Tenant) -> None:
    with tenant.client() as client:
        assert client.post("/v1/client/events", json=_event(1)).json()["accepted"] == 1
        tenant.http.patch("/v1/workspace", json={"identity_verification": True})
        secret = tenant.http.get("/v1/workspace/identity-secret").json()["identity_secret"]
        token = hmac.new(secret.encode(), b"u1", hashlib.sha256).hexdigest()
        unsigned = client.post("/v1/client/events", json=_event(1))
        assert unsigned.status_code == 401
        signed = client.post(
            "/v1/client/events", json=_event(1), headers={"X-Identity-Token": token}
        )
        assert signed.json()["accepted"] == 1
        mixed = client.post(
            "/v1/client/events",
            json={"events": [_event(1), _event(2)]},
            headers={"X-Identity-Token": token},
        )
        assert mixed.status_code == 422
    assert len(tenant.http.get("/v1/events").json()["data"]) == 2


def test_events_are_scoped_to_their_workspace(tenant: Tenant, other_tenant: Tenant) -> None:
    other_tenant.http.post("/v1/events", json=_event(1, id="x"))
    assert tenant.http.post("/v1/events", json=_event(1, id="x")).json()["accepted"] == 1
    assert len(tenant.http.get("/v1/events").json()["data"]) == 1
