"""Fixtures for the HubSpot sandbox tests: one uvicorn-served sandbox per session on a free
loopback port, and a fresh portal per test (portals are fully isolated from each other)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from tests.sandbox.harness import PortalHandle, Receiver, Sandbox, run_receiver

from hubspot import HubSpot
from spoke.sandbox.hubspot import SandboxConfig, SandboxStore, create_sandbox_app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    store = SandboxStore(SandboxConfig(public_base_url=base_url))
    app = create_sandbox_app(store)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, name="hubspot-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("sandbox server did not start")
        time.sleep(0.01)
    yield Sandbox(store, base_url)
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def portal(sandbox: Sandbox) -> PortalHandle:
    """A fresh portal with rate limits off (tests that need limits turn them on)."""
    p = sandbox.store.create_portal()
    p.settings.rate_limits.enabled = False
    app = sandbox.store.apps[p.oauth_app_id]
    return PortalHandle(sandbox, p, p.private_token, app.client_id, app.client_secret)


@pytest.fixture
def api(portal: PortalHandle) -> HubSpot:
    """The official SDK, pointed at the sandbox with the portal's private-app token."""
    return HubSpot(access_token=portal.token, host=portal.sandbox.base_url)


@pytest.fixture
def http(portal: PortalHandle) -> Iterator[httpx.Client]:
    """An httpx client for the sandbox, authenticated as the portal's private app."""
    with httpx.Client(
        base_url=portal.sandbox.base_url,
        headers={"Authorization": f"Bearer {portal.token}"},
        timeout=10,
    ) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP server that records webhook deliveries (see `harness.Receiver`)."""
    with run_receiver() as state:
        yield state
