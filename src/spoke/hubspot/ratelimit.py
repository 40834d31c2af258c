"""Client-side rate limiting and retry policy for HubSpot calls.

HubSpot limits each app per portal to a burst over a rolling 10-second window (100 or 190 for
private apps, 110 for OAuth apps) and search to 5 requests/s per portal (hubspot-contract.md §8).
Every worker of a deployment talking to one portal must share one budget, so buckets live in
Redis when a Redis client is given (one Lua script makes take-or-wait atomic, on Redis's clock)
and in a process-wide store otherwise.

A bucket holds `capacity` tokens and refills at `rate` per second, so at most
`capacity + rate * window` calls fit in any window. `Bucket.for_window` chooses both so that sum
never passes the budget (the limit less the share reserved for other apps): the client never
causes a 429 itself; 429s still come from apps it cannot see, and `RetryPolicy` handles those.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import redis
import redis.asyncio

__all__ = [
    "Bucket",
    "BucketKind",
    "BucketStore",
    "InMemoryBucketStore",
    "RateLimiter",
    "RedisBucketStore",
    "RetryPolicy",
]

BucketKind = Literal["general", "search"]

# Float slack when comparing tokens, and the shortest wait handed out (no busy spinning).
_EPSILON = 1e-9
_MIN_WAIT = 0.001


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket: `capacity` tokens, refilled at `rate` tokens per second."""

    capacity: float
    rate: float

    def __post_init__(self) -> None:
        if self.capacity < 1 or self.rate <= 0:
            raise ValueError("a bucket needs capacity >= 1 and a positive rate")

    @classmethod
    def for_window(
        cls,
        limit: int,
        window: float,
        *,
        reserved_share: float = 0.0,
        burst_share: float = 0.1,
    ) -> Bucket:
        """Size a bucket so that no rolling `window` ever sees more than the budget.

        Args:
            limit: calls HubSpot allows per `window`.
            window: the window in seconds (10 for the burst limit, 1 for search).
            reserved_share: fraction of `limit` left for other apps on the portal (0 ≤ x < 1).
            burst_share: fraction of the budget that may go at once; the rest is paced.

        Returns:
            A bucket with `capacity + rate * window == limit * (1 - reserved_share)`.

        Raises:
            ValueError: a share is out of range or the budget is under one call.
        """
        if not 0 <= reserved_share < 1 or not 0 < burst_share < 1:
            raise ValueError("reserved_share must be in [0, 1) and burst_share in (0, 1)")
        budget = limit * (1 - reserved_share)
        burst = max(1.0, budget * burst_share)
        if budget <= burst:
            raise ValueError(f"a budget of {budget:g} calls per {window:g}s is too small")
        return cls(capacity=burst, rate=(budget - burst) / window)


class BucketStore(Protocol):
    """Where bucket state lives; shared by every limiter that should share a budget."""

    async def take(self, key: str, bucket: Bucket, cost: float = 1.0) -> float:
        """Take `cost` tokens if available.

        Args:
            key: the bucket's key (portal and kind).
            bucket: the bucket's shape.
            cost: tokens to take.

        Returns:
            0.0 if the tokens were taken, else the seconds until they would be (nothing taken).
        """
        ...

    async def drain(self, key: str, bucket: Bucket, seconds: float) -> None:
        """Empty the bucket so that it grants nothing for `seconds` (after a 429)."""
        ...


class InMemoryBucketStore:
    """Buckets in this process, safe across threads and event loops."""

    _shared: InMemoryBucketStore | None = None
    _shared_lock = threading.Lock()

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, tuple[float, float]] = {}

    @classmethod
    def shared(cls) -> InMemoryBucketStore:
        """The process-wide store used when a limiter is given no store."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared

    def _refilled(self, key: str, bucket: Bucket, now: float) -> float:
        tokens, stamp = self._state.get(key, (bucket.capacity, now))
        return min(bucket.capacity, tokens + max(0.0, now - stamp) * bucket.rate)

    async def take(self, key: str, bucket: Bucket, cost: float = 1.0) -> float:
        with self._lock:
            now = self._clock()
            tokens = self._refilled(key, bucket, now)
            if tokens >= cost - _EPSILON:
                self._state[key] = (tokens - cost, now)
                return 0.0
            self._state[key] = (tokens, now)
            return max(_MIN_WAIT, (cost - tokens) / bucket.rate)

    async def drain(self, key: str, bucket: Bucket, seconds: float) -> None:
        with self._lock:
            now = self._clock()
            tokens = min(self._refilled(key, bucket, now), -seconds * bucket.rate)
            self._state[key] = (tokens, now)


# Token bucket on Redis's clock (TIME), so workers on different machines agree. Returns the wait
# in seconds as a string (Lua numbers become integers on the way out). ARGV[4] > 0 drains
# instead: the bucket is set to owe that many seconds of refill.
_BUCKET_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local drain = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if drain > 0 then
  tokens = math.min(tokens, -drain * rate)
elseif tokens >= cost - 1e-9 then
  tokens = tokens - cost
else
  wait = math.max(0.001, (cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBucketStore:
    """Buckets in Redis, shared by every worker that uses the same Redis and prefix.

    Accepts an asyncio client (preferred) or a sync one; a sync call blocks the event loop for
    one round trip, which is acceptable on a local network.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.Redis,  # type: ignore[type-arg]
        *,
        prefix: str = "spoke:hubspot:ratelimit:",
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._script: Any = client.register_script(_BUCKET_LUA)

    @property
    def prefix(self) -> str:
        return self._prefix

    async def _run(self, key: str, bucket: Bucket, cost: float, drain: float) -> float:
        args = [repr(bucket.capacity), repr(bucket.rate), repr(cost), repr(drain)]
        result: Any = self._script(keys=[self._prefix + key], args=args)
        if isinstance(self._client, redis.asyncio.Redis):
            result = await result
        return float(result.decode() if isinstance(result, bytes) else str(result))

    async def take(self, key: str, bucket: Bucket, cost: float = 1.0) -> float:
        return await self._run(key, bucket, cost, 0.0)

    async def drain(self, key: str, bucket: Bucket, seconds: float) -> None:
        if seconds > 0:
            await self._run(key, bucket, 0.0, seconds)


class RateLimiter:
    """The budget of one portal: a general bucket and a separate search bucket.

    Args:
        portal_id: the HubSpot portal (hub) id; buckets are keyed by it.
        app: which app's burst budget this is (HubSpot counts the 10-second window per app
            and portal, e.g. `private` or an OAuth app id). Search is per portal, shared by
            every app.
        store: where buckets live. Defaults to a `RedisBucketStore` over `redis` when given,
            else the process-wide `InMemoryBucketStore`.
        redis: a Redis client, used when `store` is not given.
        limit: calls per `window` HubSpot grants this app (100/190 private, 110 OAuth).
        window: seconds of the rolling window (10).
        search_per_second: HubSpot's search limit per portal (5).
        reserved_share: fraction of both budgets left for other apps on the portal.
        burst_share: fraction of a budget that may be spent at once.
        sleep: how to wait; injectable for tests.
    """

    def __init__(
        self,
        portal_id: int | str,
        *,
        app: str = "default",
        store: BucketStore | None = None,
        redis: redis.asyncio.Redis | redis.Redis | None = None,  # type: ignore[type-arg]
        limit: int = 100,
        window: float = 10.0,
        search_per_second: int = 5,
        reserved_share: float = 0.0,
        burst_share: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        if store is None:
            store = RedisBucketStore(redis) if redis is not None else InMemoryBucketStore.shared()
        self.store = store
        self.portal_id = str(portal_id)
        self.app = app
        self.buckets: dict[BucketKind, Bucket] = {
            "general": Bucket.for_window(
                limit, window, reserved_share=reserved_share, burst_share=burst_share
            ),
            "search": Bucket.for_window(
                search_per_second, 1.0, reserved_share=reserved_share, burst_share=burst_share
            ),
        }
        self._sleep = sleep

    def key(self, kind: BucketKind) -> str:
        """The store key of one of this portal's buckets."""
        if kind == "search":
            return f"{self.portal_id}:search"
        return f"{self.portal_id}:{self.app}:{kind}"

    async def acquire(self, kind: BucketKind = "general") -> None:
        """Wait until the bucket grants one call, then take it.

        Args:
            kind: `general` for ordinary calls, `search` for CRM search.
        """
        bucket = self.buckets[kind]
        while True:
            wait = await self.store.take(self.key(kind), bucket)
            if wait <= 0:
                return
            await self._sleep(wait)

    async def pause(self, kind: BucketKind, seconds: float) -> None:
        """Stop every worker sharing this budget from calling for `seconds` (after a 429).

        Args:
            kind: the bucket HubSpot said was exhausted.
            seconds: how long to hold off.
        """
        await self.store.drain(self.key(kind), self.buckets[kind], seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how long to wait before retrying a failed call.

    Attributes:
        max_attempts: total attempts including the first (so `max_attempts - 1` retries).
        backoff_base: first backoff in seconds; doubles per attempt.
        backoff_max: cap on one backoff.
        max_retry_after: a 429 asking to wait longer than this is raised, not waited out.
        ten_secondly_wait: wait after a TEN_SECONDLY_ROLLING 429 without `Retry-After`
            (HubSpot's Node SDK waits 10 s).
        secondly_wait: wait after a search (SECONDLY) 429 without `Retry-After` (the SDK: 1 s).
        locked_wait: wait after a 423 (HubSpot: locks last 2 s).
    """

    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_after: float = 60.0
    ten_secondly_wait: float = 10.0
    secondly_wait: float = 1.0
    locked_wait: float = 2.0

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): exponential with equal jitter."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** max(0, attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def rate_limit_wait(self, policy: str | None, retry_after: float | None) -> float | None:
        """Seconds to wait after a 429, or None when it should not be retried.

        Args:
            policy: HubSpot's `policyName`.
            retry_after: the `Retry-After` header in seconds, if any.

        Returns:
            The wait; None for daily or monthly limits (they reset at midnight or month end:
            the DAILY policy, or the custom events cap) or a wait above `max_retry_after`.
        """
        if policy is not None and ("DAILY" in policy or "MONTH" in policy):
            return None
        if retry_after is not None:
            wait = retry_after
        elif policy in ("SECONDLY", "SEARCH"):
            wait = self.secondly_wait
        else:
            wait = self.ten_secondly_wait
        return wait if wait <= self.max_retry_after else None


NO_RETRY = RetryPolicy(max_attempts=1)
"""A policy that never retries."""
