"""Single-user writes and reads: PUT, PATCH, GET, DELETE, restore, and field normalisation."""

from __future__ import annotations

import pytest
from tests.conftest import Tenant
from tests.users.support import declare, feed, fields_named, problem, put

FULL = {
    "email": "ann@example.com",
    "phone": "+14155550123",
    "first_name": "Ann",
    "last_name": "Lee",
    "country": "US",
    "industry": "Software",
    "company": "Acme",
    "language": "en",
    "timezone": "America/Los_Angeles",
    "tags": {"plan": "pro"},
}


def test_put_creates_with_201_and_get_returns_the_same(tenant: Tenant) -> None:
    created = tenant.http.put("/v1/users/u1", json=FULL)
    assert created.status_code == 201
    body = created.json()
    assert {k: body[k] for k in FULL} == FULL
    assert body["external_id"] == "u1"
    assert body["version"] == 1
    assert body["deleted_at"] is None
    assert body["lists"] == []
    assert body["custom"] == {}
    fetched = tenant.http.get("/v1/users/u1")
    assert fetched.status_code == 200
    assert fetched.json() == body


def test_put_on_existing_user_replaces_and_clears_omitted_fields(tenant: Tenant) -> None:
    put(tenant, "u1", **FULL)
    replaced = tenant.http.put("/v1/users/u1", json={"first_name": "Anne"})
    assert replaced.status_code == 200
    body = replaced.json()
    assert body["first_name"] == "Anne"
    for name in (
        "email",
        "phone",
        "last_name",
        "country",
        "industry",
        "company",
        "language",
        "timezone",
    ):
        assert body[name] is None, name
    assert body["tags"] == {"plan": "pro"}  # tags are replaced only when given
    assert body["version"] == 2
    assert tenant.http.get("/v1/users/u1").json() == body


def test_put_with_tags_replaces_all_tags(tenant: Tenant) -> None:
    put(tenant, "u1", tags={"plan": "pro", "seat": "3"})
    body = put(tenant, "u1", tags={"region": "eu"})
    assert body["tags"] == {"region": "eu"}


def test_identical_put_is_unchanged_and_keeps_the_version(tenant: Tenant) -> None:
    first = put(tenant, "u1", **FULL)
    again = tenant.http.put("/v1/users/u1", json=FULL)
    assert again.status_code == 200
    assert again.json()["version"] == first["version"]
    assert again.json()["updated_at"] == first["updated_at"]
    assert len(feed(tenant)) == 1


def test_patch_changes_only_the_given_fields(tenant: Tenant) -> None:
    put(tenant, "u1", **FULL)
    patched = tenant.http.patch("/v1/users/u1", json={"company": "Globex", "phone": None})
    assert patched.status_code == 200
    body = patched.json()
    assert body["company"] == "Globex"
    assert body["phone"] is None
    assert body["email"] == FULL["email"]
    assert body["first_name"] == "Ann"
    assert body["tags"] == {"plan": "pro"}
    assert body["version"] == 2


def test_empty_string_clears_a_standard_field(tenant: Tenant) -> None:
    put(tenant, "u1", **FULL)
    body = tenant.http.patch("/v1/users/u1", json={"email": "", "first_name": "  "}).json()
    assert body["email"] is None
    assert body["first_name"] is None


def test_patch_merges_tags_and_custom_key_by_key(tenant: Tenant) -> None:
    for name, kind in (("score", "number"), ("vip", "boolean")):
        declare(tenant, name, kind)
    put(tenant, "u1", custom={"score": 1, "vip": True}, tags={"a": "1", "b": "2"})
    body = tenant.http.patch(
        "/v1/users/u1", json={"custom": {"score": 2}, "tags": {"b": "", "c": "3"}}
    ).json()
    assert body["custom"] == {"score": 2, "vip": True}
    assert body["tags"] == {"a": "1", "c": "3"}
    removed = tenant.http.patch("/v1/users/u1", json={"custom": {"vip": None}}).json()
    assert removed["custom"] == {"score": 2}


def test_patch_of_a_missing_user_is_404_and_creates_nothing(tenant: Tenant) -> None:
    problem(tenant.http.patch("/v1/users/ghost", json={"first_name": "G"}), 404, "user_not_found")
    problem(tenant.http.get("/v1/users/ghost"), 404, "user_not_found")
    assert feed(tenant) == []


def test_delete_hides_the_user_and_restore_brings_it_back(tenant: Tenant) -> None:
    put(tenant, "u1", **FULL)
    deleted = tenant.http.delete("/v1/users/u1")
    assert deleted.status_code == 204
    assert deleted.content == b""
    problem(tenant.http.get("/v1/users/u1"), 404, "user_not_found")
    hidden = tenant.http.get("/v1/users/u1", params={"include_deleted": "true"})
    assert hidden.status_code == 200
    assert hidden.json()["deleted_at"] is not None
    assert hidden.json()["email"] == FULL["email"]
    assert tenant.http.get("/v1/users").json()["data"] == []
    listed = tenant.http.get("/v1/users", params={"include_deleted": "true"}).json()["data"]
    assert [u["external_id"] for u in listed] == ["u1"]
    problem(tenant.http.delete("/v1/users/u1"), 404, "user_not_found")

    restored = tenant.http.post("/v1/users/u1/restore")
    assert restored.status_code == 200
    body = restored.json()
    assert body["deleted_at"] is None
    assert {k: body[k] for k in FULL} == FULL
    assert body["version"] == 3
    assert tenant.http.get("/v1/users/u1").status_code == 200
    # Restoring a live user is a no-op.
    again = tenant.http.post("/v1/users/u1/restore")
    assert again.status_code == 200
    assert again.json()["version"] == 3


def test_restore_of_a_missing_user_is_404(tenant: Tenant) -> None:
    problem(tenant.http.post("/v1/users/ghost/restore"), 404, "user_not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/users/u1", {"first_name": "X"}),
        ("PATCH", "/v1/users/u1", {"first_name": "X"}),
        ("PATCH", "/v1/users/u1/tags", {"tags": {"x": "1"}}),
    ],
)
def test_writes_to_a_deleted_user_are_409_and_change_nothing(
    tenant: Tenant, method: str, path: str, body: dict[str, object]
) -> None:
    put(tenant, "u1", first_name="Ann")
    assert tenant.http.delete("/v1/users/u1").status_code == 204
    before = feed(tenant)
    response = tenant.http.request(method, path, json=body)
    problem(response, 409, "user_deleted")
    after = tenant.http.get("/v1/users/u1", params={"include_deleted": "true"}).json()
    assert after["first_name"] == "Ann"
    assert after["tags"] == {}
    assert feed(tenant) == before


def test_a_batch_item_for_a_deleted_user_is_an_item_error(tenant: Tenant) -> None:
    put(tenant, "u1", first_name="Ann")
    tenant.http.delete("/v1/users/u1")
    body = tenant.http.post(
        "/v1/users/batch", json={"items": [{"external_id": "u1", "first_name": "X"}]}
    ).json()
    assert body["failed"] == 1
    assert body["results"][0]["error"]["code"] == "user_deleted"


# -- normalisation and validation ---------------------------------------------------------


def test_email_is_trimmed_and_lower_cased(tenant: Tenant) -> None:
    body = put(tenant, "u1", email="  Ann.Lee@Example.COM \t")
    assert body["email"] == "ann.lee@example.com"


@pytest.mark.parametrize("email", ["not-an-email", "a@", "@example.com", "a b@example.com"])
def test_invalid_email_is_422_naming_the_field(tenant: Tenant, email: str) -> None:
    body = problem(tenant.http.put("/v1/users/u1", json={"email": email}), 422, "invalid_input")
    assert fields_named(body) == {"body.email"}
    problem(tenant.http.get("/v1/users/u1"), 404, "user_not_found")


@pytest.mark.parametrize(
    ("phone", "country", "stored"),
    [
        ("+1 (415) 555-0123", None, "+14155550123"),
        ("010-1234-5678", "KR", "+821012345678"),
        ("010-1234-5678", "kr", "+821012345678"),
        ("+82 10 1234 5678", "US", "+821012345678"),  # an explicit + wins over the country
        ("030 123456", "DE", "+4930123456"),
    ],
)
def test_phone_is_stored_as_e164(
    tenant: Tenant, phone: str, country: str | None, stored: str
) -> None:
    body = put(tenant, "u1", phone=phone, country=country)
    assert body["phone"] == stored


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"phone": "010-1234-5678"}, "body.phone"),  # no country to read it against
        ({"phone": "12", "country": "US"}, "body.phone"),
        ({"phone": "phone me", "country": "US"}, "body.phone"),
        ({"phone": "+1 415 555 0123 4567"}, "body.phone"),
        ({"country": "XX"}, "body.country"),
        ({"country": "Korea"}, "body.country"),
        ({"language": "english!"}, "body.language"),
        ({"timezone": "Mars/Olympus"}, "body.timezone"),
        ({"timezone": "asia/seoul"}, "body.timezone"),
        ({"first_name": "x" * 201}, "body.first_name"),
    ],
)
def test_invalid_standard_fields_are_422(
    tenant: Tenant, values: dict[str, str], field: str
) -> None:
    body = problem(tenant.http.put("/v1/users/u1", json=values), 422, "invalid_input")
    assert fields_named(body) == {field}
    problem(tenant.http.get("/v1/users/u1"), 404, "user_not_found")


def test_several_invalid_fields_are_all_named(tenant: Tenant) -> None:
    response = tenant.http.put(
        "/v1/users/u1", json={"email": "nope", "phone": "12", "country": "US", "timezone": "x"}
    )
    body = problem(response, 422, "invalid_input")
    assert fields_named(body) == {"body.email", "body.phone", "body.timezone"}


def test_country_language_and_timezone_are_normalised(tenant: Tenant) -> None:
    body = put(tenant, "u1", country=" kr ", language="PT-BR", timezone=" Asia/Seoul ")
    assert body["country"] == "KR"
    assert body["language"] == "pt-BR"
    assert body["timezone"] == "Asia/Seoul"


def test_patch_reads_a_national_phone_with_the_country_it_sends(tenant: Tenant) -> None:
    put(tenant, "u1", first_name="Ann")
    patched = tenant.http.patch("/v1/users/u1", json={"phone": "010-1234-5678", "country": "KR"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["phone"] == "+821012345678"
    assert patched.json()["first_name"] == "Ann"


@pytest.mark.parametrize("external_id", ["%20lead", "trail%20", "a%09b"])
def test_bad_external_ids_are_422(tenant: Tenant, external_id: str) -> None:
    response = tenant.http.put(f"/v1/users/{external_id}", json={})
    problem(response, 422, "invalid_input")


def test_external_ids_may_hold_unicode_and_punctuation(tenant: Tenant) -> None:
    body = put(tenant, "user:42@app.example|ünï", first_name="U")
    assert body["external_id"] == "user:42@app.example|ünï"
    assert tenant.http.get("/v1/users/user:42@app.example|ünï").status_code == 200


def test_users_of_another_workspace_are_invisible(tenant: Tenant, other_tenant: Tenant) -> None:
    put(other_tenant, "shared", first_name="Theirs")
    problem(tenant.http.get("/v1/users/shared"), 404, "user_not_found")
    problem(tenant.http.delete("/v1/users/shared"), 404, "user_not_found")
    problem(tenant.http.patch("/v1/users/shared", json={"first_name": "x"}), 404, "user_not_found")
    mine = tenant.http.put("/v1/users/shared", json={"first_name": "Mine"})
    assert mine.status_code == 201
    assert other_tenant.http.get("/v1/users/shared").json()["first_name"] == "Theirs"
    assert [u["external_id"] for u in tenant.http.get("/v1/users").json()["data"]] == ["shared"]


def test_an_empty_patch_changes_nothing(tenant: Tenant) -> None:
    first = put(tenant, "u1", **FULL)
    response = tenant.http.patch("/v1/users/u1", json={})
    assert response.status_code == 200
    assert response.json() == first
    assert len(feed(tenant)) == 1


def test_a_replacing_put_reports_cleared_fields_in_the_feed(tenant: Tenant) -> None:
    put(tenant, "u1", email="a@example.com", company="Acme")
    put(tenant, "u1", company="Acme")
    assert feed(tenant)[-1]["changes"] == {"email": ["a@example.com", None]}
