"""Rate limits (contract §8): a rolling window per app, a daily count per portal, and search's
own per-second window. Rejected requests do not consume budget, so a tight loop gets exactly the
configured number of successes per window."""

from __future__ import annotations

import time
import uuid
from collections import deque

from spoke.sandbox.hubspot.errors import SandboxError, correlation_id
from spoke.sandbox.hubspot.store import Portal, Token

_DAY_MS = 86_400_000


def rate_limited(
    policy: str, message: str, headers: dict[str, str], retry_after: int | None
) -> SandboxError:
    if retry_after is not None:
        headers = {**headers, "Retry-After": str(retry_after)}
    return SandboxError(
        429,
        message,
        "RATE_LIMITS",
        headers=headers,
        body={
            "status": "error",
            "message": message,
            "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(),
            "policyName": policy,
            "requestId": str(uuid.uuid4()),
        },
    )


def check_api(portal: Portal, token: Token, now_ms: int) -> dict[str, str]:
    """Count one request against the ten-secondly window (and the daily limit for private apps).

    Returns:
        The `X-HubSpot-RateLimit-*` headers for the response.

    Raises:
        SandboxError: 429 with `policyName` TEN_SECONDLY_ROLLING or DAILY.
    """
    cfg = portal.settings.rate_limits
    private = token.kind == "private"
    burst = cfg.private_app_burst if private else cfg.oauth_app_burst
    window_key = f"{token.kind}:{token.app_id}"
    window = portal.windows.get(window_key)
    if window is None:
        window = portal.windows[window_key] = deque()
    now = time.monotonic()
    cutoff = now - cfg.window_ms / 1000
    while window and window[0] <= cutoff:
        window.popleft()
    headers = {
        "X-HubSpot-RateLimit-Max": str(burst),
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(cfg.window_ms),
    }
    if private:
        day = now_ms // _DAY_MS
        if day != portal.daily_day:
            portal.daily_day = day
            portal.daily_count = 0
        headers["X-HubSpot-RateLimit-Daily"] = str(cfg.daily_limit)
    if len(window) >= burst:
        headers["X-HubSpot-RateLimit-Remaining"] = "0"
        if private:
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(
                max(0, cfg.daily_limit - portal.daily_count)
            )
        raise rate_limited(
            "TEN_SECONDLY_ROLLING",
            "You have reached your ten_secondly_rolling limit.",
            headers,
            cfg.retry_after_seconds,
        )
    if private and portal.daily_count >= cfg.daily_limit:
        headers["X-HubSpot-RateLimit-Remaining"] = str(burst - len(window))
        headers["X-HubSpot-RateLimit-Daily-Remaining"] = "0"
        raise rate_limited(
            "DAILY", "You have reached your daily limit.", headers, cfg.retry_after_seconds
        )
    window.append(now)
    headers["X-HubSpot-RateLimit-Remaining"] = str(burst - len(window))
    if private:
        portal.daily_count += 1
        headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(cfg.daily_limit - portal.daily_count)
    return headers


def check_search(portal: Portal, token: Token, now_ms: int) -> None:
    """Search: N requests per second per portal, no rate-limit headers; counts toward daily.

    Raises:
        SandboxError: 429 with the configured search `policyName`.
    """
    cfg = portal.settings.rate_limits
    window = portal.search_window
    now = time.monotonic()
    while window and window[0] <= now - 1.0:
        window.popleft()
    if len(window) >= cfg.search_per_second:
        raise rate_limited(
            cfg.search_policy_name,
            "You have reached your secondly limit.",
            {},
            cfg.retry_after_seconds,
        )
    if token.kind == "private":
        day = now_ms // _DAY_MS
        if day != portal.daily_day:
            portal.daily_day = day
            portal.daily_count = 0
        if portal.daily_count >= cfg.daily_limit:
            raise rate_limited("DAILY", "You have reached your daily limit.", {}, None)
        portal.daily_count += 1
    window.append(now)


def check_event_send(portal: Portal) -> None:
    """Custom event sends: N requests per second per portal (contract §4: 1,250/s).

    Raises:
        SandboxError: 429 with `policyName` SECONDLY.
    """
    window = portal.event_send_window
    now = time.monotonic()
    while window and window[0] <= now - 1.0:
        window.popleft()
    if len(window) >= portal.settings.rate_limits.event_send_per_second:
        raise rate_limited(
            "SECONDLY",
            "You have reached your secondly limit.",
            {},
            portal.settings.rate_limits.retry_after_seconds,
        )
    window.append(now)
