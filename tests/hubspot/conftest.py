"""Fixtures for the HubSpot client tests.

The client is tested against the HubSpot sandbox served by uvicorn on a free loopback port
(real HTTP, one server per session); each test gets a fresh portal through the sandbox's admin
API, so tests never see each other's records.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from tests.hubspot.support import SandboxPortal, VirtualClock

from spoke.hubspot import HubSpotClient, RetryPolicy
from spoke.sandbox.hubspot import SandboxConfig, SandboxStore, create_sandbox_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sleeps() -> VirtualClock:
    return VirtualClock()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """Base URL of a HubSpot sandbox running in a background thread for the whole session."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_sandbox_app(SandboxStore(SandboxConfig(public_base_url=url)))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, name="hubspot-client-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the HubSpot sandbox did not start")
        time.sleep(0.01)
    yield url
    server.should_exit = True
    thread.join(10)


def create_portal(sandbox_url: str, **body: Any) -> SandboxPortal:
    """Create a portal through the admin API (rate limits off unless `settings` says)."""
    body.setdefault("settings", {"rate_limits": {"enabled": False}})
    answer = httpx.post(f"{sandbox_url}/_sandbox/portals", json=body, timeout=10)
    answer.raise_for_status()
    data = answer.json()
    app = data["oauth_app"]
    return SandboxPortal(
        base_url=sandbox_url,
        id=data["portal_id"],
        token=data["private_app_token"],
        client_id=app["client_id"],
        client_secret=app["client_secret"],
        app_id=app["app_id"],
        developer_api_key=app["developer_api_key"],
    )


@pytest.fixture
def portal(sandbox_url: str) -> SandboxPortal:
    return create_portal(sandbox_url)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient, portal: SandboxPortal) -> HubSpotClient:
    """Spoke's client for the portal's private app; retries never wait for real."""
    return HubSpotClient(
        http,
        auth=portal.token,
        base_url=portal.base_url,
        retry=RetryPolicy(backoff_base=0.01, backoff_max=0.05),
    )
