"""A local HubSpot: the CRM, properties, associations, lists and OAuth APIs the official SDK uses,
served from memory for many portals at once, with HubSpot's limits, errors and eventual
consistency. See docs/sandbox.md.
"""

from spoke.sandbox.hubspot.app import create_sandbox_app, serve
from spoke.sandbox.hubspot.config import (
    FaultSettings,
    PortalSettings,
    RateLimitSettings,
    SandboxConfig,
)
from spoke.sandbox.hubspot.store import SandboxStore

__all__ = [
    "FaultSettings",
    "PortalSettings",
    "RateLimitSettings",
    "SandboxConfig",
    "SandboxStore",
    "create_sandbox_app",
    "serve",
]
