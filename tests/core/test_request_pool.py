"""Many more concurrent requests than database connections, on PostgreSQL over real HTTP.

A request holds its connection from its first query until its commit, and its endpoint body
and its commit each need a worker thread. When every worker thread was taken by a request
waiting for a connection, the connection holders could never get a thread to commit: the
server stalled until the pool timeout failed the waiters. Here the pool is tiny and its
timeout short, so that stall shows as failed requests quickly; every request must succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import Backend, Tenant, create_tenant, make_settings
from tests.support.server import LiveServer
from tests.support.services import create_pg_database, drop_pg_database

from spoke.app import create_app
from spoke.core import migrate
from spoke.runtime import build_runtime

POOL_SIZE = 2  # 4 connections with the overflow, against 40 worker threads
CALLERS = 300


@pytest.fixture
def small_pool(tmp_path: Path) -> Iterator[Tenant]:
    url = create_pg_database()
    try:
        migrate.upgrade(url)
        settings = make_settings(
            url, tmp_path, database={"pool_size": POOL_SIZE, "pool_timeout": 3}
        )
        runtime = build_runtime(settings, queue_name="test-small-pool")
        server = LiveServer(create_app(runtime)).start()
        tenant = create_tenant(Backend("postgresql", url, runtime, server))
        try:
            yield tenant
        finally:
            tenant.http.close()
            server.stop()
            runtime.close()
    finally:
        drop_pg_database(url)


async def _burst(tenant: Tenant) -> list[int]:
    limits = httpx.Limits(max_connections=CALLERS, max_keepalive_connections=CALLERS)
    async with httpx.AsyncClient(
        base_url=tenant.backend.url,
        headers=dict(tenant.http.headers),
        limits=limits,
        timeout=30,
    ) as http:

        async def write_then_read(n: int) -> int:
            put = await http.put(f"/v1/users/burst-{n}", json={"email": f"b{n}@example.com"})
            if put.status_code >= 300:
                return put.status_code
            return (await http.get(f"/v1/users/burst-{n}")).status_code

        return await asyncio.gather(*(write_then_read(n) for n in range(CALLERS)))


def test_requests_beyond_the_pool_wait_their_turn_instead_of_starving(
    small_pool: Tenant,
) -> None:
    statuses = asyncio.run(_burst(small_pool))
    failed = [status for status in statuses if not 200 <= status < 300]
    assert failed == []
    listed = small_pool.http.get("/v1/users", params={"limit": 500})
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["data"]) == CALLERS
