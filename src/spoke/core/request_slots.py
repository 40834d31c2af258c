"""How many requests may use the database at once, so they can never starve each other.

A transactional request holds one pooled connection from its first query until its commit,
and its pieces (sync dependencies, the endpoint body, the commit in `TransactionalRoute`)
each take a worker thread from Starlette's threadpool (anyio's limiter, 40 by default) for
a moment. With no bound, under a burst every worker thread ended up in a request blocked on
the pool, while the requests holding the connections waited for a free thread to commit:
nothing moved until the pool timeout failed the waiters (30 s stalls at 1,000 callers).

The bound is taken on the event loop, before the request uses any thread or connection, and
given back after its commit or rollback. With `permits` at most the connections the pool
keeps open, a request inside the bound always finds one (it uses one at a time), so no
worker thread waits on the pool because of other requests. Not the pool's whole capacity:
the overflow connections are opened on demand and closed when given back, and under a burst
requests that used them paid a connect (and PostgreSQL a backend start) each time: 9 % of
the HTTP process's time in one profile. The overflow is left to jobs and after-commit
work; with `permits` below the thread limit, even when something else holds connections
(the embedded job worker) the threads blocked on the pool can't be all of them, so a
connection holder always gets a thread to commit.
Growing the pool alone doesn't remove the cycle: a request holds its connection while it
waits for a thread, so more requests than threads can still hold connections.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio import to_thread


class RequestSlots:
    def __init__(self, capacity: int | None) -> None:
        self.capacity = capacity
        # One semaphore per event loop: asyncio primitives belong to the loop they first
        # wait on, and tests (TestClient) may drive one app from several loops in turn.
        # anyio's semaphore, not asyncio's: in Python 3.11 `asyncio.Semaphore.acquire` scans
        # every waiter, so with hundreds of requests queued it became the event loop's
        # largest cost; anyio's queue of waiters makes each acquire O(1).
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.Semaphore]
        self._by_loop = weakref.WeakKeyDictionary()

    def permits(self) -> int:
        threads = int(to_thread.current_default_thread_limiter().total_tokens)
        bound = max(1, threads - 1)
        return bound if self.capacity is None else max(1, min(self.capacity, bound))

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        semaphore = self._by_loop.get(loop)
        if semaphore is None:
            semaphore = self._by_loop[loop] = anyio.Semaphore(self.permits())
        async with semaphore:
            yield
