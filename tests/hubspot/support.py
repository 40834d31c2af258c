"""Helpers shared by the HubSpot client tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class VirtualClock:
    """Stands in for `anyio.sleep` and a clock: waits are recorded and advance virtual time.

    Pass it as the client's or limiter's `sleep`, and `clock.time` as an in-memory bucket
    store's clock, so retry and pacing waits are observed without being waited out.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.calls: list[float] = []

    def time(self) -> float:
        return self.now

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds


@dataclass(frozen=True)
class SandboxPortal:
    """A portal created in the sandbox through its admin API."""

    base_url: str
    id: int
    token: str
    client_id: str
    client_secret: str
    app_id: int
    developer_api_key: str

    def admin(self, path: str = "") -> str:
        return f"{self.base_url}/_sandbox/portals/{self.id}{path}"

    def admin_call(self, method: str, path: str, body: Any = None) -> Any:
        """Call the portal's admin API synchronously and return the decoded JSON."""
        answer = httpx.request(method, self.admin(path), json=body, timeout=10)
        answer.raise_for_status()
        return answer.json() if answer.content else None
