"""Fixtures for the HubSpot connection and contact sync tests.

One HubSpot sandbox per session on a loopback port (webhook retries compressed). For each
database backend a Spoke server runs whose settings point at the sandbox and at its own
OAuth app (an app registered in a "home" portal of the sandbox); the app's webhooks are
delivered, signed, to that Spoke server's `/hooks/hubspot`. Each test gets a fresh portal
and a fresh workspace, and connects them through the real OAuth dance.

Jobs are not consumed in the background here: `Sync.settle()` runs `sync.run` in the test's
thread until both sides are quiet, so every assertion sees a settled state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from tests.conftest import Backend, Tenant, create_tenant, make_settings
from tests.support.server import LiveServer, free_port

from spoke.app import create_app
from spoke.core.db import session_scope
from spoke.hubspot import HubSpotError
from spoke.runtime import Runtime, build_runtime
from spoke.sandbox.hubspot import SandboxConfig, SandboxStore, create_sandbox_app
from spoke.sync.engine import Engine
from spoke.sync.models import ContactLink, ContactSyncSettings
from spoke.users.models import UserChange
from spoke.workspaces.models import Workspace

SUBSCRIBED_PROPERTIES = ("email", "firstname", "lastname", "phone", "country", "jobtitle")


@dataclass
class SandboxServer:
    url: str
    store: SandboxStore

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        answer = httpx.request(method, f"{self.url}/_sandbox{path}", json=body, timeout=10)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def pending_deliveries(self) -> int:
        return int(self.admin("GET", "/webhooks/deliveries")["pending"])


@pytest.fixture(scope="session")
def hubspot_sandbox() -> Iterator[SandboxServer]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = SandboxStore(SandboxConfig(public_base_url=url, webhook_time_scale=0.0005))
    server = uvicorn.Server(
        uvicorn.Config(
            create_sandbox_app(store), host="127.0.0.1", port=port, log_level="warning", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, name="sync-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the HubSpot sandbox did not start")
        time.sleep(0.01)
    yield SandboxServer(url, store)
    server.should_exit = True
    thread.join(10)


@dataclass
class SpokeApp:
    """Spoke's OAuth app in the sandbox, and the Spoke server configured with it."""

    backend: Backend
    app_id: int
    client_id: str
    developer_api_key: str


@pytest.fixture(scope="session")
def spoke_app(
    backend: Backend, hubspot_sandbox: SandboxServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SpokeApp]:
    port = free_port()
    spoke_url = f"http://127.0.0.1:{port}"
    callback = f"{spoke_url}/oauth/hubspot/callback"
    home = hubspot_sandbox.admin(
        "POST",
        "/portals",
        {
            "name": f"Spoke app home ({backend.name})",
            "redirect_uris": [callback],
            "settings": {"rate_limits": {"enabled": False}},
        },
    )
    app = home["oauth_app"]
    settings = make_settings(
        backend.database_url,
        tmp_path_factory.mktemp(f"sync-{backend.name}"),
        http={"public_url": spoke_url},
        hubspot={
            "base_url": hubspot_sandbox.url,
            "app_url": hubspot_sandbox.url,
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "app_id": app["app_id"],
            "redirect_url": callback,
            "rate_limited_wait_seconds": 0.2,
        },
    )
    runtime: Runtime = build_runtime(settings, queue_name=f"sync-{backend.name}")
    server = LiveServer(create_app(runtime), port=port).start()
    hooks = f"{hubspot_sandbox.url}/webhooks/v3/{app['app_id']}"
    key = {"hapikey": app["developer_api_key"]}
    httpx.put(
        f"{hooks}/settings",
        params=key,
        json={
            "targetUrl": f"{spoke_url}/hooks/hubspot",
            "throttling": {"maxConcurrentRequests": 10},
        },
        timeout=10,
    ).raise_for_status()
    subscriptions: list[dict[str, Any]] = [
        {"eventType": t, "active": True}
        for t in ("contact.creation", "contact.deletion", "contact.merge", "contact.restore")
    ]
    subscriptions += [
        {"eventType": "contact.propertyChange", "propertyName": p, "active": True}
        for p in SUBSCRIBED_PROPERTIES
    ]
    for body in subscriptions:
        httpx.post(f"{hooks}/subscriptions", params=key, json=body, timeout=10).raise_for_status()
    yield SpokeApp(
        Backend(backend.name, backend.database_url, runtime, server),
        app["app_id"],
        app["client_id"],
        app["developer_api_key"],
    )
    server.stop()
    runtime.close()


@dataclass
class Sync:
    """A workspace connected by OAuth to its own fresh sandbox portal."""

    tenant: Tenant
    sandbox: SandboxServer
    portal_id: int
    portal_token: str  # the portal's own private app: "someone else" editing in HubSpot
    runtime: Runtime
    failed_runs: int = 0

    @property
    def http(self) -> httpx.Client:
        return self.tenant.http

    def hubspot(self, method: str, path: str, body: Any = None, *, retries: int = 0) -> Any:
        """Call HubSpot as another integration of the portal (not as Spoke); with `retries`,
        injected 5xx and 429 answers are retried (use only for idempotent calls)."""
        for _ in range(retries):
            answer = httpx.request(
                method,
                f"{self.sandbox.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.portal_token}"},
                timeout=10,
            )
            if answer.status_code != 429 and answer.status_code < 500:
                break
        else:
            answer = httpx.request(
                method,
                f"{self.sandbox.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.portal_token}"},
                timeout=10,
            )
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def contact_by_email(self, email: str, *props: str) -> dict[str, Any]:
        found = self.hubspot(
            "GET",
            f"/crm/v3/objects/contacts/{email}?idProperty=email"
            + (f"&properties={','.join(props)}" if props else ""),
        )
        assert isinstance(found, dict)
        return found

    def writes(self) -> int:
        """Write calls the portal has served so far (anything but reads and searches)."""
        counters = self.sandbox.admin("GET", f"/portals/{self.portal_id}/counters")
        return sum(
            n
            for key, n in counters["requests_by_endpoint"].items()
            if not key.startswith("GET") and "/batch/read" not in key and "/search" not in key
        )

    def skip_changes_so_far(self) -> None:
        """Move real time's cursor past every user change so far: those users existed
        before the sync was switched on, and only a manual sync carries them."""
        with session_scope(self.runtime.sessions) as session:
            row = session.get(ContactSyncSettings, self.tenant.workspace_id)
            ws = session.get(Workspace, self.tenant.workspace_id)
            assert row is not None
            assert ws is not None
            row.cursor_seq = ws.change_seq

    def run_once(self) -> None:
        """One `sync.run`; a HubSpot failure ends it as it ends the job (which the queue
        retries), with the unapplied work left in place."""
        settings = self.runtime.settings
        try:
            Engine(
                self.runtime.sessions, settings, self.runtime.encryptor, self.tenant.workspace_id
            ).run()
        except HubSpotError:
            self.failed_runs += 1

    def settle(self, quiet_rounds: int = 3, timeout: float = 20.0) -> None:
        """Run the engine until no webhook is in flight and nothing is left to do."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < quiet_rounds:
            if time.monotonic() > deadline:
                raise AssertionError("the sync did not settle")
            self.run_once()
            time.sleep(0.08)
            engine = Engine(
                self.runtime.sessions,
                self.runtime.settings,
                self.runtime.encryptor,
                self.tenant.workspace_id,
            )
            busy = self.sandbox.pending_deliveries() > 0 or engine.has_work()
            quiet = 0 if busy else quiet + 1

    def feed(self, external_id: str) -> list[tuple[str, dict[str, Any]]]:
        with session_scope(self.runtime.sessions) as session:
            rows = session.execute(
                sa.select(UserChange.origin, UserChange.changes)
                .where(
                    UserChange.workspace_id == self.tenant.workspace_id,
                    UserChange.external_id == external_id,
                )
                .order_by(UserChange.seq)
            ).all()
        return [(origin, dict(changes)) for origin, changes in rows]

    def link_of(self, external_id: str) -> ContactLink | None:
        from spoke.users.models import User

        with session_scope(self.runtime.sessions) as session:
            return session.scalar(
                sa.select(ContactLink)
                .join(User, User.id == ContactLink.user_id)
                .where(
                    ContactLink.workspace_id == self.tenant.workspace_id,
                    User.external_id == external_id,
                )
            )

    def sync_settings(self) -> ContactSyncSettings:
        with session_scope(self.runtime.sessions) as session:
            row = session.get(ContactSyncSettings, self.tenant.workspace_id)
            assert row is not None
            return row


def new_portal(sandbox: SandboxServer, **body: Any) -> dict[str, Any]:
    body.setdefault("settings", {"rate_limits": {"enabled": False}})
    created: dict[str, Any] = sandbox.admin("POST", "/portals", body)
    return created


def connect_oauth(tenant: Tenant, portal_id: int) -> httpx.Response:
    """The admin's browser: start, consent in the sandbox, come back to Spoke's callback."""
    started = tenant.http.post("/v1/hubspot/connection/oauth")
    assert started.status_code == 200, started.text
    url = started.json()["authorize_url"] + f"&portal_id={portal_id}"
    consent = httpx.get(url, timeout=10)
    assert consent.status_code == 302, consent.text
    return httpx.get(consent.headers["location"], timeout=30)


@pytest.fixture
def sync(spoke_app: SpokeApp, hubspot_sandbox: SandboxServer) -> Iterator[Sync]:
    tenant = create_tenant(spoke_app.backend)
    portal = new_portal(hubspot_sandbox)
    answer = connect_oauth(tenant, portal["portal_id"])
    assert answer.status_code == 200, answer.text
    yield Sync(
        tenant,
        hubspot_sandbox,
        portal["portal_id"],
        portal["private_app_token"],
        spoke_app.backend.runtime,
    )
    tenant.http.close()
