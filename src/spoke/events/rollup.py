"""Daily rollups: one completion per user, event and UTC day, for events sent that way.

The scan adds each `daily_rollup` event to its day's open rollup (in the same transaction
that moves the cursor past it), keeping the count and the first and last time. A rollup is
sent once its day is over, as `…_daily` with `count`, `first_at`, `last_at` and `day`.
Events that arrive after their day's rollup went out start a second part for that day, sent
the same way, so a late event adds to HubSpot's total instead of being lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from spoke.core import bulk
from spoke.core.db import table_of
from spoke.events.export_models import EventExportRollup

Group = tuple[str, str, str, str]  # identity key, event type, event name, day


@dataclass(frozen=True)
class Occurrence:
    identity_key: str
    external_id: str | None
    email: str | None
    event_type: str
    event_name: str
    occurred_at: datetime

    @property
    def group(self) -> Group:
        day = self.occurred_at.strftime("%Y-%m-%d")
        return (self.identity_key, self.event_type, self.event_name, day)


def add(session: Session, workspace_id: str, events: Sequence[Occurrence]) -> None:
    """Count `events` into their days' open rollups, opening new parts where needed."""
    if not events:
        return
    totals: dict[Group, list[Any]] = {}
    for event in events:
        entry = totals.setdefault(event.group, [0, event.occurred_at, event.occurred_at, event])
        entry[0] += 1
        entry[1] = min(entry[1], event.occurred_at)
        entry[2] = max(entry[2], event.occurred_at)
    keys = sorted({g[0] for g in totals})
    days = sorted({g[3] for g in totals})
    latest: dict[Group, EventExportRollup] = {}
    for part in range(0, len(keys), 1000):
        for row in session.scalars(
            sa.select(EventExportRollup).where(
                EventExportRollup.workspace_id == workspace_id,
                EventExportRollup.identity_key.in_(keys[part : part + 1000]),
                EventExportRollup.day.in_(days),
            )
        ):
            group = (row.identity_key, row.event_type, row.event_name, row.day)
            if group in totals and (group not in latest or row.part > latest[group].part):
                latest[group] = row
    updates, inserts = [], []
    for group, (count, first, last, sample) in totals.items():
        open_row = latest.get(group)
        if open_row is not None and open_row.state == "open":
            row = open_row
            updates.append(
                {
                    "id": row.id,
                    "count": row.count + count,
                    "first_at": min(row.first_at, first),
                    "last_at": max(row.last_at, last),
                }
            )
            continue
        inserts.append(
            {
                "workspace_id": workspace_id,
                "identity_key": group[0],
                "external_id": sample.external_id,
                "email": sample.email,
                "event_type": group[1],
                "event_name": group[2],
                "day": group[3],
                "part": (open_row.part + 1) if open_row is not None else 1,
                "count": count,
                "first_at": first,
                "last_at": last,
                "state": "open",
                "reason": None,
                "detail": None,
            }
        )
    table = table_of(EventExportRollup)
    bulk.update(session, table, ["id"], updates)
    bulk.insert(session, table, inserts)


def settle(
    session: Session,
    sent: Sequence[int],
    waiting: dict[int, tuple[str, str | None]],
    rejected: dict[int, tuple[str, str | None]],
) -> None:
    """Record a batch of rollups' outcome: sent, back to open (waiting, with why), rejected."""
    table = table_of(EventExportRollup)
    rows: list[dict[str, Any]] = [
        {"id": i, "state": "sent", "reason": None, "detail": None} for i in sent
    ]
    rows += [{"id": i, "state": "open", "reason": r, "detail": d} for i, (r, d) in waiting.items()]
    rows += [
        {"id": i, "state": "rejected", "reason": r, "detail": d} for i, (r, d) in rejected.items()
    ]
    bulk.update(session, table, ["id"], rows)
