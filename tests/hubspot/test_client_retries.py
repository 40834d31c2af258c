"""The request loop: transport errors, retries, Retry-After, 401 refresh, bounded attempts.

`httpx.MockTransport` scripts exact sequences of answers here (a 503 then a 200, a lost
connection on a POST); the sandbox tests cover the same paths end to end with its faults.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from tests.hubspot.support import VirtualClock

from spoke.hubspot import (
    HubSpotClient,
    HubSpotTransportError,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    ServerError,
    Unauthorized,
)
from spoke.hubspot.ratelimit import InMemoryBucketStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

CONTACT = {
    "id": "501",
    "properties": {"email": "a@b.com", "firstname": None},
    "createdAt": "2026-01-01T00:00:00Z",
    "updatedAt": "2026-01-01T00:00:00Z",
    "archived": False,
}


class Script:
    """Answers requests from a list of responses (or exceptions), recording what came in."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def make_client(
    script: Callable[[httpx.Request], httpx.Response],
    sleeps: VirtualClock,
    **kwargs: object,
) -> tuple[HubSpotClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(script))
    client = HubSpotClient(
        http,
        auth="pat-test",
        base_url="https://hubspot.test",
        sleep=sleeps,
        **kwargs,  # type: ignore[arg-type]
    )
    return client, http


def err(status: int, headers: dict[str, str] | None = None, **body: object) -> httpx.Response:
    return httpx.Response(status, json={"status": "error", "message": "x", **body}, headers=headers)


class TestTransportErrors:
    async def test_connect_error_is_translated_and_chained(self, sleeps: VirtualClock) -> None:
        script = Script(*[httpx.ConnectError("refused")] * 4)
        client, http = make_client(script, sleeps)
        async with http:
            with pytest.raises(HubSpotTransportError) as caught:
                await client.contacts.get("501")
        assert isinstance(caught.value.__cause__, httpx.ConnectError)
        assert caught.value.method == "GET"
        assert len(script.requests) == 4  # bounded: max_attempts

    async def test_connect_error_retried_even_for_create(self, sleeps: VirtualClock) -> None:
        script = Script(httpx.ConnectError("refused"), httpx.Response(201, json=CONTACT))
        client, http = make_client(script, sleeps)
        async with http:
            created = await client.contacts.create({"email": "a@b.com"})
        assert created.id == "501"
        assert len(sleeps.calls) == 1

    async def test_read_timeout_on_create_is_not_retried(self, sleeps: VirtualClock) -> None:
        script = Script(httpx.ReadTimeout("slow"), httpx.Response(201, json=CONTACT))
        client, http = make_client(script, sleeps)
        async with http:
            with pytest.raises(HubSpotTransportError):
                await client.contacts.create({"email": "a@b.com"})
        assert len(script.requests) == 1

    async def test_read_timeout_on_get_is_retried(self, sleeps: VirtualClock) -> None:
        script = Script(httpx.ReadTimeout("slow"), httpx.Response(200, json=CONTACT))
        client, http = make_client(script, sleeps)
        async with http:
            assert (await client.contacts.get("501")).id == "501"


class TestServerErrors:
    async def test_idempotent_call_retried_with_growing_backoff(self, sleeps: VirtualClock) -> None:
        script = Script(err(503), err(502), httpx.Response(200, json=CONTACT))
        client, http = make_client(script, sleeps, retry=RetryPolicy(backoff_base=1.0))
        async with http:
            assert (await client.contacts.get("501")).id == "501"
        assert len(sleeps.calls) == 2
        assert 0.5 <= sleeps.calls[0] <= 1.0
        assert 1.0 <= sleeps.calls[1] <= 2.0

    async def test_create_not_retried_on_5xx(self, sleeps: VirtualClock) -> None:
        script = Script(err(500), httpx.Response(201, json=CONTACT))
        client, http = make_client(script, sleeps)
        async with http:
            with pytest.raises(ServerError):
                await client.contacts.create({"email": "a@b.com"})
        assert len(script.requests) == 1

    async def test_gives_up_after_max_attempts(self, sleeps: VirtualClock) -> None:
        script = Script(*[err(503)] * 3)
        client, http = make_client(script, sleeps, retry=RetryPolicy(max_attempts=3))
        async with http:
            with pytest.raises(ServerError):
                await client.contacts.get("501")
        assert len(script.requests) == 3
        assert len(sleeps.calls) == 2

    async def test_locked_waits_at_least_two_seconds(self, sleeps: VirtualClock) -> None:
        script = Script(err(423), httpx.Response(200, json=CONTACT))
        client, http = make_client(script, sleeps)
        async with http:
            await client.contacts.update("501", {"firstname": "A"})
        assert sleeps.calls == [2.0]

    async def test_batch_upsert_is_retried(self, sleeps: VirtualClock) -> None:
        body = {"status": "COMPLETE", "results": [{**CONTACT, "new": True}]}
        script = Script(err(504), httpx.Response(200, json=body))
        client, http = make_client(script, sleeps)
        async with http:
            result = await client.contacts.batch_upsert_by_email([("a@b.com", {"firstname": "A"})])
        assert result.results[0].new is True
        assert len(script.requests) == 2


class TestRateLimited:
    async def test_honours_retry_after(self, sleeps: VirtualClock) -> None:
        script = Script(
            err(429, {"Retry-After": "3"}, policyName="TEN_SECONDLY_ROLLING"),
            httpx.Response(201, json=CONTACT),
        )
        client, http = make_client(script, sleeps)
        async with http:
            # A 429 is refused before HubSpot does anything, so even a create is resent.
            await client.contacts.create({"email": "a@b.com"})
        assert sleeps.calls == [3.0]

    async def test_ten_secondly_without_retry_after_waits_the_window(
        self, sleeps: VirtualClock
    ) -> None:
        script = Script(
            err(429, policyName="TEN_SECONDLY_ROLLING"), httpx.Response(200, json=CONTACT)
        )
        client, http = make_client(script, sleeps)
        async with http:
            await client.contacts.get("501")
        assert sleeps.calls == [10.0]

    async def test_daily_limit_is_not_retried(self, sleeps: VirtualClock) -> None:
        script = Script(err(429, policyName="DAILY"))
        client, http = make_client(script, sleeps)
        async with http:
            with pytest.raises(RateLimited) as caught:
                await client.contacts.get("501")
        assert caught.value.policy == "DAILY"
        assert sleeps.calls == []

    async def test_too_long_retry_after_is_raised(self, sleeps: VirtualClock) -> None:
        script = Script(err(429, {"Retry-After": "3600"}, policyName="TEN_SECONDLY_ROLLING"))
        client, http = make_client(script, sleeps)
        async with http:
            with pytest.raises(RateLimited) as caught:
                await client.contacts.get("501")
        assert caught.value.retry_after == 3600

    async def test_pauses_the_shared_bucket(self, sleeps: VirtualClock) -> None:
        store = InMemoryBucketStore(clock=sleeps.time)
        limiter = RateLimiter(1, store=store, sleep=sleeps)
        script = Script(
            err(429, {"Retry-After": "2"}, policyName="TEN_SECONDLY_ROLLING"),
            httpx.Response(200, json=CONTACT),
        )
        client, http = make_client(script, sleeps, limiter=limiter)
        async with http:
            await client.contacts.get("501")
        # The 429's wait emptied the shared bucket, so the resend waited for a refill too
        # (burst 10, refill 9/s for the default 100 per 10 s).
        assert sleeps.calls[0] == 2.0
        assert sleeps.calls[1] == pytest.approx(1 / 9)


class TestUnauthorized:
    async def test_private_token_401_is_raised(self, sleeps: VirtualClock) -> None:
        script = Script(err(401, category="INVALID_AUTHENTICATION"))
        client, http = make_client(script, sleeps)
        async with http:
            with pytest.raises(Unauthorized):
                await client.contacts.get("501")
        assert len(script.requests) == 1
        assert script.requests[0].headers["authorization"] == "Bearer pat-test"


class TestRequestShape:
    async def test_query_and_body_encoding(self, sleeps: VirtualClock) -> None:
        script = Script(httpx.Response(200, json=CONTACT), httpx.Response(200, json=CONTACT))
        client, http = make_client(script, sleeps)
        async with http:
            await client.contacts.get(
                "a@b.com", id_property="email", properties=["email", "firstname"]
            )
            await client.contacts.update("501", {"vip": True, "score": 3, "phone": None})
        first, second = script.requests
        assert first.url.params["idProperty"] == "email"
        assert first.url.params["properties"] == "email,firstname"
        assert "archived" not in first.url.params
        assert second.method == "PATCH"
        assert second.read() == b'{"properties":{"vip":"true","score":"3","phone":""}}'
