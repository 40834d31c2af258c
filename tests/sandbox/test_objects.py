"""CRM objects v3 over plain HTTP: exact bodies, error shapes, batch multi-status, validation."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

C = "/crm/v3/objects/contacts"


def _create(http: httpx.Client, **props: Any) -> str:
    resp = http.post(C, json={"properties": props})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _error(resp: httpx.Response, status: int, category: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body: dict[str, Any] = resp.json()
    assert body["status"] == "error"
    assert body["category"] == category
    assert len(body["correlationId"]) == 36
    return body


class TestErrorShapes:
    def test_not_found_has_hubspots_message_and_context(self, http: httpx.Client) -> None:
        body = _error(http.get(f"{C}/123456789"), 404, "OBJECT_NOT_FOUND")
        assert body["message"] == "Object not found.  objectId are usually numeric."
        assert body["context"] == {"id": ["123456789"]}

    def test_unknown_property_lists_every_problem(self, http: httpx.Client) -> None:
        resp = http.post(C, json={"properties": {"nope": "x", "email": "bad"}})
        body = _error(resp, 400, "VALIDATION_ERROR")
        assert body["message"].startswith("Property values were not valid: [")
        problems = json.loads(body["message"].split(": ", 1)[1])
        assert {p["error"] for p in problems} == {"PROPERTY_DOESNT_EXIST", "INVALID_EMAIL"}
        assert problems[0]["message"] == 'Property "nope" does not exist'
        assert {e["code"] for e in body["errors"]} == {"PROPERTY_DOESNT_EXIST", "INVALID_EMAIL"}

    def test_read_only_property_is_rejected(self, http: httpx.Client) -> None:
        resp = http.post(C, json={"properties": {"hs_object_id": "5", "createdate": "1"}})
        body = _error(resp, 400, "VALIDATION_ERROR")
        assert "READ_ONLY_VALUE" in body["message"]

    def test_enumeration_needs_an_option_value(self, http: httpx.Client) -> None:
        resp = http.post(C, json={"properties": {"lifecyclestage": "Lead"}})
        assert "INVALID_OPTION" in _error(resp, 400, "VALIDATION_ERROR")["message"]
        assert http.post(C, json={"properties": {"lifecyclestage": "lead"}}).status_code == 201

    def test_lifecycle_stage_only_moves_forward(self, http: httpx.Client) -> None:
        cid = _create(http, email="lc@example.com", lifecyclestage="customer")
        back = http.patch(f"{C}/{cid}", json={"properties": {"lifecyclestage": "lead"}})
        _error(back, 400, "VALIDATION_ERROR")
        assert http.patch(f"{C}/{cid}", json={"properties": {"lifecyclestage": ""}}).is_success
        ok = http.patch(f"{C}/{cid}", json={"properties": {"lifecyclestage": "lead"}})
        assert ok.json()["properties"]["lifecyclestage"] == "lead"

    def test_missing_token_is_401(self, portal: Any) -> None:
        resp = httpx.get(portal.sandbox.base_url + C)
        body = _error(resp, 401, "INVALID_AUTHENTICATION")
        assert body["message"].startswith("Authentication credentials not found.")

    def test_bad_json_and_unknown_object_type(self, http: httpx.Client) -> None:
        _error(http.post(C, content=b"{nope"), 400, "VALIDATION_ERROR")
        body = _error(http.get("/crm/v3/objects/widgets"), 400, "VALIDATION_ERROR")
        assert body["message"] == "Unable to infer object type from: widgets"

    def test_unknown_route_is_a_json_404(self, http: httpx.Client) -> None:
        _error(http.get("/crm/v3/nothing/here"), 404, "OBJECT_NOT_FOUND")


class TestReads:
    def test_default_and_requested_properties(self, http: httpx.Client) -> None:
        cid = _create(http, email="r@example.com", firstname="R", city="Lyon")
        default = http.get(f"{C}/{cid}").json()["properties"]
        assert set(default) == {
            "firstname",
            "lastname",
            "email",
            "createdate",
            "lastmodifieddate",
            "hs_object_id",
        }
        picked = http.get(f"{C}/{cid}", params={"properties": "city,ghost"}).json()["properties"]
        assert picked["city"] == "Lyon"
        assert "ghost" not in picked  # unknown properties are left out silently

    def test_datetime_values_are_normalised(self, http: httpx.Client) -> None:
        resp = http.post(
            "/crm/v3/objects/meetings",
            json={"properties": {"hs_timestamp": "1714564800000", "hs_meeting_title": "T"}},
        )
        assert resp.status_code == 201
        assert resp.json()["properties"]["hs_timestamp"] == "2024-05-01T12:00:00.000Z"

    def test_meeting_needs_a_timestamp_or_start_time(self, http: httpx.Client) -> None:
        missing = http.post(
            "/crm/v3/objects/meetings", json={"properties": {"hs_meeting_title": "T"}}
        )
        assert "REQUIRED_PROPERTY" in _error(missing, 400, "VALIDATION_ERROR")["message"]
        start = "2026-10-05T13:00:00Z"
        ok = http.post(
            "/crm/v3/objects/meetings", json={"properties": {"hs_meeting_start_time": start}}
        )
        assert ok.json()["properties"]["hs_timestamp"] == "2026-10-05T13:00:00.000Z"

    def test_archived_list_and_last_page_has_no_paging(self, http: httpx.Client) -> None:
        ids = [_create(http, email=f"x{i}@example.com") for i in range(3)]
        assert http.delete(f"{C}/{ids[0]}").status_code == 204
        live = http.get(C, params={"limit": 2}).json()
        assert [r["id"] for r in live["results"]] == ids[1:]
        assert "paging" not in live
        archived = http.get(C, params={"archived": "true"}).json()["results"]
        assert [r["id"] for r in archived] == ids[:1]
        assert archived[0]["archived"] is True

    def test_archived_email_can_be_reused(self, http: httpx.Client) -> None:
        first = _create(http, email="again@example.com")
        http.delete(f"{C}/{first}")
        assert _create(http, email="again@example.com") != first

    def test_update_by_email_and_409_on_taken_email(self, http: httpx.Client) -> None:
        _create(http, email="taken@example.com")
        cid = _create(http, email="mine@example.com")
        resp = http.patch(
            f"{C}/mine@example.com",
            params={"idProperty": "email"},
            json={"properties": {"firstname": "Me"}},
        )
        assert resp.json()["id"] == cid
        clash = http.patch(f"{C}/{cid}", json={"properties": {"email": "taken@example.com"}})
        assert _error(clash, 409, "CONFLICT")["message"].startswith("Contact already exists.")


class TestBatch:
    def test_more_than_100_inputs_is_rejected(self, http: httpx.Client) -> None:
        inputs = [{"properties": {"email": f"b{i}@example.com"}} for i in range(101)]
        _error(http.post(f"{C}/batch/create", json={"inputs": inputs}), 400, "VALIDATION_ERROR")
        assert http.get(C).json()["results"] == []

    def test_batch_create_without_trace_ids_is_all_or_nothing(self, http: httpx.Client) -> None:
        existing = _create(http, email="in@example.com")
        inputs = [
            {"properties": {"email": "fresh@example.com"}},
            {"properties": {"email": "in@example.com"}},
        ]
        body = _error(http.post(f"{C}/batch/create", json={"inputs": inputs}), 409, "CONFLICT")
        assert body["message"] == f"Contact already exists. Existing ID: {existing}"
        assert len(http.get(C).json()["results"]) == 1

    def test_batch_create_with_trace_ids_is_partial_207(self, http: httpx.Client) -> None:
        _create(http, email="in@example.com")
        inputs = [
            {"properties": {"email": "fresh@example.com"}, "objectWriteTraceId": "t1"},
            {"properties": {"email": "in@example.com"}, "objectWriteTraceId": "t2"},
        ]
        resp = http.post(f"{C}/batch/create", json={"inputs": inputs})
        assert resp.status_code == 207
        body = resp.json()
        assert body["numErrors"] == 1
        assert body["errors"][0]["context"]["objectWriteTraceId"] == ["t2"]
        assert [r["objectWriteTraceId"] for r in body["results"]] == ["t1"]

    def test_batch_update_with_a_missing_id_is_207(self, http: httpx.Client) -> None:
        cid = _create(http, email="u@example.com")
        inputs = [
            {"id": cid, "properties": {"firstname": "U"}},
            {"id": "777777", "properties": {"firstname": "V"}},
        ]
        resp = http.post(f"{C}/batch/update", json={"inputs": inputs})
        assert resp.status_code == 207
        body = resp.json()
        assert body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
        assert body["errors"][0]["context"] == {"ids": ["777777"]}
        assert body["results"][0]["properties"]["firstname"] == "U"

    def test_upsert_is_all_or_nothing_on_invalid_values(self, http: httpx.Client) -> None:
        inputs = [
            {"id": "ok@example.com", "idProperty": "email", "properties": {"firstname": "A"}},
            {"id": "bad@example.com", "idProperty": "email", "properties": {"nope": "B"}},
        ]
        _error(http.post(f"{C}/batch/upsert", json={"inputs": inputs}), 400, "VALIDATION_ERROR")
        assert http.get(C).json()["results"] == []

    def test_upsert_rejects_duplicate_ids(self, http: httpx.Client) -> None:
        inputs = [
            {"id": "same@example.com", "idProperty": "email", "properties": {}},
            {"id": "SAME@example.com", "idProperty": "email", "properties": {}},
        ]
        resp = http.post(f"{C}/batch/upsert", json={"inputs": inputs})
        assert "Duplicate IDs" in _error(resp, 400, "VALIDATION_ERROR")["message"]


class TestGdprDelete:
    def test_record_is_gone_for_good(self, http: httpx.Client) -> None:
        cid = _create(http, email="forget@example.com")
        resp = http.post(
            f"{C}/gdpr-delete", json={"objectId": "forget@example.com", "idProperty": "email"}
        )
        assert resp.status_code == 204
        assert http.get(f"{C}/{cid}", params={"archived": "true"}).status_code == 404


@pytest.mark.parametrize("object_type", ["companies", "0-2", "company"])
def test_object_type_aliases(http: httpx.Client, object_type: str) -> None:
    resp = http.post(f"/crm/v3/objects/{object_type}", json={"properties": {"name": "Acme"}})
    assert resp.status_code == 201
    assert set(resp.json()["properties"]) == {
        "name",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }
