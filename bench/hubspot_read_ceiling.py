"""How fast can any client read a portal's contacts? The ceiling HubSpot → Spoke is held to.

    .venv/bin/python -m bench.hubspot_read_ceiling [--records 100000] [--seconds 30]
                                                   [--search-chains 2] [--search-rate 4.5]

One sandbox portal with the benchmark's limits (190 requests per 10 s, search 5 per s,
150 ms ± 50 ms per call), seeded with N contacts, read by a bare client that does nothing
with what it reads: one chain of list pages (100 per page, each cursor from the previous
answer) from the lowest id up, and `--search-chains` chains of searches (200 per page,
`hs_object_id` descending, each below the previous answer) from the top and from evenly
spaced ids below it, paced just under the search limit (`--search-rate`). The chains read
disjoint ranges for `--seconds` (N must be large enough that they don't meet), so the sum
of their rates is the most the API's shape lets through: what
`bench.sync_backfill --direction to_spoke` is compared with.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench._harness import hubspot_sandbox_process
from bench.sync_backfill import CEILING, _admin, new_portal, served_429, throttle

# The sandbox counts a search when it arrives, after the 150 ± 50 ms latency, in a rolling
# second: calls started 200 ms apart can land 100 ms apart, so 5 a second draws 429s.
SEARCH_PER_SECOND = 4.5
PROPERTIES = ["email", "firstname", "lastname", "phone", "country", "industry"]


class Pace:
    """Starts at most `per_second` calls a second, shared by the threads that use it."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            start = max(self._next, time.monotonic())
            self._next = start + self._gap
        time.sleep(max(0.0, start - time.monotonic()))


def list_chain(http: httpx.Client, until: float, read: list[int]) -> None:
    after: str | None = None
    while time.monotonic() < until:
        params = {"limit": "100", "properties": ",".join(PROPERTIES)}
        if after:
            params["after"] = after
        page = http.get("/crm/v3/objects/contacts", params=params).raise_for_status().json()
        read.append(len(page["results"]))
        after = (page.get("paging") or {}).get("next", {}).get("after")
        if after is None:
            return


def search_chain(http: httpx.Client, below: int, pace: Pace, until: float, read: list[int]) -> None:
    while time.monotonic() < until:
        pace.wait()
        body = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": "hs_object_id", "operator": "LT", "value": str(below)}
                    ]
                }
            ],
            "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
            "properties": PROPERTIES,
            "limit": 200,
        }
        response = http.post("/crm/v3/objects/contacts/search", json=body)
        if response.status_code == 429:  # counted and printed; try the same page again
            time.sleep(1.0)
            continue
        answer = response.raise_for_status().json()
        found = [int(c["id"]) for c in answer["results"]]
        read.append(len(found))
        if not found:
            return
        below = min(found)


def bench(records: int, seconds: float, search_chains: int, search_rate: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        hubspot, _sandbox = stack.enter_context(hubspot_sandbox_process(Path(tmp)))
        portal = new_portal(hubspot, "ceiling")
        portal_id = portal["portal_id"]
        _admin(hubspot, "POST", f"/portals/{portal_id}/seed", {"contacts": records, "seed": 0})
        throttle(hubspot, portal_id)
        http = stack.enter_context(
            httpx.Client(
                base_url=hubspot,
                headers={"Authorization": f"Bearer {portal['private_app_token']}"},
                timeout=60,
            )
        )
        first = http.get("/crm/v3/objects/contacts", params={"limit": 1}).json()["results"][0]
        top_body = {
            "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
            "limit": 1,
        }
        top = int(
            http.post("/crm/v3/objects/contacts/search", json=top_body).json()["results"][0]["id"]
        )
        low = int(first["id"])
        time.sleep(1.0)  # the two set-up calls out of the search budget
        pace = Pace(search_rate)
        listed: list[int] = []
        searched: list[list[int]] = [[] for _ in range(search_chains)]
        began = time.monotonic()
        until = began + seconds
        # Search chains start at the top and at evenly spaced ids below it, over the upper
        # two thirds; the list chain reads up from the bottom.
        starts = [
            top + 1 - n * (top - low) * 2 // (3 * search_chains) for n in range(search_chains)
        ]
        threads = [threading.Thread(target=list_chain, args=(http, until, listed))]
        threads += [
            threading.Thread(target=search_chain, args=(http, start, pace, until, found))
            for start, found in zip(starts, searched, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - began
        list_rate = sum(listed) / wall
        search_rate = sum(map(sum, searched)) / wall
        calls = len(listed) + sum(map(len, searched))
        print(
            f"bare client, {records:,} contacts, {wall:.1f} s: list chain {list_rate:,.0f}/s "
            f"({len(listed) / wall:.1f} pages/s), {search_chains} search chain(s) "
            f"{search_rate:,.0f}/s ({sum(map(len, searched)) / wall:.1f} searches/s); "
            f"together {list_rate + search_rate:,.0f} records/s = "
            f"{(list_rate + search_rate) / CEILING:.0%} of {CEILING:,.0f}/s; "
            f"{calls / wall:.1f} calls/s; 429s served: {served_429(hubspot, portal_id)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--search-chains", type=int, default=2)
    parser.add_argument("--search-rate", type=float, default=SEARCH_PER_SECOND)
    args = parser.parse_args()
    bench(args.records, args.seconds, args.search_chains, args.search_rate)


if __name__ == "__main__":
    main()
