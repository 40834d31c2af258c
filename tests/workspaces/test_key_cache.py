"""Checked API keys are trusted for `api.key_cache_seconds` without a query: a revocation
or role change made through this process applies at once, one made elsewhere (straight in
the database here, as another process would) within that many seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.conftest import Backend, Tenant, make_settings
from tests.support.server import LiveServer

from spoke.app import create_app
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.runtime import build_runtime
from spoke.workspaces.key_cache import KeyCache
from spoke.workspaces.models import ApiKey
from spoke.workspaces.service import Caller

MAX_AGE = 0.5


@pytest.fixture
def short_cache_url(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """A second server on the backend's database that trusts a key for `MAX_AGE` s."""
    settings = make_settings(backend.database_url, tmp_path, api={"key_cache_seconds": MAX_AGE})
    runtime = build_runtime(settings)
    server = LiveServer(create_app(runtime, check_migrations=False)).start()
    try:
        yield server.url
    finally:
        server.stop()
        runtime.close()


def test_a_key_revoked_elsewhere_stops_within_the_cache_age(
    tenant: Tenant, short_cache_url: str
) -> None:
    pair = tenant.http.post("/v1/api-keys", json={"name": "ci"}).json()
    headers = {"X-Api-Key": pair["id"], "X-Secret-Key": pair["secret"]}
    with httpx.Client(base_url=short_cache_url, headers=headers) as http:
        assert http.get("/v1/workspace").status_code == 200  # checked, and remembered
        with session_scope(tenant.backend.runtime.sessions) as session:
            session.execute(
                sa.update(ApiKey).where(ApiKey.id == pair["id"]).values(revoked_at=utcnow())
            )
        wrong = {"X-Secret-Key": pair["secret"] + "x"}
        assert http.get("/v1/workspace", headers=wrong).status_code == 401  # never cached
        time.sleep(MAX_AGE + 0.2)
        assert http.get("/v1/workspace").status_code == 401


def test_a_key_revoked_through_the_api_stops_at_once(tenant: Tenant) -> None:
    pair = tenant.http.post("/v1/api-keys", json={"name": "ci"}).json()
    headers = {"X-Api-Key": pair["id"], "X-Secret-Key": pair["secret"]}
    with httpx.Client(base_url=tenant.backend.url, headers=headers) as http:
        for _ in range(3):
            assert http.get("/v1/workspace").status_code == 200
        assert tenant.http.delete(f"/v1/api-keys/{pair['id']}").status_code == 200
        assert http.get("/v1/workspace").status_code == 401


def test_a_removed_member_s_key_stops_at_once(tenant: Tenant) -> None:
    member = tenant.http.post("/v1/members", json={"email": "gone@example.com", "role": "manager"})
    key = tenant.http.post("/v1/api-keys", json={"name": "m", "member_id": member.json()["id"]})
    headers = {"X-Api-Key": key.json()["id"], "X-Secret-Key": key.json()["secret"]}
    with httpx.Client(base_url=tenant.backend.url, headers=headers) as http:
        assert http.get("/v1/workspace").status_code == 200
        assert tenant.http.delete(f"/v1/members/{member.json()['id']}").status_code == 204
        assert http.get("/v1/workspace").status_code == 401


def test_the_cache_checks_the_secret_and_the_age() -> None:
    cache = KeyCache()
    caller = Caller(workspace_id="ws_1", member_id="mem_1", role=None, key_id="key_1")
    cache.remember("key_1", "sk_right", caller)
    assert cache.get("key_1", "sk_right", max_age=60) == caller
    assert cache.get("key_1", "sk_wrong", max_age=60) is None
    assert cache.get("key_2", "sk_right", max_age=60) is None
    assert cache.get("key_1", "sk_right", max_age=0) is None  # older than no time at all
    cache.clear()
    assert cache.get("key_1", "sk_right", max_age=60) is None
