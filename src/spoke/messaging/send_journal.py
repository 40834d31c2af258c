"""What a running fan-out is sending, committed the instant before it leaves.

A delivery is `queued` until its first request is about to be written. Then:

    queued ──mark──▶ sending ──answer──▶ sent | failed
                        │ ▲
     refused (retry) ───┘ └── the retry's mark

The mark (`status = sending`, `send_attempt = <lease owner>`) is committed in a short
transaction on the event loop's own thread, and the requests it covers are written right
after the commit returns, before the loop runs anything else: a `sending` row from a dead
attempt was written to the provider, except in the window between that commit and the
last of its writes (~0.1 ms, up to a few ms on a loaded machine). Outcomes, and refusals
that put a delivery back to `queued` while it waits for a retry, ride on the same
transactions. Transactions are grouped: everything that became ready within `interval`
seconds goes in one, which also renews the lease, so a worker that lost its lease marks and
records nothing. The wait between transactions grows with how long the last one took, so
they never take more than about a fifth of the loop.

`resolve_unknown` is what a resumed run does with `sending` rows of a dead attempt, per
channel (`AfterCrash`). Push is sent again: a device shows one notification per delivery's
collapse identifier, so the copy it may already hold is replaced, and the window above
loses nothing. Where the provider can be asked (Twilio lists the messages it took), the run
asks it and `settle_stale` records the answers: what arrived is `sent` with the reason
`confirmed_after_crash`, what didn't is `queued` again and sent. An SMTP server can't be
asked and a second email is a second email, so those count as `sent` with the reason
`outcome_unknown_after_crash`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from spoke.core import bulk, leases
from spoke.core.clock import utcnow
from spoke.core.db import rowcount, table_of
from spoke.messaging.models import Delivery, Notification, Subscription

OUTCOME_UNKNOWN = "outcome_unknown_after_crash"
OUTCOME_CONFIRMED = "confirmed_after_crash"
_MAX_INTERVAL = 0.05

_Waiter = tuple[Callable[[], None], "asyncio.Future[None]"]


# Core statements on the table, built once: they run on the event loop, where the ORM's
# bookkeeping, and hashing a fresh statement into the compiled cache, were a measurable share.
_DELIVERIES = table_of(Delivery)
_MARK = (
    sa.update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id.in_(sa.bindparam("ids", expanding=True)),
        _DELIVERIES.c.status == "queued",
    )
    .values(status="sending", send_attempt=sa.bindparam("attempt"))
)
_UNMARK = (
    sa.update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id.in_(sa.bindparam("ids", expanding=True)),
        _DELIVERIES.c.status == "sending",
    )
    .values(status="queued")
)


class DeliveriesChanged(leases.LeaseLost):
    """A delivery about to be marked was no longer `queued`: someone else is sending."""


def _stale(notification_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(Delivery.notification_id == notification_id, Delivery.status == "sending")


# What becomes of the deliveries a dead run left `sending` (its requests were written, or
# were about to be: see the fan-out's module doc):
# - "resend": queued and sent again. Push: each delivery carries its own collapse identifier
#   (Android notification tag, APNs collapse id), so a second copy replaces the first on
#   the device, which shows one notification, and none is lost.
# - "confirm": left for the provider to say which it took (`settle_stale`). SMS: Twilio lists
#   its messages.
# - "settle": sent with an unknown outcome. Email: an SMTP server can't be asked, and a
#   second copy is a second email in the inbox.
AfterCrash = Literal["resend", "confirm", "settle"]


def resolve_unknown(session: Session, notification_id: str, owner: str, *, then: AfterCrash) -> int:
    """Deal with what a dead attempt left `sending`; returns how many rows it left.

    Rows without `send_attempt` were claimed by a release that marked whole batches before
    sending; like that release, this one sends them again."""
    stale = _stale(notification_id)
    of_dead_run = sa.and_(stale, Delivery.send_attempt.is_not(None), Delivery.send_attempt != owner)
    if then == "settle":
        left = rowcount(
            session.execute(
                sa.update(Delivery)
                .where(of_dead_run)
                .values(status="sent", reason=OUTCOME_UNKNOWN, sent_at=utcnow())
            )
        )
    elif then == "resend":
        left = rowcount(
            session.execute(
                sa.update(Delivery).where(of_dead_run).values(status="queued", send_attempt=None)
            )
        )
    else:
        left = (
            session.scalar(sa.select(sa.func.count()).select_from(Delivery).where(of_dead_run)) or 0
        )
    session.execute(
        sa.update(Delivery).where(stale, Delivery.send_attempt.is_(None)).values(status="queued")
    )
    return left


def settle_stale(
    session: Session,
    notification_id: str,
    confirmed: list[dict[str, Any]],
    not_received: list[int],
    unknown: list[int],
) -> None:
    """Record what the provider said of a dead attempt's `sending` rows: `confirmed` are
    outcome rows (as `bulk.update` takes them), `not_received` go back to `queued`, and
    `unknown` (the provider couldn't tell) are settled like `resolve_unknown` does."""
    stale = _stale(notification_id)
    bulk.update(session, _DELIVERIES, ["id"], confirmed)
    if not_received:
        session.execute(
            sa.update(Delivery)
            .where(stale, Delivery.id.in_(not_received))
            .values(status="queued", send_attempt=None)
        )
    if unknown:
        session.execute(
            sa.update(Delivery)
            .where(stale, Delivery.id.in_(unknown))
            .values(status="sent", reason=OUTCOME_UNKNOWN, sent_at=utcnow())
        )


class SendJournal:
    """Group-commits marks, un-marks and outcomes for one notification under its lease."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        notification_id: str,
        owner: str,
        *,
        lease_seconds: float,
        interval: float,
    ) -> None:
        self._sessions = sessions
        self._notification_id = notification_id
        self._owner = owner
        self._lease_seconds = lease_seconds
        self._interval = interval
        self._marked: set[int] = set()  # committed `sending` by this attempt
        self._waiting: dict[int, list[_Waiter]] = {}  # to mark, then write
        self._unmark: set[int] = set()  # refused: back to `queued` at the next commit
        self._outcomes: list[dict[str, Any]] = []
        self._gone: list[dict[str, Any]] = []
        self._handle: asyncio.Handle | None = None
        self._last_commit = 0.0
        self._last_duration = 0.0
        self._failure: Exception | None = None
        self.first_commit = asyncio.Event()

    async def write(self, delivery_id: int, send: Callable[[], None]) -> None:
        """Mark the delivery `sending` (if it isn't), then call `send()` at once."""
        if self._failure is not None:
            raise self._failure
        if delivery_id in self._marked:
            self._unmark.discard(delivery_id)  # a retry: the row is still `sending`
            send()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(delivery_id, []).append((send, future))
        self._schedule()
        await future

    def refused(self, delivery_id: int) -> None:
        """Nothing of the delivery was taken and a retry will follow: if this run dies
        before it, the delivery must be sent again, not settled as unknown."""
        if delivery_id in self._marked:
            self._unmark.add(delivery_id)
            self._schedule()

    def outcome(self, delivery_id: int, row: dict[str, Any], gone: list[dict[str, Any]]) -> None:
        """Record a delivery's result (`row` has every column `bulk.update` sets)."""
        self._marked.discard(delivery_id)
        self._unmark.discard(delivery_id)
        self._outcomes.append(row)
        self._gone.extend(gone)
        self._schedule()

    async def close(self, final: Callable[[Session], None] | None = None) -> None:
        """Commit what is left; raise what stopped the journal, if anything did.

        `final(session)` runs last in that transaction (finishing the notification there
        saves a transaction per send), and only if nothing stopped the journal before. It
        must end or park the lease, which proves the lease was still ours: that transaction
        doesn't renew it."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        final = final if self._failure is None else None
        if final is not None or self._waiting or self._unmark or self._outcomes or self._gone:
            self._commit(final)
        if self._failure is not None:
            raise self._failure

    def _schedule(self) -> None:
        if self._handle is not None or self._failure is not None:
            return
        loop = asyncio.get_running_loop()
        # A commit blocks the loop (on purpose, see `_commit`): wait at least 4 times as
        # long as the last one took before the next, so commits stay under a fifth of the
        # loop's time however slow the database is, without delaying a lone first mark.
        interval = max(self._interval, min(_MAX_INTERVAL, 4 * self._last_duration))
        delay = self._last_commit + interval - loop.time()
        self._handle = (
            loop.call_later(delay, self._commit) if delay > 0 else loop.call_soon(self._commit)
        )

    def _commit(self, final: Callable[[Session], None] | None = None) -> None:
        """One transaction, on the loop's thread on purpose: the writes it releases follow
        the COMMIT with nothing in between, which is what keeps the unknown window small.

        Nothing in between includes closing the session: that hands the connection back to
        the pool, whose reset is a database call that lets other threads of the process run
        first; under load that alone kept marked rows unwritten for milliseconds."""
        self._handle = None
        started = time.perf_counter()
        waiting, self._waiting = self._waiting, {}
        unmark, self._unmark = self._unmark, set()
        outcomes, self._outcomes = self._outcomes, []
        gone, self._gone = self._gone, []
        session = self._sessions()
        try:
            try:
                self._write(session, waiting, unmark, outcomes, gone, final)
                session.commit()
            except Exception as exc:
                session.rollback()
                self._failure = exc
                self.first_commit.set()
                for waiters in waiting.values():
                    for _send, future in waiters:
                        if not future.done():
                            future.set_exception(exc)
                return
            self._release(waiting)
        finally:
            session.close()
        self._last_commit = asyncio.get_running_loop().time()
        self._last_duration = time.perf_counter() - started
        self.first_commit.set()
        self._marked.difference_update(unmark)
        self._marked.update(waiting)

    def _write(
        self,
        session: Session,
        waiting: dict[int, list[_Waiter]],
        unmark: set[int],
        outcomes: list[dict[str, Any]],
        gone: list[dict[str, Any]],
        final: Callable[[Session], None] | None,
    ) -> None:
        if final is None:  # else `final` ends the lease, proving it was still ours
            leases.renew(
                session, Notification, self._notification_id, self._owner, self._lease_seconds
            )
        if waiting:
            marking = {"ids": list(waiting), "attempt": self._owner}
            marked = rowcount(session.execute(_MARK, marking))
            if marked != len(waiting):
                raise DeliveriesChanged(
                    f"{len(waiting) - marked} deliveries of {self._notification_id} "
                    "were no longer queued"
                )
        if unmark:
            session.execute(_UNMARK, {"ids": list(unmark)})
        bulk.update(session, _DELIVERIES, ["id"], outcomes)
        bulk.update(session, table_of(Subscription), ["id"], gone)
        if final is not None:
            final(session)

    @staticmethod
    def _release(waiting: dict[int, list[_Waiter]]) -> None:
        """Write what the commit just marked."""
        for waiters in waiting.values():
            for send, future in waiters:
                if future.done():  # its sender was cancelled meanwhile
                    continue
                try:
                    send()
                except Exception as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(None)


class DeliveryGate:
    """A `SendGate` for the messages of one delivery (one per device)."""

    def __init__(self, journal: SendJournal, delivery_id: int) -> None:
        self._journal = journal
        self._delivery_id = delivery_id
        self._writes = 0
        self._refusals = 0

    async def write(self, send: Callable[[], None]) -> None:
        self._writes += 1
        await self._journal.write(self._delivery_id, send)

    def refused(self) -> None:
        # Only when every write so far was refused: if one device may have got it, a resumed
        # run must not send to all of them again.
        self._refusals += 1
        if self._refusals == self._writes:
            self._journal.refused(self._delivery_id)
