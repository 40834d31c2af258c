"""Sandbox settings: global (`SandboxConfig`) and per portal (`PortalSettings`).

Behaviours the contract marks UNCONFIRMED are settings here, not hard-coded branches.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RateLimitSettings:
    """Per-portal API limits (contract §8). Windows are rolling, counted per app."""

    enabled: bool = True
    private_app_burst: int = 100  # 100 (Free/Starter) or 190 (Professional/Enterprise)
    oauth_app_burst: int = 110
    window_ms: int = 10_000  # X-HubSpot-RateLimit-Interval-Milliseconds
    daily_limit: int = 250_000  # private apps only; OAuth apps have no daily header
    search_per_second: int = 5
    # Custom event sends (single and batch) have a limit of their own: 1,250 requests/s.
    event_send_per_second: int = 1250
    # UNCONFIRMED in the contract: the search 429 policyName, and Retry-After on API 429s.
    search_policy_name: str = "SECONDLY"
    retry_after_seconds: int | None = None


@dataclass(slots=True)
class FaultSettings:
    """Fault injection for API routes (not admin or OAuth routes)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0  # share of requests answered with a 5xx
    error_statuses: list[int] = field(default_factory=lambda: [500, 502, 503, 504])
    spurious_429_rate: float = 0.0
    # Share of requests that are processed and then answered with a 500 anyway: the client
    # cannot tell whether its write happened (an "unknown outcome").
    error_after_processing_rate: float = 0.0
    seed: int | None = None
    # Webhook deliveries: duplicate some events, shuffle batches, hold deliveries back.
    webhook_duplicate_rate: float = 0.0
    webhook_reorder: bool = False
    webhook_delay_ms: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.latency_ms or self.jitter_ms or self.error_rate or self.spurious_429_rate)


@dataclass(slots=True)
class PortalSettings:
    search_lag_ms: int = 0  # how long a write takes to reach search results
    access_token_ttl_s: int = 1800
    # UNCONFIRMED in the contract: the body HubSpot sends for an expired OAuth token.
    expired_token_category: str = "EXPIRED_AUTHENTICATION"  # noqa: S105 (a category, not a secret)
    search_result_cap: int = 10_000
    custom_event_monthly_cap: int = 30_000_000
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    faults: FaultSettings = field(default_factory=FaultSettings)


@dataclass(slots=True)
class SandboxConfig:
    """Process-wide settings; `portal_defaults` seeds the settings of each new portal."""

    portal_defaults: PortalSettings = field(default_factory=PortalSettings)
    request_log_size: int = 2_000
    first_portal_id: int = 10_000_001
    public_base_url: str = "http://127.0.0.1:8100"
    # Multiplies webhook retry delays (HubSpot spreads 10 retries over ~24 h); 0.001 for tests.
    webhook_time_scale: float = 1.0


def settings_to_json(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def apply_patch(obj: Any, patch: dict[str, Any], path: str = "") -> None:
    """Update a settings dataclass in place from a JSON patch, checking names and types.

    Raises:
        ValueError: an unknown field, or a value of the wrong type.
    """
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in patch.items():
        if key not in fields:
            raise ValueError(f"unknown setting {path}{key}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{path}{key} must be an object")
            apply_patch(current, value, f"{path}{key}.")
            continue
        setattr(obj, key, _coerce(f"{path}{key}", current, fields[key].type, value))


def _coerce(name: str, current: Any, declared: Any, value: Any) -> Any:
    optional = "None" in str(declared)
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} cannot be null")
    if isinstance(current, bool) or str(declared) == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a boolean")
        return value
    if "float" in str(declared):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number")
        return float(value)
    if "int" in str(declared) and "list" not in str(declared):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer")
        return value
    if "list" in str(declared):
        if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
            raise ValueError(f"{name} must be a list of integers")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def settings_from_json(data: dict[str, Any]) -> PortalSettings:
    settings = PortalSettings()
    apply_patch(settings, data)
    return settings
