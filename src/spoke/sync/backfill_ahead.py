"""Fetch pages ahead of the lane that applies them.

A lane that fetches a page, applies it, then fetches the next waits for HubSpot (150-200 ms
a call) and for the database in turn, so it runs at the sum of the two. `Ahead` fetches on
its own thread, a few pages ahead, so the lane's pace is the slower of the two instead.
Pages still queued when the lane stops (it met the other lane, or failed) are dropped: only
what the lane commits moves its checkpoint, so a resumed run fetches them again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar

_T = TypeVar("_T")

DEPTH = 2
_POLL = 0.1  # how often a fetcher blocked on a full queue checks whether it should stop


class Ahead(Generic[_T]):
    """Calls `fetch` on a thread until it returns None, keeping up to `depth` results."""

    def __init__(self, fetch: Callable[[], _T | None], name: str, depth: int = DEPTH) -> None:
        self._fetch = fetch
        self._queue: queue.Queue[tuple[_T | None, BaseException | None]] = queue.Queue(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Ahead[_T]:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def get(self) -> _T | None:
        """The next result in order; None when `fetch` said there is no more. Re-raises
        what `fetch` raised."""
        item, error = self._queue.get()
        if error is not None:
            raise error
        return item

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._fetch()
                self._put((item, None))
                if item is None:
                    return
        except BaseException as exc:  # handed to the lane, which re-raises it
            self._put((None, exc))

    def _put(self, entry: tuple[_T | None, BaseException | None]) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL)
                return
            except queue.Full:
                continue


__all__ = ["Ahead"]
