"""Authentication and scoping: key pairs, Basic auth, client keys, roles."""

from __future__ import annotations

import httpx
from tests.conftest import Tenant


def test_header_pair_authenticates(tenant: Tenant) -> None:
    response = tenant.http.get("/v1/workspace")
    assert response.status_code == 200
    assert response.json()["id"] == tenant.workspace_id


def test_basic_auth_with_the_same_pair(tenant: Tenant) -> None:
    response = httpx.get(f"{tenant.backend.url}/v1/workspace", auth=(tenant.key_id, tenant.secret))
    assert response.status_code == 200
    assert response.json()["slug"] == tenant.slug


def test_missing_credentials_is_a_401_problem(tenant: Tenant) -> None:
    response = httpx.get(f"{tenant.backend.url}/v1/users")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "missing_credentials"
    assert body["status"] == 401


def test_wrong_secret_and_unknown_key_answer_alike(tenant: Tenant) -> None:
    wrong = httpx.get(
        f"{tenant.backend.url}/v1/users",
        headers={"X-Api-Key": tenant.key_id, "X-Secret-Key": "sk_wrong"},
    )
    unknown = httpx.get(
        f"{tenant.backend.url}/v1/users",
        headers={"X-Api-Key": "key_nope", "X-Secret-Key": tenant.secret},
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["code"] == unknown.json()["code"] == "invalid_credentials"
    assert wrong.json()["detail"] == unknown.json()["detail"]


def test_client_key_cannot_use_server_routes(tenant: Tenant) -> None:
    with tenant.client() as client:
        response = client.get("/v1/users")
    assert response.status_code == 401


def test_server_key_cannot_use_client_routes(tenant: Tenant) -> None:
    response = tenant.http.patch("/v1/client/users/u1", json={"language": "ko"})
    assert response.status_code == 401
    assert response.json()["code"] == "missing_credentials"


def test_created_key_works_and_revoked_key_stops(tenant: Tenant) -> None:
    created = tenant.http.post("/v1/api-keys", json={"name": "ci"})
    assert created.status_code == 201
    pair = created.json()
    assert pair["secret"].startswith("sk_")
    assert pair["secret_hint"] == pair["secret"][-4:]
    headers = {"X-Api-Key": pair["id"], "X-Secret-Key": pair["secret"]}
    assert httpx.get(f"{tenant.backend.url}/v1/workspace", headers=headers).status_code == 200
    listed = tenant.http.get("/v1/api-keys").json()
    assert {k["id"] for k in listed} >= {pair["id"], tenant.key_id}
    assert all("secret" not in k for k in listed)
    revoked = tenant.http.delete(f"/v1/api-keys/{pair['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    after = httpx.get(f"{tenant.backend.url}/v1/workspace", headers=headers)
    assert after.status_code == 401


def test_member_role_cannot_administer(tenant: Tenant) -> None:
    member = tenant.http.post("/v1/members", json={"email": "Dev@Example.com", "role": "member"})
    assert member.status_code == 201
    assert member.json()["email"] == "dev@example.com"
    key = tenant.http.post("/v1/api-keys", json={"name": "dev", "member_id": member.json()["id"]})
    assert key.status_code == 201
    headers = {"X-Api-Key": key.json()["id"], "X-Secret-Key": key.json()["secret"]}
    as_member = httpx.Client(base_url=tenant.backend.url, headers=headers)
    denied = as_member.post("/v1/members", json={"email": "x@example.com"})
    assert denied.status_code == 403
    assert denied.json()["code"] == "role_required"
    # A member still works with users.
    assert as_member.put("/v1/users/m1", json={"first_name": "M"}).status_code == 201
    # Promoting the member promotes its existing keys at once.
    tenant.http.patch(f"/v1/members/{member.json()['id']}", json={"role": "manager"})
    assert as_member.post("/v1/members", json={"email": "y@example.com"}).status_code == 201
    as_member.close()


def test_last_owner_cannot_be_demoted(tenant: Tenant) -> None:
    members = tenant.http.get("/v1/members").json()
    owner = next(m for m in members if m["role"] == "owner")
    response = tenant.http.patch(f"/v1/members/{owner['id']}", json={"role": "member"})
    assert response.status_code == 409
    assert response.json()["code"] == "last_owner"


def test_other_workspace_objects_answer_404_like_missing_ones(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    assert (
        other_tenant.http.put("/v1/users/secret-user", json={"first_name": "S"}).status_code == 201
    )
    foreign = tenant.http.get("/v1/users/secret-user")
    missing = tenant.http.get("/v1/users/never-existed")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "user_not_found"
    lst = other_tenant.http.post("/v1/lists", json={"name": "Theirs"}).json()
    assert tenant.http.get(f"/v1/lists/{lst['id']}").status_code == 404
    assert tenant.http.delete(f"/v1/lists/{lst['id']}").status_code == 404
    key = other_tenant.http.get("/v1/api-keys").json()[0]
    assert tenant.http.delete(f"/v1/api-keys/{key['id']}").status_code == 404


def test_identity_verification_for_client_calls(tenant: Tenant) -> None:
    import hashlib
    import hmac

    with tenant.client() as client:
        assert client.patch("/v1/client/users/app-user", json={"language": "ko"}).status_code == 200
        tenant.http.patch("/v1/workspace", json={"identity_verification": True})
        refused = client.patch("/v1/client/users/app-user", json={"language": "ja"})
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_identity_token"
        secret = tenant.http.get("/v1/workspace/identity-secret").json()["identity_secret"]
        token = hmac.new(secret.encode(), b"app-user", hashlib.sha256).hexdigest()
        ok = client.patch(
            "/v1/client/users/app-user",
            json={"language": "ja"},
            headers={"X-Identity-Token": token},
        )
        assert ok.status_code == 200
        assert ok.json()["language"] == "ja"
