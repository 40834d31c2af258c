"""Rate limits, fault injection, token expiry and scopes."""

from __future__ import annotations

import time

import httpx
from tests.sandbox.harness import PortalHandle

C = "/crm/v3/objects/contacts"


def _bearer(portal: PortalHandle, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=portal.sandbox.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _oauth_token(portal: PortalHandle, **body: object) -> str:
    resp = httpx.post(portal.admin("/tokens"), json=body)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["access_token"])


class TestTenSecondly:
    def test_budget_headers_and_429_body(self, http: httpx.Client, portal: PortalHandle) -> None:
        limits = portal.portal.settings.rate_limits
        limits.enabled, limits.private_app_burst, limits.window_ms = True, 4, 600
        first = http.get(C)
        assert first.headers["x-hubspot-ratelimit-max"] == "4"
        assert first.headers["x-hubspot-ratelimit-remaining"] == "3"
        assert first.headers["x-hubspot-ratelimit-interval-milliseconds"] == "600"
        assert first.headers["x-hubspot-ratelimit-daily"] == "250000"
        assert first.headers["x-hubspot-ratelimit-daily-remaining"] == "249999"
        assert [http.get(C).status_code for _ in range(4)] == [200, 200, 200, 429]
        limited = http.get(C)
        assert limited.status_code == 429
        body = limited.json()
        assert body["status"] == "error"
        assert body["errorType"] == "RATE_LIMIT"
        assert body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["correlationId"]
        assert body["requestId"]
        assert limited.headers["x-hubspot-ratelimit-remaining"] == "0"
        assert "retry-after" not in limited.headers
        time.sleep(0.65)
        assert http.get(C).status_code == 200  # the window rolled

    def test_rejections_do_not_consume_budget(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        limits = portal.portal.settings.rate_limits
        limits.enabled, limits.private_app_burst, limits.window_ms = True, 3, 500
        deadline = time.monotonic() + 1.2
        ok = 0
        while time.monotonic() < deadline:
            ok += http.get(C).status_code == 200
        # 1.2 s of hammering a 3-per-500-ms window: exactly 3 per window started, never more.
        assert ok == 9

    def test_oauth_apps_have_their_own_bucket_and_no_daily_headers(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        limits = portal.portal.settings.rate_limits
        limits.enabled, limits.private_app_burst, limits.oauth_app_burst = True, 1, 2
        assert http.get(C).status_code == 200
        assert http.get(C).status_code == 429
        with _bearer(portal, _oauth_token(portal)) as oauth:
            resp = oauth.get(C)
            assert resp.status_code == 200
            assert resp.headers["x-hubspot-ratelimit-max"] == "2"
            assert "x-hubspot-ratelimit-daily" not in resp.headers

    def test_retry_after_is_configurable(self, http: httpx.Client, portal: PortalHandle) -> None:
        limits = portal.portal.settings.rate_limits
        limits.enabled, limits.private_app_burst, limits.retry_after_seconds = True, 1, 2
        http.get(C)
        assert http.get(C).headers["retry-after"] == "2"


class TestDaily:
    def test_daily_limit(self, http: httpx.Client, portal: PortalHandle) -> None:
        limits = portal.portal.settings.rate_limits
        limits.enabled, limits.daily_limit = True, 2
        assert [http.get(C).status_code for _ in range(2)] == [200, 200]
        resp = http.get(C)
        assert resp.status_code == 429
        assert resp.json()["policyName"] == "DAILY"
        assert resp.json()["message"] == "You have reached your daily limit."
        assert resp.headers["x-hubspot-ratelimit-daily-remaining"] == "0"


class TestFaults:
    def test_spurious_429_and_5xx(self, http: httpx.Client, portal: PortalHandle) -> None:
        put = httpx.put(portal.admin("/faults"), json={"spurious_429_rate": 1.0})
        assert put.status_code == 200
        resp = http.get(C)
        assert resp.status_code == 429
        assert resp.json()["policyName"] == "TEN_SECONDLY_ROLLING"
        httpx.put(
            portal.admin("/faults"),
            json={"spurious_429_rate": 0.0, "error_rate": 1.0, "error_statuses": [503]},
        )
        resp = http.get(C)
        assert resp.status_code == 503
        assert resp.json()["status"] == "error"

    def test_latency(self, http: httpx.Client, portal: PortalHandle) -> None:
        httpx.put(portal.admin("/faults"), json={"latency_ms": 150, "jitter_ms": 50})
        started = time.monotonic()
        assert http.get(C).status_code == 200
        assert 0.15 <= time.monotonic() - started < 1.0

    def test_seeded_error_rate_is_reproducible(
        self, http: httpx.Client, portal: PortalHandle
    ) -> None:
        def run() -> list[int]:
            httpx.put(portal.admin("/faults"), json={"error_rate": 0.5, "seed": 7})
            return [http.get(C).status_code for _ in range(20)]

        first = run()
        assert 200 in first
        assert any(s >= 500 for s in first)
        assert run() == first

    def test_bad_setting_is_rejected(self, portal: PortalHandle) -> None:
        resp = httpx.put(portal.admin("/faults"), json={"error_rate": "lots"})
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_settings"


class TestTokens:
    def test_expired_oauth_token_is_refused(self, portal: PortalHandle) -> None:
        token = _oauth_token(portal, expires_in=60)
        with _bearer(portal, token) as client:
            assert client.get(C).status_code == 200
            httpx.post(f"{portal.sandbox.base_url}/_sandbox/clock", json={"advance_seconds": 120})
            try:
                resp = client.get(C)
            finally:
                portal.sandbox.store.clock_offset_ms = 0
        assert resp.status_code == 401
        body = resp.json()
        assert body["category"] == "EXPIRED_AUTHENTICATION"
        assert body["message"] == "The OAuth token used to make this call expired 1 minute(s) ago."

    def test_missing_scopes(self, portal: PortalHandle) -> None:
        token = _oauth_token(portal, scopes=["crm.objects.companies.read"])
        with _bearer(portal, token) as client:
            resp = client.get(C)
        assert resp.status_code == 403
        body = resp.json()
        assert body["category"] == "MISSING_SCOPES"
        required = body["errors"][0]["context"]["requiredGranularScopes"]
        assert required == ["crm.objects.contacts.read"]
