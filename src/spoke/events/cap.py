"""The monthly completions cap, counted per portal (HubSpot counts per account).

Completions are counted when they are about to be sent, in the same transaction that records
the batch (the row is locked, so two exports on one portal cannot pass the cap together),
and given back when they turn out not to have been sent. What does not fit waits for the
next month, visibly; nothing is dropped.
"""

from __future__ import annotations

import calendar
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from spoke.events.export_models import EventExportUsage

WARN_AT = 0.8


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def _row(session: Session, portal_id: int, month: str) -> EventExportUsage:
    values = {"portal_id": portal_id, "month": month, "count": 0}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(EventExportUsage).values(values).on_conflict_do_nothing())
    row = session.scalar(
        sa.select(EventExportUsage)
        .where(EventExportUsage.portal_id == portal_id, EventExportUsage.month == month)
        .with_for_update()
    )
    assert row is not None
    return row


def reserve(session: Session, portal_id: int, month: str, cap: int, wanted: int) -> int:
    """Count up to `wanted` completions against the month; returns how many fit."""
    if wanted <= 0:
        return 0
    row = _row(session, portal_id, month)
    granted = max(0, min(wanted, cap - row.count))
    if granted:
        row.count = row.count + granted
        session.flush()
    return granted


def give_back(session: Session, portal_id: int, month: str, count: int) -> None:
    if count > 0:
        session.execute(
            sa.update(EventExportUsage)
            .where(EventExportUsage.portal_id == portal_id, EventExportUsage.month == month)
            .values(count=EventExportUsage.count - count)
        )


def used(session: Session, portal_id: int, month: str) -> int:
    return int(
        session.scalar(
            sa.select(EventExportUsage.count).where(
                EventExportUsage.portal_id == portal_id, EventExportUsage.month == month
            )
        )
        or 0
    )


def forecast(count: int, now: datetime) -> int:
    """Usage at the end of `now`'s month if the month's pace so far continues."""
    days = calendar.monthrange(now.year, now.month)[1]
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    elapsed = (now - start).total_seconds()
    if elapsed <= 0:
        return count
    return round(count * days * 86_400 / elapsed)
