"""Token buckets (in-process and on the real Redis at 127.0.0.1:6379) and the retry policy."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio
from tests.hubspot.support import VirtualClock
from tests.support.services import REDIS_URL, require_redis

from spoke.hubspot import Bucket, InMemoryBucketStore, RateLimiter, RedisBucketStore, RetryPolicy

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


class TestBucketForWindow:
    def test_never_exceeds_the_limit_in_a_window(self) -> None:
        bucket = Bucket.for_window(100, 10.0)
        assert bucket.capacity + bucket.rate * 10.0 == pytest.approx(100)
        assert bucket.capacity == pytest.approx(10)

    def test_reserved_share_leaves_room_for_other_apps(self) -> None:
        bucket = Bucket.for_window(190, 10.0, reserved_share=0.2)
        assert bucket.capacity + bucket.rate * 10.0 == pytest.approx(152)

    def test_search_bucket(self) -> None:
        bucket = Bucket.for_window(5, 1.0)
        assert bucket.capacity == 1
        assert bucket.rate == pytest.approx(4)

    @pytest.mark.parametrize(
        ("limit", "reserved", "burst"), [(1, 0.0, 0.1), (100, 1.0, 0.1), (100, 0.0, 0.0)]
    )
    def test_rejects_impossible_shapes(self, limit: int, reserved: float, burst: float) -> None:
        with pytest.raises(ValueError):  # noqa: PT011 (message varies by cause)
            Bucket.for_window(limit, 10.0, reserved_share=reserved, burst_share=burst)


class TestInMemoryBucketStore:
    async def test_grants_the_burst_then_paces(self) -> None:
        clock = VirtualClock()
        store = InMemoryBucketStore(clock=clock.time)
        bucket = Bucket(capacity=3, rate=2)
        assert [await store.take("k", bucket) for _ in range(3)] == [0.0, 0.0, 0.0]
        wait = await store.take("k", bucket)
        assert wait == pytest.approx(0.5)
        clock.now += wait
        assert await store.take("k", bucket) == 0.0

    async def test_keys_are_independent(self) -> None:
        store = InMemoryBucketStore(clock=VirtualClock().time)
        bucket = Bucket(capacity=1, rate=1)
        assert await store.take("a", bucket) == 0.0
        assert await store.take("b", bucket) == 0.0
        assert await store.take("a", bucket) > 0

    async def test_drain_blocks_for_the_given_time(self) -> None:
        clock = VirtualClock()
        store = InMemoryBucketStore(clock=clock.time)
        bucket = Bucket(capacity=10, rate=10)
        await store.drain("k", bucket, 2.0)
        wait = await store.take("k", bucket)
        assert wait == pytest.approx(2.1)

    async def test_limiter_over_a_simulated_window_stays_in_budget(self) -> None:
        clock = VirtualClock()
        limiter = RateLimiter(
            "portal", store=InMemoryBucketStore(clock=clock.time), limit=100, sleep=clock
        )
        start = clock.now
        stamps = []
        for _ in range(300):
            await limiter.acquire()
            stamps.append(clock.now - start)
        # Any 10-second window holds at most 100 calls.
        for i, stamp in enumerate(stamps):
            in_window = [s for s in stamps[i:] if s < stamp + 10.0]
            assert len(in_window) <= 100
        assert stamps[-1] < 35  # and the budget is actually used

    async def test_search_has_its_own_bucket(self) -> None:
        clock = VirtualClock()
        limiter = RateLimiter(7, store=InMemoryBucketStore(clock=clock.time), sleep=clock)
        for _ in range(5):
            await limiter.acquire("general")
        await limiter.acquire("search")
        assert clock.calls == []
        await limiter.acquire("search")
        assert clock.calls == [pytest.approx(0.25)]


@pytest.fixture
async def redis_client() -> AsyncIterator[redis.asyncio.Redis]:  # type: ignore[type-arg]
    client: redis.asyncio.Redis = redis.asyncio.Redis(host="127.0.0.1", port=6379)  # type: ignore[type-arg]
    yield client
    await client.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose


@pytest.fixture
async def prefix(redis_client: redis.asyncio.Redis) -> AsyncIterator[str]:  # type: ignore[type-arg]
    value = f"spoke-test:{uuid.uuid4().hex}:"
    yield value
    keys = [key async for key in redis_client.scan_iter(match=value + "*")]
    if keys:
        await redis_client.delete(*keys)


class TestRedisBucketStore:
    async def test_grants_capacity_then_asks_to_wait(
        self,
        redis_client: redis.asyncio.Redis,  # type: ignore[type-arg]
        prefix: str,
    ) -> None:
        store = RedisBucketStore(redis_client, prefix=prefix)
        bucket = Bucket(capacity=5, rate=0.5)
        waits = [await store.take("p:general", bucket) for _ in range(6)]
        assert waits[:5] == [0.0] * 5
        assert 1.0 < waits[5] <= 2.0
        assert await redis_client.exists(prefix + "p:general")
        assert 0 < await redis_client.pttl(prefix + "p:general") <= 12_000

    async def test_two_workers_share_one_budget(
        self,
        redis_client: redis.asyncio.Redis,  # type: ignore[type-arg]
        prefix: str,
    ) -> None:
        other_connection: redis.asyncio.Redis = redis.asyncio.Redis(host="127.0.0.1", port=6379)  # type: ignore[type-arg]
        try:
            first = RedisBucketStore(redis_client, prefix=prefix)
            second = RedisBucketStore(other_connection, prefix=prefix)
            bucket = Bucket(capacity=4, rate=0.1)
            granted = 0
            for store in (first, second, first, second, first, second):
                granted += await store.take("shared", bucket) == 0.0
            assert granted == 4
        finally:
            await other_connection.aclose()  # type: ignore[attr-defined]

    async def test_drain_is_seen_by_every_worker(
        self,
        redis_client: redis.asyncio.Redis,  # type: ignore[type-arg]
        prefix: str,
    ) -> None:
        store = RedisBucketStore(redis_client, prefix=prefix)
        bucket = Bucket(capacity=10, rate=10)
        await store.drain("p:general", bucket, 3.0)
        wait = await RedisBucketStore(redis_client, prefix=prefix).take("p:general", bucket)
        assert 2.5 < wait <= 3.2

    async def test_sync_client_works_too(self, prefix: str) -> None:
        import redis as sync_redis

        client = sync_redis.Redis(host="127.0.0.1", port=6379)
        try:
            store = RedisBucketStore(client, prefix=prefix)
            bucket = Bucket(capacity=1, rate=1)
            assert await store.take("s", bucket) == 0.0
            assert await store.take("s", bucket) > 0.0
            client.delete(prefix + "s")
        finally:
            client.close()

    async def test_limiter_uses_redis_when_given_a_client(
        self,
        redis_client: redis.asyncio.Redis,  # type: ignore[type-arg]
        prefix: str,
    ) -> None:
        limiter = RateLimiter(42, redis=redis_client, limit=20)
        assert isinstance(limiter.store, RedisBucketStore)
        limiter.store = RedisBucketStore(redis_client, prefix=prefix)
        for _ in range(2):  # burst is 10% of 20
            await limiter.acquire()
        assert await redis_client.exists(prefix + "42:default:general")

    async def test_apps_have_own_bursts_but_share_search(self) -> None:
        private = RateLimiter(9, app="private")
        oauth = RateLimiter(9, app="app-123")
        assert private.key("general") != oauth.key("general")
        assert private.key("search") == oauth.key("search")


class TestRetryPolicy:
    def test_backoff_grows_and_is_capped(self) -> None:
        policy = RetryPolicy(backoff_base=1.0, backoff_max=4.0)
        for attempt, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (2, 4), (2, 4)], 1):
            assert low <= policy.backoff(attempt) <= high

    def test_rate_limit_waits(self) -> None:
        policy = RetryPolicy()
        assert policy.rate_limit_wait("DAILY", 5.0) is None
        assert policy.rate_limit_wait("MONTHLY_EVENT_COMPLETIONS", None) is None
        assert policy.rate_limit_wait("TEN_SECONDLY_ROLLING", None) == 10.0
        assert policy.rate_limit_wait("SECONDLY", None) == 1.0
        assert policy.rate_limit_wait(None, 0.25) == 0.25
        assert policy.rate_limit_wait("TEN_SECONDLY_ROLLING", 61.0) is None


def test_process_limiter_serves_one_run_after_another(tmp_path: Path) -> None:
    """Each manual run has an event loop of its own; the portal's limiter is process-wide,
    so its Redis client must not be tied to the first run's loop."""
    from spoke.config import Settings
    from spoke.connections import service as connections

    require_redis()
    settings = Settings(data_dir=tmp_path, redis_url=REDIS_URL)  # type: ignore[call-arg]
    portal_id = 900_000 + uuid.uuid4().int % 100_000
    limiter = connections.limiter_for(settings, portal_id)
    limiter.store = RedisBucketStore(
        limiter.store._client,  # type: ignore[attr-defined]
        prefix=f"spoke-test:{uuid.uuid4().hex}:",
    )
    for _run in range(3):  # three runs, three event loops
        asyncio.run(limiter.acquire())
    assert connections.limiter_for(settings, portal_id) is limiter
