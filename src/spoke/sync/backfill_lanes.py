"""Manual sync HubSpot → Spoke from both ends at once.

HubSpot's list cursor is opaque, so one chain of list pages is bound by latency (100
contacts per round trip, ~650/s at 150 ms), far below the portal's budget of 1,900/s. Search
has a budget of its own (5 requests/s, 200 per page) and can filter on `hs_object_id`, so a
second lane walks down from the highest id while the list lane walks up from the lowest:

- list lane: `GET /contacts?after=…` pages, ascending ids;
- search lane: `hs_object_id < floor AND > list_max`, sorted descending, 200 at a time; each
  answer lowers the floor (no offsets, so the 10,000-result cap never applies).

Each lane commits its page together with its own checkpoint keys under the run's row lock,
and drops the contacts the other lane already committed (`id ≥ floor` for the list lane,
`id ≤ list_max` for the search lane), so no contact is applied or counted twice — also after
`kill -9`, when each lane resumes from its keys. The run ends when the lanes meet. Contacts
created while it runs get ids above the search lane's start; real time carries those.

Each lane fetches ahead of what it applies (`backfill_ahead.Ahead`): the list lane's next
cursor and the search lane's next floor come from the previous answer, not from its commit,
so HubSpot's round trips and the database's writes overlap instead of adding up.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from spoke.core import leases
from spoke.core.db import session_scope
from spoke.core.table_stats import GrowingTables
from spoke.hubspot import (
    BlockingClient,
    Filter,
    FilterGroup,
    FilterOperator,
    ObjectPage,
    SearchRequest,
    SimplePublicObject,
    Sort,
    SortDirection,
)
from spoke.sync.backfill_ahead import Ahead
from spoke.sync.backfill_to_spoke import apply_page
from spoke.sync.models import ContactSyncRun
from spoke.sync.settings import effective, ensure_row

LIST_PAGE = 100
SEARCH_PAGE = 200


@dataclass(frozen=True)
class LaneJob:
    sessions: sessionmaker[Session]
    hs: BlockingClient
    run_id: str
    owner: str
    lease_seconds: float
    properties: list[str]
    grown: GrowingTables  # the tables the run fills, analyzed as they grow


@dataclass
class _Shared:
    """What each lane's fetcher needs to know of the other lane's committed progress."""

    list_max: int = 0
    list_done: bool = False


def run_both_lanes(job: LaneJob) -> None:
    shared = _Shared()
    with ThreadPoolExecutor(2, thread_name_prefix="sync-lane") as pool:
        lanes = [pool.submit(_list_lane, job, shared), pool.submit(_search_lane, job, shared)]
        finished, _ = wait(lanes, return_when=FIRST_EXCEPTION)
        for future in finished:
            future.result()  # one lane failing stops the run; the job retries it
        for future in lanes:
            future.result()


def _list_lane(job: LaneJob, shared: _Shared) -> None:
    checkpoint = _checkpoint(job)
    if checkpoint.get("list_done"):
        shared.list_done = True
        return
    after: str | None = checkpoint.get("after")
    last = False

    def fetch() -> ObjectPage | None:
        nonlocal after, last
        if last:
            return None  # never past the last page: `after=None` would start over
        page = _list_page(job, after)
        after, last = page.next_after, page.next_after is None
        return page

    try:
        with Ahead(fetch, "sync-list-fetch") as pages:
            while (page := pages.get()) is not None:
                checkpoint = _commit(job, page.results, partial(_keep_for_list, page.next_after))
                shared.list_max = max(shared.list_max, checkpoint.get("list_max", 0))
                if checkpoint.get("list_done"):
                    return
    finally:
        shared.list_done = True


def _list_page(job: LaneJob, after: str | None) -> ObjectPage:
    return job.hs.call(
        lambda c: c.contacts.list(limit=LIST_PAGE, after=after, properties=job.properties)
    )


def _keep_for_list(
    after: str | None, checkpoint: dict[str, Any], ids: list[int]
) -> tuple[list[int], dict[str, Any]]:
    floor = checkpoint.get("floor")
    kept = [i for i in ids if floor is None or i < floor]
    met = len(kept) < len(ids) or after is None  # reached the search lane, or the end
    update: dict[str, Any] = {"after": after, "list_done": met}
    if kept:
        update["list_max"] = max(checkpoint.get("list_max", 0), *kept)
    return kept, update


def _search_lane(job: LaneJob, shared: _Shared) -> None:
    checkpoint = _checkpoint(job)
    if checkpoint.get("search_done") or checkpoint.get("list_done"):
        return
    shared.list_max = max(shared.list_max, checkpoint.get("list_max", 0))
    floor: int | None = checkpoint.get("floor")
    last = False

    def fetch() -> list[SimplePublicObject] | None:
        # The next query starts below the previous answer, committed or not: the lane
        # applies answers in order, and `_keep_for_search` drops what the list lane took.
        nonlocal floor, last
        if last or shared.list_done:
            return None
        found = _search_page(job, shared.list_max, floor)
        if found:
            floor = min(int(c.id) for c in found)
        last = not found or (floor is not None and floor <= shared.list_max)
        return found

    with Ahead(fetch, "sync-search-fetch") as answers:
        while (found := answers.get()) is not None:
            checkpoint = _commit(job, found, _keep_for_search)
            if checkpoint.get("search_done") or checkpoint.get("list_done"):
                return


def _search_page(job: LaneJob, list_max: int, floor: int | None) -> list[SimplePublicObject]:
    filters = [
        Filter(property_name="hs_object_id", operator=FilterOperator.GT, value=str(list_max))
    ]
    if floor is not None:
        filters.append(
            Filter(property_name="hs_object_id", operator=FilterOperator.LT, value=str(floor))
        )
    request = SearchRequest(
        filter_groups=[FilterGroup(filters=filters)],
        sorts=[Sort(property_name="hs_object_id", direction=SortDirection.DESCENDING)],
        properties=job.properties,
        limit=SEARCH_PAGE,
    )
    return job.hs.call(lambda c: c.contacts.search(request)).results


def _keep_for_search(
    checkpoint: dict[str, Any], ids: list[int]
) -> tuple[list[int], dict[str, Any]]:
    list_max = checkpoint.get("list_max", 0)
    kept = [i for i in ids if i > list_max]
    if not kept:
        return [], {"search_done": True}  # nothing left between the list lane and us
    floor = checkpoint.get("floor")
    return kept, {"floor": min(kept) if floor is None else min(floor, *kept)}


def _checkpoint(job: LaneJob) -> dict[str, Any]:
    with session_scope(job.sessions) as session:
        run = session.get(ContactSyncRun, job.run_id)
        assert run is not None
        return dict(run.checkpoint or {})


Keep = Callable[[dict[str, Any], list[int]], tuple[list[int], dict[str, Any]]]


def _commit(job: LaneJob, contacts: list[SimplePublicObject], keep: Keep) -> dict[str, Any]:
    """Apply the contacts the other lane has not taken, with this lane's checkpoint keys."""
    with session_scope(job.sessions) as session:
        leases.renew(session, ContactSyncRun, job.run_id, job.owner, job.lease_seconds)
        run = session.scalar(
            sa.select(ContactSyncRun).where(ContactSyncRun.id == job.run_id).with_for_update()
        )
        assert run is not None
        checkpoint = dict(run.checkpoint or {})
        kept, update = keep(checkpoint, [int(c.id) for c in contacts])
        wanted = set(kept)
        mine = [c for c in contacts if int(c.id) in wanted]
        if mine:
            eff = effective(session, ensure_row(session, run.workspace_id))
            counts = apply_page(session, run, eff, mine)
            counts.add_to(run)
        checkpoint.update(update)
        # The list lane ends where the search lane has been (or at the end of the list):
        # then every contact is taken. A search answer still in flight only adds contacts
        # created since, above everything the list saw.
        checkpoint["finished"] = bool(checkpoint.get("list_done"))
        run.checkpoint = checkpoint
    job.grown.wrote(len(mine))
    return checkpoint


__all__ = ["LaneJob", "run_both_lanes"]
