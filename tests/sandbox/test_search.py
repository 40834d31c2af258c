"""CRM search: operators, free text, limits, the 10,000 cap, the 5/s limit and index lag."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from tests.sandbox.harness import PortalHandle

C = "/crm/v3/objects/contacts"
S = C + "/search"


def _search(http: httpx.Client, *filters: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {"filterGroups": [{"filters": list(filters)}] if filters else [], **extra}
    resp = http.post(S, json=body)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = resp.json()
    return result


@pytest.fixture
def people(http: httpx.Client) -> list[str]:
    rows = [
        {"email": "ann@alpha.com", "firstname": "Ann", "city": "Berlin", "lifecyclestage": "lead"},
        {"email": "bob@beta.com", "firstname": "Bob", "city": "Lyon", "lifecyclestage": "customer"},
        {"email": "cy@alpha.com", "firstname": "Cy", "lifecyclestage": "lead"},
    ]
    ids = []
    for props in rows:
        resp = http.post(C, json={"properties": props})
        assert resp.status_code == 201
        ids.append(resp.json()["id"])
    return ids


def _ids(result: dict[str, Any]) -> list[str]:
    return [r["id"] for r in result["results"]]


class TestOperators:
    def test_eq_is_case_insensitive_for_strings(
        self, http: httpx.Client, people: list[str]
    ) -> None:
        hit = _search(http, {"propertyName": "firstname", "operator": "EQ", "value": "ANN"})
        assert _ids(hit) == people[:1]

    def test_enumeration_eq_is_case_sensitive(self, http: httpx.Client, people: list[str]) -> None:
        f = {"propertyName": "lifecyclestage", "operator": "EQ"}
        assert _ids(_search(http, {**f, "value": "lead"})) == [people[0], people[2]]
        assert _search(http, {**f, "value": "LEAD"})["total"] == 0

    def test_in_needs_lower_case_values(self, http: httpx.Client, people: list[str]) -> None:
        f = {"propertyName": "city", "operator": "IN"}
        assert _ids(_search(http, {**f, "values": ["berlin", "lyon"]})) == people[:2]
        assert _search(http, {**f, "values": ["Berlin"]})["total"] == 0

    def test_has_property_and_not_in(self, http: httpx.Client, people: list[str]) -> None:
        assert _ids(_search(http, {"propertyName": "city", "operator": "NOT_HAS_PROPERTY"})) == [
            people[2]
        ]
        hit = _search(http, {"propertyName": "city", "operator": "NOT_IN", "values": ["lyon"]})
        assert _ids(hit) == [people[0], people[2]]

    def test_contains_token_with_wildcard(self, http: httpx.Client, people: list[str]) -> None:
        hit = _search(
            http, {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@alpha.com"}
        )
        assert _ids(hit) == [people[0], people[2]]

    def test_groups_are_ored_and_filters_anded(self, http: httpx.Client, people: list[str]) -> None:
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "lifecyclestage", "operator": "EQ", "value": "lead"},
                        {"propertyName": "city", "operator": "HAS_PROPERTY"},
                    ]
                },
                {"filters": [{"propertyName": "firstname", "operator": "EQ", "value": "bob"}]},
            ]
        }
        assert _ids(http.post(S, json=body).json()) == people[:2]

    def test_datetime_range_with_epoch_ms(self, http: httpx.Client, people: list[str]) -> None:
        created = http.get(f"{C}/{people[0]}").json()["createdAt"]
        hit = _search(
            http,
            {
                "propertyName": "createdate",
                "operator": "BETWEEN",
                "value": "0",
                "highValue": created,
            },
        )
        assert people[0] in _ids(hit)
        assert (
            _search(http, {"propertyName": "createdate", "operator": "LT", "value": "0"})["total"]
            == 0
        )

    def test_free_text_query(self, http: httpx.Client, people: list[str]) -> None:
        assert _ids(_search(http, query="bo")) == [people[1]]

    def test_association_pseudo_property(self, http: httpx.Client, people: list[str]) -> None:
        company = http.post("/crm/v3/objects/companies", json={"properties": {"name": "Co"}}).json()
        http.put(
            f"/crm/v4/objects/contacts/{people[1]}/associations/default/companies/{company['id']}"
        )
        hit = _search(
            http, {"propertyName": "associations.company", "operator": "EQ", "value": company["id"]}
        )
        assert _ids(hit) == [people[1]]


class TestLimits:
    def test_limit_above_200_is_rejected(self, http: httpx.Client) -> None:
        assert http.post(S, json={"limit": 201}).status_code == 400

    def test_too_many_filters(self, http: httpx.Client) -> None:
        f = {"propertyName": "email", "operator": "HAS_PROPERTY"}
        groups = [{"filters": [f] * 6}] * 4  # 24 filters > 18
        resp = http.post(S, json={"filterGroups": groups})
        assert resp.status_code == 400
        assert resp.json()["category"] == "VALIDATION_ERROR"

    def test_paging_stops_at_the_result_cap(self, http: httpx.Client, portal: PortalHandle) -> None:
        portal.portal.settings.search_result_cap = 4
        inputs = [{"properties": {"email": f"cap{i}@example.com"}} for i in range(6)]
        http.post(f"{C}/batch/create", json={"inputs": inputs})
        page = http.post(S, json={"limit": 2, "after": "2"}).json()
        assert page["total"] == 6  # the true total is reported...
        assert "paging" not in page  # ...but no cursor leads past the cap
        past = http.post(S, json={"limit": 2, "after": "4"})
        assert past.status_code == 400

    def test_five_searches_per_second(self, http: httpx.Client, portal: PortalHandle) -> None:
        portal.portal.settings.rate_limits.enabled = True
        statuses = [http.post(S, json={}).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        resp = http.post(S, json={})
        assert resp.json()["message"] == "You have reached your secondly limit."
        assert resp.json()["policyName"] == "SECONDLY"
        assert "x-hubspot-ratelimit-max" not in resp.headers
        time.sleep(1.05)
        ok = http.post(S, json={})
        assert ok.status_code == 200
        assert "x-hubspot-ratelimit-remaining" not in ok.headers  # search has no limit headers


class TestIndexLag:
    def test_writes_show_up_after_the_configured_lag(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        portal.portal.settings.search_lag_ms = 300
        cid = http.post(C, json={"properties": {"email": "lag@example.com"}}).json()["id"]
        assert http.get(f"{C}/{cid}").status_code == 200  # reads are immediate
        assert _search(http)["total"] == 0
        time.sleep(0.35)
        assert _ids(_search(http)) == [cid]

        http.patch(f"{C}/{cid}", json={"properties": {"firstname": "Later"}})
        f = {"propertyName": "firstname", "operator": "EQ", "value": "later"}
        assert _search(http, f)["total"] == 0  # the index still has the old version
        time.sleep(0.35)
        assert _search(http, f)["total"] == 1


class TestIdRanges:
    """Searches that only walk record ids are answered from a sorted id index; the answer
    must be the one the general path gives (asked for here with the same group twice, which
    ORs to the same set but takes the general path)."""

    def test_id_range_answers_match_the_general_path(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        inputs = [{"properties": {"email": f"range{i}@example.com"}} for i in range(40)]
        created = http.post(f"{C}/batch/create", json={"inputs": inputs}).json()["results"]
        ids = sorted(int(r["id"]) for r in created)
        http.delete(f"{C}/{ids[5]}")  # a hole the index must not return
        low, mid, high = ids[3], ids[20], ids[-4]
        cases: list[tuple[list[dict[str, Any]], list[Any], dict[str, Any]]] = [
            (
                [{"operator": "GT", "value": str(low)}, {"operator": "LT", "value": str(high)}],
                [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
                {"limit": 7},
            ),
            (
                [{"operator": "GTE", "value": str(low)}, {"operator": "LTE", "value": str(mid)}],
                [],
                {"limit": 5, "after": "5"},
            ),
            ([{"operator": "GT", "value": str(mid)}], ["-hs_object_id"], {"limit": 200}),
            ([{"operator": "LT", "value": str(mid)}], ["hs_object_id"], {"limit": 3, "after": "2"}),
            (
                [{"operator": "GT", "value": str(high)}, {"operator": "LT", "value": str(low)}],
                [],
                {"limit": 10},
            ),
        ]
        for filters, sorts, extra in cases:
            group = {"filters": [{"propertyName": "hs_object_id", **f} for f in filters]}
            body = {"sorts": sorts, "properties": ["email"], **extra}
            fast = http.post(S, json={**body, "filterGroups": [group]})
            general = http.post(S, json={**body, "filterGroups": [group, group]})
            assert fast.status_code == general.status_code == 200
            assert fast.json() == general.json()
        everything = _search(
            http,
            {"propertyName": "hs_object_id", "operator": "GT", "value": "0"},
            sorts=[{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
            limit=200,
        )
        assert [int(i) for i in _ids(everything)] == sorted(set(ids) - {ids[5]}, reverse=True)
        assert everything["total"] == len(ids) - 1
