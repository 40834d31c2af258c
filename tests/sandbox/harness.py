"""Handles the sandbox fixtures hand to tests, and a webhook receiver (a real HTTP server)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from hubspot.webhooks import SettingsChangeRequest, SubscriptionCreateRequest, ThrottlingSettings

from hubspot import HubSpot
from spoke.sandbox.hubspot import SandboxStore
from spoke.sandbox.hubspot.store import Portal


@dataclass
class Sandbox:
    store: SandboxStore
    base_url: str


@dataclass
class PortalHandle:
    sandbox: Sandbox
    portal: Portal
    token: str
    client_id: str
    client_secret: str

    @property
    def id(self) -> int:
        return self.portal.id

    def admin(self, path: str = "") -> str:
        return f"{self.sandbox.base_url}/_sandbox/portals/{self.portal.id}{path}"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = json.loads(self.body)
        return events


@dataclass
class Receiver:
    """What a webhook receiver got. `statuses` are the answers to give, then 200."""

    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [e for r in self.requests if r.headers.get("x-answered") == "200" for e in r.events]

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {len(self.requests)} requests")
            time.sleep(0.02)


@contextmanager
def run_receiver() -> Iterator[Receiver]:
    """A threaded HTTP server on a free loopback port that records every POST."""
    state = Receiver(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.statuses.pop(0) if state.statuses else 200
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["x-answered"] = str(status)
            state.requests.append(Received(headers, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks?source=hubspot"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def subscribe(
    portal: PortalHandle, receiver: Receiver, *types: str, prop: str | None = None, **settings: Any
) -> None:
    """Point the portal's OAuth app at the receiver and subscribe it to `types` (via the SDK)."""
    app = portal.sandbox.store.apps[portal.portal.oauth_app_id]
    dev = HubSpot(api_key=app.developer_api_key, host=portal.sandbox.base_url)
    dev.webhooks.settings_api.configure(
        app_id=app.app_id,
        settings_change_request=SettingsChangeRequest(
            target_url=receiver.url, throttling=ThrottlingSettings(max_concurrent_requests=10)
        ),
    )
    if settings:
        url = f"{portal.sandbox.base_url}/webhooks/v3/{app.app_id}/settings"
        body = {"targetUrl": receiver.url, **settings}
        assert httpx.put(url, params={"hapikey": app.developer_api_key}, json=body).is_success
    for event_type in types:
        created = dev.webhooks.subscriptions_api.create(
            app_id=app.app_id,
            subscription_create_request=SubscriptionCreateRequest(
                event_type=event_type, property_name=prop, active=True
            ),
        )
        assert created.active is True
