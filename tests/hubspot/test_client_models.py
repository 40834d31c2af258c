"""Payload models: wire names, HubSpot's shapes, and client-side limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spoke.hubspot import (
    BatchResult,
    CustomEvent,
    ObjectUpsert,
    SearchRequest,
    SimplePublicObject,
    TokenResponse,
    UpsertedObject,
    parse_webhook_events,
)
from spoke.hubspot.models import MembershipsUpdate, property_strings


class TestSimplePublicObject:
    def test_parses_hubspot_shape(self) -> None:
        record = SimplePublicObject.model_validate_json(
            b'{"id":"501","properties":{"email":"a@b.com","phone":null},'
            b'"createdAt":"2026-01-02T03:04:05.678Z","updatedAt":"2026-01-02T03:04:05.678Z",'
            b'"archived":false,"propertiesWithHistory":{"email":[{"value":"a@b.com",'
            b'"timestamp":"2026-01-02T03:04:05.678Z","sourceType":"API"}]},'
            b'"associations":{"companies":{"results":[{"id":"7","type":"contact_to_company"}]}},'
            b'"someNewField":1}'
        )
        assert record.properties == {"email": "a@b.com", "phone": None}
        assert record.created_at == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
        assert record.properties_with_history is not None
        assert record.properties_with_history["email"][0].source_type == "API"
        assert record.associations is not None
        assert record.associations["companies"].results[0].id == "7"


class TestBatchResult:
    def test_parses_a_207_with_per_item_errors(self) -> None:
        result = BatchResult[UpsertedObject].model_validate(
            {
                "status": "COMPLETE",
                "results": [{"id": "1", "properties": {}, "new": True}],
                "numErrors": 1,
                "errors": [
                    {
                        "status": "error",
                        "category": "VALIDATION_ERROR",
                        "message": "Property values were not valid",
                        "context": {"objectWriteTraceId": ["trace-2"]},
                    }
                ],
                "startedAt": "2026-01-01T00:00:00Z",
                "completedAt": "2026-01-01T00:00:01Z",
            }
        )
        assert not result.ok
        assert result.results[0].new is True
        assert result.errors[0].ids == ["trace-2"]

    def test_merge_combines_chunks(self) -> None:
        a = BatchResult[SimplePublicObject].model_validate({"results": [{"id": "1"}]})
        b = BatchResult[SimplePublicObject].model_validate(
            {"results": [{"id": "2"}], "numErrors": 1, "errors": [{"message": "x"}]}
        )
        merged = a.merged(b)
        assert [r.id for r in merged.results] == ["1", "2"]
        assert merged.num_errors == 1
        assert not merged.ok


class TestWire:
    def test_upsert_input_uses_camel_case(self) -> None:
        body = ObjectUpsert(id="a@b.com", properties={"firstname": "A"}).to_wire()
        assert body == {"id": "a@b.com", "idProperty": "email", "properties": {"firstname": "A"}}

    def test_property_values_become_strings(self) -> None:
        assert property_strings({"a": True, "b": 1.5, "c": None, "d": "x"}) == {
            "a": "true",
            "b": "1.5",
            "c": "",
            "d": "x",
        }

    def test_search_request_always_sends_filter_groups(self) -> None:
        assert SearchRequest(query="ada").to_wire() == {
            "filterGroups": [],
            "sorts": [],
            "query": "ada",
            "properties": [],
            "limit": 100,
        }

    def test_event_time_is_utc_iso_with_millis(self) -> None:
        event = CustomEvent(
            event_name="pe1_x",
            email="a@b.com",
            occurred_at=datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC),
        )
        assert event.to_wire()["occurredAt"] == "2026-03-01T12:00:00.123Z"

    def test_naive_event_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone"):
            CustomEvent(event_name="pe1_x", email="a@b.com", occurred_at=datetime(2026, 3, 1))  # noqa: DTZ001

    def test_token_response_is_snake_case_on_the_wire(self) -> None:
        tokens = TokenResponse.model_validate(
            {"token_type": "bearer", "access_token": "a", "refresh_token": "r", "expires_in": 1800}
        )
        assert tokens.access_token == "a"

    def test_memberships_update_reads_hubspots_spelling(self) -> None:
        update = MembershipsUpdate.model_validate(
            {"recordsIdsAdded": ["1"], "recordIdsMissing": ["2"]}
        )
        assert update.record_ids_added == ["1"]
        assert update.record_ids_missing == ["2"]


class TestWebhookEvents:
    def test_parses_a_delivery(self) -> None:
        events = parse_webhook_events(
            b'[{"eventId":3816279340,"subscriptionId":25,"portalId":33,"appId":1160452,'
            b'"occurredAt":1462216307945,"subscriptionType":"contact.propertyChange",'
            b'"attemptNumber":0,"objectId":1246965,"propertyName":"lifecyclestage",'
            b'"propertyValue":"subscriber","changeSource":"CRM_UI","sourceId":"userId:45678"},'
            b'{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
            b'"eventType":"contact.creation","attemptNumber":0,"objectId":123,'
            b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
        )
        assert [e.subscription_type for e in events] == [
            "contact.propertyChange",
            "contact.creation",
        ]
        assert events[0].property_value == "subscriber"
        assert events[1].change_flag == "NEW"
        assert events[0].occurred == datetime(2016, 5, 2, 19, 11, 47, 945000, tzinfo=UTC)

    def test_merge_and_association_fields(self) -> None:
        (merge,) = parse_webhook_events(
            '[{"eventId":2,"subscriptionId":1,"portalId":1,"occurredAt":1,'
            '"subscriptionType":"contact.merge","objectId":5,"primaryObjectId":5,'
            '"mergedObjectIds":[6,7],"newObjectId":8,"numberOfPropertiesMoved":3}]'
        )
        assert merge.merged_object_ids == [6, 7]
        assert merge.new_object_id == 8

    def test_rejects_a_non_array(self) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 (pydantic's message)
            parse_webhook_events(b'{"eventId":1}')
