"""Which process runs a manual sync: spread over the worker processes, not piled on one.

Huey hands a queued job to whichever idle worker thread asks first, and each process has
`jobs.workers` threads, so five runs queued together can all land in one `spoke worker`
while another idles. A run costs CPU for its whole length (a few hundred µs per record at up
to 1,900 records/s) and stays where it starts, so one process can't keep up while the
machine has cores to spare.

Before claiming a run a process compares the runs it holds with its fair share: every run
held under a live lease, over the live consumer processes (`core.workers`). A process at its
share hands the run back to the queue, a little later, for another process's thread to take.
A process holding no run always takes it, so a run never waits for an idle process to exist.
Each process that sees a handed-back run decides again on fresh counts: a process's claim
reaches the database a few milliseconds after it decided, so two processes deciding at the
same moment can both say no, and the second look puts the run right. Which thread picks a
handed-back run is luck of the polls, and the thread that just said no polls soonest, so the
same process may see it several times; once the run has waited `MAX_WAIT_SECONDS` since the
first hand-back it is taken wherever it lands (the counts are hints: a process killed a
moment ago looks alive until its heartbeat goes stale). One run at a time per workspace and
resuming after `kill -9` stay with the lease: a handed-back run is still `queued`, and the
sweeper re-enqueues it if the message is lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from spoke.core import workers
from spoke.core.clock import utcnow
from spoke.core.db import make_session_factory, session_scope
from spoke.sync.models import ContactSyncRun

HAND_BACK_SECONDS = 1.0  # long enough for the other processes to claim what they took
# Past a dead process's heartbeat going stale, so the counts are right by then.
MAX_WAIT_SECONDS = workers.STALE_SECONDS + 5

_held: Counter[str] = Counter()  # runs taken and not finished, by consumer (`worker_id`)
_lock = threading.Lock()


def within_share(mine: int, elsewhere: int, live: int) -> bool:
    """May a process holding `mine` runs take one more, with `elsewhere` runs held by the
    other processes and `live` processes in all?"""
    if mine == 0:
        return True
    total = mine + elsewhere + 1
    share = -(-total // max(1, live))  # the ceiling: someone has to take the remainder
    return mine + 1 <= share


def held_elsewhere(session: Session, worker_id: str) -> int:
    """Runs under a live lease whose owner is not one of `worker_id`'s threads."""
    count = session.scalar(
        sa.select(sa.func.count())
        .select_from(ContactSyncRun)
        .where(
            ContactSyncRun.status == "running",
            ContactSyncRun.lease_expires_at > utcnow(),
            sa.not_(ContactSyncRun.lease_owner.startswith(f"{worker_id}/", autoescape=True)),
        )
    )
    return int(count or 0)


@contextmanager
def placed(
    sessions: sessionmaker[Session], worker_id: str, handed_back_at: float | None
) -> Iterator[bool]:
    """Yields whether this process takes the run (first handed back at `handed_back_at`,
    wall-clock seconds, if ever); while the block runs, it counts as held."""
    waited_out = handed_back_at is not None and time.time() - handed_back_at >= MAX_WAIT_SECONDS
    with _lock:  # threads of one process decide in turn, each seeing the others' takes
        taken = waited_out or _held[worker_id] == 0
        if not taken:
            # A reading session: on SQLite a writer would queue behind the runs' commits.
            readers = make_session_factory(sessions.kw["bind"], read_only=True)
            with session_scope(readers) as session:
                taken = within_share(
                    _held[worker_id],
                    held_elsewhere(session, worker_id),
                    workers.live_workers(session),
                )
        if taken:
            _held[worker_id] += 1
    try:
        yield taken
    finally:
        if taken:
            with _lock:
                _held[worker_id] -= 1


__all__ = ["HAND_BACK_SECONDS", "MAX_WAIT_SECONDS", "held_elsewhere", "placed", "within_share"]
