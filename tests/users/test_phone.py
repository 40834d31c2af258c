"""Phone numbers: E.164 always; a national number is read with the user's country, the one
sent in the same write or else the one already stored."""

from __future__ import annotations

from tests.conftest import Tenant


def test_national_number_with_country_in_the_same_write(tenant: Tenant) -> None:
    user = tenant.http.put("/v1/users/p1", json={"phone": "010-1234-5678", "country": "KR"})
    assert user.status_code == 201
    assert user.json()["phone"] == "+821012345678"


def test_patch_reads_a_national_number_with_the_stored_country(tenant: Tenant) -> None:
    tenant.http.put("/v1/users/p2", json={"country": "JP"})
    patched = tenant.http.patch("/v1/users/p2", json={"phone": "090-1234-5678"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["phone"] == "+819012345678"
    assert patched.json()["country"] == "JP"


def test_batch_items_use_their_stored_country(tenant: Tenant) -> None:
    tenant.http.post(
        "/v1/users/batch",
        json={
            "items": [
                {"external_id": "b1", "country": "KR"},
                {"external_id": "b2", "country": "US"},
            ]
        },
    )
    result = tenant.http.post(
        "/v1/users/batch",
        json={
            "items": [
                {"external_id": "b1", "phone": "010-1234-5678"},
                {"external_id": "b2", "phone": "(415) 555-0132"},
                {"external_id": "b3", "phone": "010-1234-5678"},
            ]
        },
    ).json()
    assert [r["status"] for r in result["results"]] == ["updated", "updated", "error"]
    assert result["results"][2]["error"]["errors"][0]["field"] == "phone"
    assert tenant.http.get("/v1/users/b1").json()["phone"] == "+821012345678"
    assert tenant.http.get("/v1/users/b2").json()["phone"] == "+14155550132"
    assert tenant.http.get("/v1/users/b3").status_code == 404


def test_national_number_without_any_country_is_refused(tenant: Tenant) -> None:
    refused = tenant.http.put("/v1/users/p3", json={"phone": "010-1234-5678"})
    assert refused.status_code == 422
    body = refused.json()
    assert body["errors"][0]["field"] == "body.phone"
    assert "country" in body["errors"][0]["message"]
    assert tenant.http.get("/v1/users/p3").status_code == 404


def test_garbage_is_refused_before_any_lookup(tenant: Tenant) -> None:
    refused = tenant.http.put("/v1/users/p4", json={"phone": "call me maybe"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body.phone"
