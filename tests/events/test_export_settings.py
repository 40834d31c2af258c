"""`/v1/events/hubspot/settings` and `/runs`: defaults, round trip, who may write, bad input
answered with problem documents that change nothing, and the look-back of the first export."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Tenant
from tests.events.conftest import Export, days_ago


def _problem(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["code"] == code
    return body


class TestSettings:
    def test_defaults_until_saved(self, tenant: Tenant) -> None:
        answer = tenant.http.get("/v1/events/hubspot/settings")
        assert answer.status_code == 200
        body = answer.json()
        assert (body["enabled"], body["send"], body["default_delivery"]) == (
            False,
            "core",
            "each",
        )
        assert (body["create_contacts"], body["schedule"], body["monthly_cap"]) == (
            False,
            "nightly",
            30_000_000,
        )
        status = tenant.http.get("/v1/events/hubspot/status").json()
        assert (status["enabled"], status["last_run"], status["sent"], status["cap"]) == (
            False,
            None,
            0,
            None,
        )

    def test_round_trip(self, export: Export) -> None:
        saved = export.configure(
            send="selected",
            events=[{"type": "page", "name": "/pricing", "delivery": "daily_rollup"}],
            property_types={"plan": "string"},
            long_values="reject",
            schedule="realtime",
            lookback_days=3,
            monthly_cap=1000,
        )
        again = export.http.get("/v1/events/hubspot/settings").json()
        assert again == saved
        assert saved["events"] == [{"type": "page", "name": "/pricing", "delivery": "daily_rollup"}]
        assert saved["export_from"] is not None
        assert saved["version"] == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"send": "selected"}, "body"),
            ({"send": "everything"}, "body.send"),
            ({"events": [{"type": "click", "name": "x"}]}, "body.events.0.type"),
            (
                {"events": [{"type": "track", "name": "x", "delivery": "weekly"}]},
                "body.events.0.delivery",
            ),
            (
                {"events": [{"type": "track", "name": "x"}, {"type": "track", "name": "x"}]},
                "body",
            ),
            ({"property_types": {"plan": "boolean"}}, "body.property_types.plan"),
            ({"nightly_hour": 24}, "body.nightly_hour"),
            ({"monthly_cap": 30_000_001}, "body.monthly_cap"),
            ({"lookback_days": -1}, "body.lookback_days"),
            ({"surprise": True}, "body.surprise"),
        ],
    )
    def test_bad_input_is_a_problem_and_changes_nothing(
        self, tenant: Tenant, body: dict[str, Any], field: str
    ) -> None:
        answer = tenant.http.put("/v1/events/hubspot/settings", json=body)
        problem = _problem(answer, 422, "invalid_input")
        assert any(e["field"].startswith(field) for e in problem["errors"]), problem
        assert tenant.http.get("/v1/events/hubspot/settings").json()["version"] == 0

    def test_enabling_needs_a_connection(self, tenant: Tenant) -> None:
        answer = tenant.http.put("/v1/events/hubspot/settings", json={"enabled": True})
        _problem(answer, 404, "hubspot_not_connected")
        saved = tenant.http.put("/v1/events/hubspot/settings", json={"enabled": False})
        assert saved.status_code == 200
        _problem(tenant.http.post("/v1/events/hubspot/runs"), 404, "hubspot_not_connected")

    def test_members_cannot_write(self, tenant: Tenant) -> None:
        created = tenant.http.post("/v1/members", json={"email": "m@example.com", "role": "member"})
        assert created.status_code == 201, created.text
        key = tenant.http.post(
            "/v1/api-keys", json={"name": "member", "member_id": created.json()["id"]}
        )
        assert key.status_code == 201, key.text
        member = key.json()
        headers = {"X-Api-Key": member["id"], "X-Secret-Key": member["secret"]}
        answer = tenant.http.put("/v1/events/hubspot/settings", json={}, headers=headers)
        _problem(answer, 403, "role_required")
        assert tenant.http.get("/v1/events/hubspot/settings", headers=headers).status_code == 200


class TestRuns:
    def test_manual_run_needs_the_export_enabled_and_one_at_a_time(self, export: Export) -> None:
        _problem(export.http.post("/v1/events/hubspot/runs"), 409, "event_export_not_enabled")
        export.configure()  # queues the first run
        _problem(export.http.post("/v1/events/hubspot/runs"), 409, "event_export_run_in_progress")
        export.run()
        started = export.http.post("/v1/events/hubspot/runs")
        assert started.status_code == 202, started.text
        assert started.json()["kind"] == "manual"

    def test_first_export_reaches_back_lookback_days(self, export: Export) -> None:
        contact = export.create_contact("old@example.com")
        export.ingest(
            {
                "type": "track",
                "name": "Opened",
                "email": "old@example.com",
                "occurred_at": days_ago(10),
            },
            {
                "type": "track",
                "name": "Opened",
                "email": "old@example.com",
                "occurred_at": days_ago(2),
            },
        )
        export.core("track", "Opened")
        export.configure(lookback_days=5)
        run = export.run()
        assert (run.kind, run.sent) == ("first", 1)
        assert len(export.timeline(contact)) == 1
