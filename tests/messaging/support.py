"""The FCM emulator on a loopback port, and helpers to wire a tenant to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from tests.conftest import Tenant

from spoke.sandbox.fcm import FcmStore


@dataclass
class Fcm:
    url: str
    store: FcmStore
    http: httpx.Client

    def service_account(self, project_id: str = "demo-project") -> dict[str, Any]:
        response = self.http.post("/_fcm/service-accounts", json={"project_id": project_id})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def messages(self, token: str | None = None) -> list[dict[str, Any]]:
        params = {"token": token} if token else {}
        response = self.http.get("/_fcm/messages", params=params)
        assert response.status_code == 200
        return list(response.json()["messages"])

    def set_state(self, token: str, state: str) -> None:
        assert self.http.put(f"/_fcm/tokens/{token}", json={"state": state}).status_code == 200

    def fault(self, status: int, count: int = 1, **extra: Any) -> None:
        response = self.http.post("/_fcm/faults", json={"status": status, "count": count, **extra})
        assert response.status_code == 201, response.text


def connect_fcm(tenant: Tenant, fcm: Fcm, project_id: str = "demo-project") -> dict[str, Any]:
    """Give the tenant a push provider pointing at the emulator."""
    response = tenant.http.put(
        "/v1/messaging/providers/fcm",
        json={"service_account": fcm.service_account(project_id), "base_url": fcm.url},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def token_for(name: str) -> str:
    """A token shaped like an FCM registration token, unique per name."""
    return f"tok-{name}:APA91b" + "x" * 20


def register(tenant: Tenant, external_id: str, token: str, platform: str = "android") -> None:
    response = tenant.http.post(
        f"/v1/users/{external_id}/devices", json={"token": token, "platform": platform}
    )
    assert response.status_code in (200, 201), response.text


def run_fanout(tenant: Tenant, notification_id: str) -> dict[str, Any]:
    tenant.backend.runtime.jobs.run_now("messaging.fan_out", notification_id=notification_id)
    response = tenant.http.get(f"/v1/notifications/{notification_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())
