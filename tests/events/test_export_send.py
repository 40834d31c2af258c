"""Export to HubSpot over real HTTP: definitions created once, core-only versus selected
events, each occurrence versus daily rollups, property rules, and the contact timeline."""

from __future__ import annotations

from tests.events.conftest import Export, days_ago


def _event(user: str, name: str = "Report exported", **extra: object) -> dict[str, object]:
    return {"type": "track", "name": name, "email": user, **extra}


class TestDefinitions:
    def test_created_once_and_properties_added_when_they_appear(self, export: Export) -> None:
        contact = export.create_contact("ann@example.com")
        export.ingest(_event("ann@example.com", properties={"format": "csv", "rows": 10}))
        export.core("track", "Report exported")
        export.configure()
        first = export.run()
        assert (first.status, first.sent) == ("succeeded", 1)

        export.ingest(
            _event("ann@example.com", properties={"format": "pdf", "pages": 3, "color": True})
        )
        export.ingest(_event("ann@example.com", properties={"format": "xls"}))
        second = export.run()
        assert (second.status, second.sent) == ("succeeded", 2)

        assert export.requests("POST /events/v3/event-definitions") == 1
        assert export.requests("POST /events/v3/event-definitions/{eventName}/property") == 2
        (definition,) = export.definitions()
        assert definition["fullyQualifiedName"] == (
            f"pe{export.portal_id}_spoke_track_report_exported"
        )
        types = {p["name"]: p["type"] for p in definition["properties"]}
        assert types == {
            "format": "string",
            "rows": "number",
            "pages": "number",
            "color": "enumeration",
        }
        shown = export.timeline(contact)
        assert len(shown) == 3
        assert {e["eventType"] for e in shown} == {definition["fullyQualifiedName"]}
        assert {e["properties"].get("format") for e in shown} == {"csv", "pdf", "xls"}
        status = export.status()
        assert status["sent"] == 3
        assert status["definitions"][0]["properties"] == 4


class TestSelection:
    def test_core_only_by_default(self, export: Export) -> None:
        contact = export.create_contact("bo@example.com")
        export.ingest(
            _event("bo@example.com", "Signed up"),
            _event("bo@example.com", "Clicked banner"),
            {"type": "page", "name": "/pricing", "email": "bo@example.com"},
        )
        export.core("track", "Signed up")
        export.configure()
        run = export.run()
        assert run.sent == 1
        assert [e["eventType"] for e in export.timeline(contact)] == [
            f"pe{export.portal_id}_spoke_track_signed_up"
        ]

    def test_selected_page_feature_and_track_events(self, export: Export) -> None:
        contact = export.create_contact("cy@example.com")
        export.ingest(
            _event("cy@example.com", "Signed up"),
            _event("cy@example.com", "Clicked banner"),
            {"type": "page", "name": "/pricing", "email": "cy@example.com"},
            {"type": "feature", "name": "Export button", "email": "cy@example.com"},
        )
        export.core("track", "Signed up")
        export.configure(
            send="selected",
            events=[
                {"type": "page", "name": "/pricing"},
                {"type": "feature", "name": "Export button"},
                {"type": "track", "name": "Clicked banner"},
            ],
        )
        run = export.run()
        assert run.sent == 3
        prefix = f"pe{export.portal_id}_"
        assert sorted(e["eventType"].removeprefix(prefix) for e in export.timeline(contact)) == [
            "spoke_feature_export_button",
            "spoke_page_pricing",
            "spoke_track_clicked_banner",
        ]


class TestDelivery:
    def test_each_occurrence_is_one_completion_with_our_uuid(self, export: Export) -> None:
        contact = export.create_contact("di@example.com")
        export.ingest(*[_event("di@example.com", "Search") for _ in range(7)])
        export.core("track", "Search")
        export.configure()
        assert export.run().sent == 7
        shown = export.timeline(contact)
        assert len(shown) == 7
        assert len({e["uuid"] for e in shown}) == 7

    def test_daily_rollup_sends_one_completion_per_user_event_and_past_day(
        self, export: Export
    ) -> None:
        contact = export.create_contact("ed@example.com")
        export.create_contact("fi@example.com")
        export.ingest(
            _event("ed@example.com", "Search", occurred_at=days_ago(2.0)),
            _event("ed@example.com", "Search", occurred_at=days_ago(2.0)),
            _event("ed@example.com", "Search", occurred_at=days_ago(2.0)),
            _event("fi@example.com", "Search", occurred_at=days_ago(2.0)),
            _event("ed@example.com", "Search", occurred_at=days_ago(0.0)),  # today: waits
        )
        export.core("track", "Search")
        export.configure(default_delivery="daily_rollup")
        run = export.run()
        assert run.sent == 2
        (rollup,) = export.timeline(contact)
        assert rollup["eventType"].endswith("_daily")
        assert rollup["properties"]["count"] == "3"
        assert rollup["properties"]["first_at"] <= rollup["properties"]["last_at"]

        # A late event for a day already sent goes out as a second part of that day.
        export.ingest(_event("ed@example.com", "Search", occurred_at=days_ago(2.0)))
        assert export.run().sent == 1
        counts = sorted(e["properties"]["count"] for e in export.timeline(contact))
        assert counts == ["1", "3"]

    def test_per_event_delivery_overrides_the_default(self, export: Export) -> None:
        contact = export.create_contact("gu@example.com")
        export.ingest(
            _event("gu@example.com", "Search", occurred_at=days_ago(1.5)),
            _event("gu@example.com", "Search", occurred_at=days_ago(1.5)),
            _event("gu@example.com", "Signed up"),
        )
        export.core("track", "Search")
        export.core("track", "Signed up")
        export.configure(events=[{"type": "track", "name": "Search", "delivery": "daily_rollup"}])
        assert export.run().sent == 2
        kinds = sorted(e["eventType"].rsplit("_", 1)[-1] for e in export.timeline(contact))
        assert kinds == ["daily", "up"]


class TestProperties:
    def test_long_values_truncated_or_rejected_never_failing_the_batch(
        self, export: Export
    ) -> None:
        contact = export.create_contact("hu@example.com")
        long = "x" * 300
        export.ingest(
            _event("hu@example.com", "Note", properties={"text": long}),
            _event("hu@example.com", "Note", properties={"text": "short"}),
            _event("hu@example.com", "Note", properties={"page_url": "u" * 900}),
        )
        export.core("track", "Note")
        export.configure(long_values="reject")
        run = export.run()
        assert (run.sent, run.rejected) == (2, 1)
        status = export.status()
        assert status["rejected"] == {"total": 1, "by_reason": {"value_too_long": 1}}
        assert {len(e["properties"].get("text", "")) for e in export.timeline(contact)} == {0, 5}

        export.configure(long_values="truncate")
        export.ingest(_event("hu@example.com", "Note", properties={"text": long}))
        assert export.run().sent == 1
        assert max(len(e["properties"].get("text", "")) for e in export.timeline(contact)) == 256

    def test_fifty_property_limit_is_visible(self, export: Export) -> None:
        export.create_contact("iv@example.com")
        props = {f"p{i:02d}": i for i in range(55)}
        export.ingest(_event("iv@example.com", "Wide", properties=props))
        export.core("track", "Wide")
        export.configure()
        assert export.run().sent == 1
        (definition,) = export.status()["definitions"]
        assert definition["properties"] == 50
        assert sorted(definition["dropped_properties"]) == [f"p{i}" for i in range(50, 55)]
        assert "50 properties" in definition["dropped_properties"]["p54"]

    def test_declared_types_and_normalised_names(self, export: Export) -> None:
        export.create_contact("jo@example.com")
        export.ingest(
            _event(
                "jo@example.com",
                "Plan Changed",
                properties={"Plan Name": "pro", "seats": "12", "When": "2026-11-01T10:00:00Z"},
            )
        )
        export.core("track", "Plan Changed")
        export.configure(property_types={"seats": "string"})
        assert export.run().sent == 1
        (definition,) = export.definitions()
        assert definition["name"].startswith("spoke_track_plan_changed")
        types = {p["name"]: p["type"] for p in definition["properties"]}
        assert types == {"plan_name": "string", "seats": "string", "when": "datetime"}
