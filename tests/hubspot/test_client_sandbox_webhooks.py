"""Webhook deliveries from the sandbox to a real receiving HTTP server, checked with Spoke's
signature helpers and parsed with its models."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.hubspot.support import SandboxPortal

from spoke.hubspot import HubSpotClient, parse_webhook_events, verify_request, verify_v1

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@dataclass
class Received:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    target = Receiver(url=f"http://127.0.0.1:{port}/hooks/hubspot")

    async def hook(request: Request) -> Response:
        target.requests.append(
            Received(request.method, str(request.url), dict(request.headers), await request.body())
        )
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hooks/hubspot", hook, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none")
    )
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield target
    server.should_exit = True
    thread.join(10)


def subscribe(portal: SandboxPortal, target_url: str, signature_version: str) -> None:
    base = f"{portal.base_url}/webhooks/v3/{portal.app_id}"
    key = {"hapikey": portal.developer_api_key}
    httpx.put(
        f"{base}/settings",
        params=key,
        json={"targetUrl": target_url, "signatureVersion": signature_version},
        timeout=10,
    ).raise_for_status()
    httpx.post(
        f"{base}/subscriptions",
        params=key,
        json={"eventType": "contact.creation", "active": True},
        timeout=10,
    ).raise_for_status()


@pytest.mark.parametrize("legacy_version", ["v1", "v2"])
async def test_deliveries_verify_and_parse(
    client: HubSpotClient, portal: SandboxPortal, receiver: Receiver, legacy_version: str
) -> None:
    subscribe(portal, receiver.url, legacy_version)
    created = await client.contacts.batch_upsert_by_email(
        [(f"hook{i}@example.com", {}) for i in range(3)]
    )
    expected = {int(r.id) for r in created.results}

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        deliveries = receiver.wait_for(1)
        events = [e for d in deliveries for e in parse_webhook_events(d.body)]
        if {e.object_id for e in events} >= expected:
            break
        time.sleep(0.05)
    for delivery in deliveries:
        assert delivery.method == "POST"
        # Spoke checks v3 first; the legacy header is valid on its own too.
        version = verify_request(
            portal.client_secret, "POST", receiver.url, delivery.body, delivery.headers
        )
        assert version == "v3"
        legacy = {k: v for k, v in delivery.headers.items() if "signature-v3" not in k}
        assert (
            verify_request(portal.client_secret, "POST", receiver.url, delivery.body, legacy)
            == legacy_version
        )
    assert {e.object_id for e in events} == expected
    assert {e.subscription_type for e in events} == {"contact.creation"}
    assert all(e.portal_id == portal.id for e in events)


async def test_tampered_delivery_is_refused(
    client: HubSpotClient, portal: SandboxPortal, receiver: Receiver
) -> None:
    from spoke.hubspot import InvalidSignature

    subscribe(portal, receiver.url, "v1")
    await client.contacts.create({"email": "tamper@example.com"})
    (delivery, *_) = receiver.wait_for(1)
    with pytest.raises(InvalidSignature):
        verify_request("wrong-secret", "POST", receiver.url, delivery.body, delivery.headers)
    with pytest.raises(InvalidSignature):
        verify_v1(
            portal.client_secret,
            delivery.body.replace(b"contact.creation", b"contact.deletion"),
            delivery.headers["x-hubspot-signature"],
        )
