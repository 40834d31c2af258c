"""Handles the sandbox fixtures hand to tests."""

from __future__ import annotations

from dataclasses import dataclass

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
