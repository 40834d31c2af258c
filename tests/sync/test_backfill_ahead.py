"""Fetching ahead of the lane: results in order, the end, errors, and stopping early."""

from __future__ import annotations

import threading

import pytest

from spoke.sync.backfill_ahead import Ahead


def test_results_come_in_order_then_none() -> None:
    pages = iter([[1, 2], [3], []])

    def fetch() -> list[int] | None:
        return next(pages, None)

    with Ahead(fetch, "test-fetch") as ahead:
        assert [ahead.get(), ahead.get(), ahead.get(), ahead.get()] == [[1, 2], [3], [], None]


def test_a_failed_fetch_is_raised_by_get() -> None:
    calls = iter([[1], None])

    def fetch() -> list[int] | None:
        page = next(calls)
        if page is None:
            raise RuntimeError("HubSpot is down")
        return page

    with Ahead(fetch, "test-fetch") as ahead:
        assert ahead.get() == [1]
        with pytest.raises(RuntimeError, match="HubSpot is down"):
            ahead.get()


def test_leaving_early_stops_the_fetcher_within_its_depth() -> None:
    fetched: list[int] = []
    lock = threading.Lock()

    def fetch() -> int:
        with lock:
            fetched.append(len(fetched))
            return fetched[-1]

    with Ahead(fetch, "test-fetch", depth=2) as ahead:
        assert ahead.get() == 0
    # Stopped: one taken, at most `depth` queued and one more blocked on the full queue.
    count = len(fetched)
    assert count <= 4
    assert len(fetched) == count  # and nothing is fetched after the lane has left
