"""Fixtures for the events export: the contact sync tests' HubSpot sandbox and Spoke server
(imported, not copied), and a workspace connected to a fresh portal with a private app (its
token carries the custom event scopes).

Export runs are processed in the test's thread (`Export.run()`), as `events.export_run` would
process them, with the settle window off so just-ingested events are exported at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.conftest import Tenant, create_tenant
from tests.sync.conftest import SandboxServer, SpokeApp, hubspot_sandbox, new_portal, spoke_app

from spoke.config import Settings
from spoke.core.db import session_scope
from spoke.events import export_run
from spoke.events.export_models import EventExportRun
from spoke.runtime import Runtime

__all__ = ["Export", "export", "hubspot_sandbox", "spoke_app"]


def fast_settings(settings: Settings, **tuning: Any) -> Settings:
    values = {
        "settle_seconds": 0.0,
        "retry_base_seconds": 0.01,
        "chunk": 200,
        "concurrency": 4,
        **tuning,
    }
    return settings.model_copy(
        update={"events_export": settings.events_export.model_copy(update=values)}
    )


@dataclass
class Export:
    """A workspace connected (private app) to its own sandbox portal."""

    tenant: Tenant
    sandbox: SandboxServer
    portal_id: int
    portal_token: str
    runtime: Runtime

    @property
    def http(self) -> httpx.Client:
        return self.tenant.http

    # -- HubSpot, as another integration of the portal ------------------------------------

    def hubspot(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        answer = httpx.request(
            method,
            f"{self.sandbox.url}{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {self.portal_token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def create_contact(self, email: str) -> str:
        return str(
            self.hubspot("POST", "/crm/v3/objects/contacts", {"properties": {"email": email}})["id"]
        )

    def contact_id(self, email: str) -> str | None:
        answer = httpx.get(
            f"{self.sandbox.url}/crm/v3/objects/contacts/{email}",
            params={"idProperty": "email"},
            headers={"Authorization": f"Bearer {self.portal_token}"},
            timeout=30,
        )
        return str(answer.json()["id"]) if answer.status_code == 200 else None

    def timeline(self, contact_id: str) -> list[dict[str, Any]]:
        items = self.sandbox.admin(
            "GET", f"/portals/{self.portal_id}/contacts/{contact_id}/timeline"
        )
        return [i for i in items["results"] if i["type"] == "CUSTOM_EVENT"]

    def completions(self) -> dict[str, int]:
        """The sandbox's own count of completions received, and of repeated uuids."""
        counters = self.sandbox.admin("GET", f"/portals/{self.portal_id}/counters")
        return dict(counters["custom_events"])

    def requests(self, endpoint: str) -> int:
        counters = self.sandbox.admin("GET", f"/portals/{self.portal_id}/counters")
        return int(counters["requests_by_endpoint"].get(endpoint, 0))

    def definitions(self) -> list[dict[str, Any]]:
        found = self.hubspot("GET", "/events/v3/event-definitions", includeProperties="true")
        return list(found["results"])

    def faults(self, **faults: Any) -> None:
        self.sandbox.admin("PUT", f"/portals/{self.portal_id}/faults", faults)

    # -- Spoke ----------------------------------------------------------------------------

    def ingest(self, *events: dict[str, Any]) -> None:
        answer = self.http.post("/v1/events", json={"events": list(events)})
        assert answer.status_code == 200, answer.text
        assert answer.json()["failed"] == 0, answer.text

    def core(self, event_type: str, name: str) -> None:
        answer = self.http.patch(f"/v1/events/known/{event_type}/{name}", json={"core": True})
        assert answer.status_code == 200, answer.text

    def configure(self, **body: Any) -> dict[str, Any]:
        answer = self.http.put("/v1/events/hubspot/settings", json={"enabled": True, **body})
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def status(self) -> dict[str, Any]:
        answer = self.http.get("/v1/events/hubspot/status")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def active_run(self) -> str | None:
        with session_scope(self.runtime.sessions) as session:
            return session.scalar(
                sa.select(EventExportRun.id).where(
                    EventExportRun.workspace_id == self.tenant.workspace_id,
                    EventExportRun.status.in_(("queued", "running")),
                )
            )

    def run(self, *, recheck_minutes: float = 15.0, **tuning: Any) -> EventExportRun:
        """Process the queued run (starting one with `POST /runs` if none is queued)."""
        run_id = self.active_run()
        if run_id is None:
            started = self.http.post("/v1/events/hubspot/runs")
            assert started.status_code == 202, started.text
            run_id = started.json()["id"]
        settings = fast_settings(
            self.runtime.settings, unmatched_recheck_minutes=recheck_minutes, **tuning
        )
        assert export_run.process(self.runtime.sessions, settings, self.runtime.encryptor, run_id)
        with session_scope(self.runtime.sessions) as session:
            run = session.get(EventExportRun, run_id)
            assert run is not None
            return run


def connect(tenant: Tenant, portal: dict[str, Any]) -> None:
    answer = tenant.http.put(
        "/v1/hubspot/connection",
        json={"private_app_token": portal["private_app_token"], "portal_id": portal["portal_id"]},
    )
    assert answer.status_code == 200, answer.text


@pytest.fixture
def export(spoke_app: SpokeApp, hubspot_sandbox: SandboxServer) -> Iterator[Export]:
    tenant = create_tenant(spoke_app.backend)
    portal = new_portal(hubspot_sandbox)
    connect(tenant, portal)
    yield Export(
        tenant,
        hubspot_sandbox,
        portal["portal_id"],
        portal["private_app_token"],
        spoke_app.backend.runtime,
    )
    tenant.http.close()


def days_ago(days: float) -> str:
    from spoke.core.clock import utcnow

    return (utcnow() - timedelta(days=days)).isoformat()
