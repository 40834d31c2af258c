"""Use the async `HubSpotClient` from synchronous code (services, Huey tasks).

`blocking_client` runs an event loop in a helper thread (an anyio blocking portal) for as long
as the `with` block lasts; the httpx client lives and is closed in that loop::

    with blocking_client(lambda http: HubSpotClient(http, auth=token, base_url=url)) as hs:
        contact = hs.call(lambda c: c.contacts.get("501"))
        for record in hs.iterate(lambda c: c.contacts.iter_all()):
            ...

Inside a job that wants concurrency, `hs.call` an async function that fans out (e.g. with an
anyio task group) instead of calling many times.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TypeVar

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from spoke.hubspot.client import HubSpotClient

__all__ = ["BlockingClient", "blocking_client"]

_T = TypeVar("_T")

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


class BlockingClient:
    """A `HubSpotClient` driven from synchronous code through a blocking portal.

    Attributes:
        client: the async client; only touch it through `call` and `iterate`.
    """

    def __init__(self, portal: BlockingPortal, client: HubSpotClient) -> None:
        self._portal = portal
        self.client = client

    def call(self, fn: Callable[[HubSpotClient], Awaitable[_T]]) -> _T:
        """Run `fn(client)` in the client's event loop and wait for its result.

        Args:
            fn: an async callable taking the client.

        Returns:
            What `fn` returned.

        Raises:
            Whatever `fn` raised (e.g. a `HubSpotError`).
        """

        async def run() -> _T:
            return await fn(self.client)

        return self._portal.call(run)

    def submit(self, fn: Callable[[HubSpotClient], Awaitable[_T]]) -> Future[_T]:
        """Start `fn(client)` in the client's event loop and return at once.

        Lets a job prepare its next piece of work while requests are in flight.

        Args:
            fn: an async callable taking the client.

        Returns:
            A future with what `fn` returned (or raised).
        """

        async def run() -> _T:
            return await fn(self.client)

        return self._portal.start_task_soon(run)

    def iterate(self, fn: Callable[[HubSpotClient], AsyncIterator[_T]]) -> Iterator[_T]:
        """Iterate an async iterator of the client (a paging helper) synchronously.

        Args:
            fn: a callable taking the client and returning an async iterator.

        Yields:
            The iterator's items.
        """
        iterator = fn(self.client)
        while True:
            try:
                item = self._portal.call(iterator.__anext__)
            except StopAsyncIteration:
                return
            yield item


@contextmanager
def blocking_client(
    build: Callable[[httpx.AsyncClient], HubSpotClient],
    *,
    http_factory: Callable[[], httpx.AsyncClient] | None = None,
) -> Iterator[BlockingClient]:
    """Start an event loop thread with a `HubSpotClient` in it.

    Args:
        build: makes the client from the httpx client created in the loop.
        http_factory: makes the httpx client; defaults to one with a 30 s timeout.

    Yields:
        The blocking wrapper; the loop and the httpx client close when the block exits.
    """
    with start_blocking_portal() as portal:

        async def make_http() -> httpx.AsyncClient:
            if http_factory is not None:
                return http_factory()
            return httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)

        http = portal.call(make_http)
        try:
            yield BlockingClient(portal, build(http))
        finally:
            portal.call(http.aclose)
