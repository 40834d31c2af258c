"""Leases on long-running work, and the sweeper that re-starts abandoned work.

A row that describes resumable work (an import, a sync run, a fan-out) mixes in `Leased`.
A job claims it with `claim()` in a short transaction of its own, then does the work in
chunks, each chunk committed together with its checkpoint and a `renew()` that also
proves the job still owns the lease. If the process dies, the lease runs out and the
periodic sweeper enqueues the job again; the new run resumes at the last checkpoint.
Nothing is lost (the checkpoint is committed with the chunk) and nothing is duplicated
(a chunk and its checkpoint commit together or not at all).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Mapped, Session, mapped_column

from spoke.core.clock import utcnow
from spoke.core.db import rowcount, table_of

log = structlog.get_logger("spoke.leases")
ACTIVE_STATES = ("queued", "running")


class Leased:
    """Columns for work that a job holds under a lease."""

    status: Mapped[str] = mapped_column(sa.String(16), default="queued", index=True)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(120), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)


class LeaseLost(Exception):
    """Another worker took over this work (our lease had expired); stop without writing."""


# Statements are built once per table and take their values as parameters: a job renews
# its lease in every chunk it commits (a one-user push send claims, marks and releases in
# three transactions), and a statement built per call was hashed into SQLAlchemy's compiled
# cache per call. (A bound parameter may not be named after a column it sets.)


@functools.cache
def _claim_statement(table: sa.Table) -> sa.Update:
    return (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("lease_pk"),
            table.c.status.in_(ACTIVE_STATES),
            sa.or_(
                table.c.lease_owner.is_(None),
                table.c.lease_expires_at < sa.bindparam("lease_now"),
                table.c.lease_owner == sa.bindparam("lease_by"),
            ),
        )
        .values(
            status="running",
            lease_owner=sa.bindparam("lease_by"),
            lease_expires_at=sa.bindparam("lease_until"),
            attempts=table.c.attempts + 1,
        )
    )


@functools.cache
def _renew_statement(table: sa.Table) -> sa.Update:
    return (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("lease_pk"),
            table.c.lease_owner == sa.bindparam("lease_by"),
            table.c.status == "running",
        )
        .values(lease_expires_at=sa.bindparam("lease_until"))
    )


@functools.cache
def _release_statement(table: sa.Table, also: tuple[str, ...]) -> sa.Update:
    return (
        sa.update(table)
        .where(
            table.c.id == sa.bindparam("lease_pk"), table.c.lease_owner == sa.bindparam("lease_by")
        )
        .values(
            status=sa.bindparam("lease_status"),
            lease_owner=None,
            lease_expires_at=None,
            **{column: sa.bindparam(f"also_{column}") for column in also},
        )
    )


def claim(session: Session, model: type[Leased], pk: str, owner: str, seconds: float) -> bool:
    """Take the lease on one row if it is free, expired, or already ours."""
    now = utcnow()
    claimed = session.execute(
        _claim_statement(table_of(model)),
        {
            "lease_pk": pk,
            "lease_now": now,
            "lease_by": owner,
            "lease_until": now + timedelta(seconds=seconds),
        },
    )
    return rowcount(claimed) == 1


def renew(session: Session, model: type[Leased], pk: str, owner: str, seconds: float) -> None:
    """Extend our lease inside the chunk's transaction; raise if we no longer hold it."""
    table = table_of(model)
    renewed = session.execute(
        _renew_statement(table),
        {"lease_pk": pk, "lease_by": owner, "lease_until": utcnow() + timedelta(seconds=seconds)},
    )
    if rowcount(renewed) != 1:
        raise LeaseLost(f"lease on {table.name}/{pk} is no longer held by {owner}")


def release(
    session: Session,
    model: type[Leased],
    pk: str,
    owner: str,
    status: str,
    also: Mapping[str, Any] | None = None,
) -> None:
    """Give up our lease, setting the final `status` (and the columns in `also`, in the
    same statement); raise if we no longer hold it."""
    table = table_of(model)
    also = also or {}
    released = session.execute(
        _release_statement(table, tuple(sorted(also))),
        {
            "lease_pk": pk,
            "lease_by": owner,
            "lease_status": status,
            **{f"also_{column}": value for column, value in also.items()},
        },
    )
    if rowcount(released) != 1:
        raise LeaseLost(f"lease on {table.name}/{pk} is no longer held by {owner}")


def abandoned(
    session: Session,
    model: type[Leased],
    *,
    grace_seconds: float,
    created_column: str = "created_at",
    limit: int = 500,
) -> Sequence[str]:
    """Ids of work that should be running but no live job holds.

    Queued rows older than the grace period (their message was lost or never sent) and
    running rows whose lease ran out (their worker died).
    """
    now = utcnow()
    table = table_of(model)
    stmt = (
        sa.select(table.c.id)
        .where(
            sa.or_(
                sa.and_(
                    table.c.status == "queued",
                    table.c.lease_owner.is_(None),
                    table.c[created_column] < now - timedelta(seconds=grace_seconds),
                ),
                sa.and_(table.c.status.in_(ACTIVE_STATES), table.c.lease_expires_at < now),
            )
        )
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class Sweepable:
    """A kind of leased work and the job that resumes one of its rows by id."""

    model: type[Leased]
    job_name: str
    id_argument: str


_SWEEPABLES: list[Sweepable] = []


def register_sweepable(model: type[Leased], job_name: str, id_argument: str) -> None:
    if not any(s.job_name == job_name for s in _SWEEPABLES):
        _SWEEPABLES.append(Sweepable(model, job_name, id_argument))


def sweepables() -> Sequence[Sweepable]:
    return tuple(_SWEEPABLES)


def sweep(session: Session, enqueue: Callable[..., None], grace_seconds: float) -> int:
    """Enqueue a job for every abandoned row of every registered kind; returns how many."""
    count = 0
    for kind in _SWEEPABLES:
        # One broken kind (say, a table a newer release adds) must not stop the others from
        # being resumed; the savepoint keeps PostgreSQL's transaction usable after a failure.
        try:
            with session.begin_nested():
                ids = abandoned(session, kind.model, grace_seconds=grace_seconds)
        except Exception:
            log.exception("sweeper.kind_failed", job=kind.job_name)
            continue
        for pk in ids:
            enqueue(kind.job_name, **{kind.id_argument: pk})
            count += 1
    return count
