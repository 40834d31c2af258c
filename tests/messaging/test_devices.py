"""Device tokens: login registers, logout deletes, a token follows whoever logs in on the
device; identity verification; the server-side equivalents."""

from __future__ import annotations

import uuid

from tests.conftest import Tenant
from tests.messaging.support import register, token_for
from tests.users.support import problem

from spoke.core.crypto import hmac_sha256_hex
from spoke.core.db import session_scope
from spoke.workspaces import service as workspaces


def _token() -> str:
    return token_for(uuid.uuid4().hex[:12])


def _tokens_of(tenant: Tenant, external_id: str) -> list[tuple[str, str]]:
    response = tenant.http.get(f"/v1/users/{external_id}/devices")
    assert response.status_code == 200, response.text
    return [(d["token"], d["status"]) for d in response.json()]


def test_client_login_registers_and_creates_the_user(tenant: Tenant) -> None:
    token = _token()
    with tenant.client() as app:
        first = app.post("/v1/client/devices", json={"external_id": "ann", "token": token})
        again = app.post(
            "/v1/client/devices", json={"external_id": "ann", "token": token, "platform": "ios"}
        )
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "subscribed"
    assert again.status_code == 200
    assert again.json()["platform"] == "ios"
    assert tenant.http.get("/v1/users/ann").status_code == 200
    assert _tokens_of(tenant, "ann") == [(token, "subscribed")]


def test_a_token_moves_to_whoever_logs_in_next(tenant: Tenant) -> None:
    token = _token()
    with tenant.client() as app:
        app.post("/v1/client/devices", json={"external_id": "ann", "token": token})
        moved = app.post("/v1/client/devices", json={"external_id": "bob", "token": token})
    assert moved.status_code == 200
    assert moved.json()["external_id"] == "bob"
    assert _tokens_of(tenant, "ann") == []
    assert _tokens_of(tenant, "bob") == [(token, "subscribed")]


def test_logout_deletes_the_token(tenant: Tenant) -> None:
    token = _token()
    with tenant.client() as app:
        app.post("/v1/client/devices", json={"external_id": "ann", "token": token})
        assert app.delete(f"/v1/client/devices/{token}").status_code == 204
        problem(app.delete(f"/v1/client/devices/{token}"), 404, "device_not_found")
    assert _tokens_of(tenant, "ann") == []


def test_logout_with_a_user_only_removes_that_users_token(tenant: Tenant) -> None:
    token = _token()
    register(tenant, "ann", token)
    with tenant.client() as app:
        wrong = app.delete(f"/v1/client/devices/{token}", params={"external_id": "bob"})
        problem(wrong, 404, "device_not_found")
        right = app.delete(f"/v1/client/devices/{token}", params={"external_id": "ann"})
    assert right.status_code == 204


def test_identity_verification_guards_login_and_logout(tenant: Tenant) -> None:
    runtime = tenant.backend.runtime
    with session_scope(runtime.sessions) as session:
        workspace = workspaces.get_workspace(session, tenant.workspace_id)
        workspace.identity_verification = True
        secret = workspaces.identity_secret(runtime.encryptor, workspace)
    token = _token()
    proof = hmac_sha256_hex(secret, "ann")
    with tenant.client() as app:
        body = {"external_id": "ann", "token": token}
        problem(app.post("/v1/client/devices", json=body), 401, "invalid_identity_token")
        forged = app.post(
            "/v1/client/devices",
            json=body,
            headers={"X-Identity-Token": hmac_sha256_hex(secret, "bob")},
        )
        problem(forged, 401, "invalid_identity_token")
        ok = app.post("/v1/client/devices", json=body, headers={"X-Identity-Token": proof})
        assert ok.status_code == 201
        problem(app.delete(f"/v1/client/devices/{token}"), 401, "invalid_identity_token")
        out = app.delete(
            f"/v1/client/devices/{token}",
            params={"external_id": "ann"},
            headers={"X-Identity-Token": proof},
        )
        assert out.status_code == 204


def test_server_routes_register_list_and_delete(tenant: Tenant) -> None:
    token = _token()
    created = tenant.http.post("/v1/users/srv/devices", json={"token": token, "platform": "web"})
    assert created.status_code == 201
    assert created.json()["platform"] == "web"
    assert _tokens_of(tenant, "srv") == [(token, "subscribed")]
    assert tenant.http.delete(f"/v1/devices/{token}").status_code == 204
    assert _tokens_of(tenant, "srv") == []
    problem(tenant.http.get("/v1/users/nobody/devices"), 404, "user_not_found")


def test_tokens_are_scoped_to_the_workspace(tenant: Tenant, other_tenant: Tenant) -> None:
    token = _token()
    register(tenant, "ann", token)
    register(other_tenant, "ann", token)  # the same device in two products
    assert _tokens_of(tenant, "ann") == [(token, "subscribed")]
    problem(other_tenant.http.delete(f"/v1/devices/{_token()}"), 404, "device_not_found")
    assert other_tenant.http.delete(f"/v1/devices/{token}").status_code == 204
    assert _tokens_of(tenant, "ann") == [(token, "subscribed")]


def test_bad_input_is_a_problem_document(tenant: Tenant) -> None:
    with tenant.client() as app:
        short = app.post("/v1/client/devices", json={"external_id": "a", "token": "x"})
        problem(short, 422, "invalid_input")
        extra = app.post(
            "/v1/client/devices",
            json={"external_id": "a", "token": _token(), "platform": "symbian"},
        )
        problem(extra, 422, "invalid_input")
    problem(tenant.http.post("/v1/client/devices", json={}), 401, "missing_credentials")
    deleted = tenant.http.put("/v1/users/gone", json={})
    assert deleted.status_code == 201
    assert tenant.http.delete("/v1/users/gone").status_code == 204
    problem(
        tenant.http.post("/v1/users/gone/devices", json={"token": _token()}), 409, "user_deleted"
    )
