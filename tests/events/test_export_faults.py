"""Exactly-once against a failing HubSpot: a batch whose answer is lost is read back before
anything is resent, in the run and after a run that stopped. The sandbox counts every
completion it receives, duplicates included, so its uuid de-duplication cannot hide a resend.
Also: the monthly cap is respected and visible."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from tests.events.conftest import Export

from spoke.core.db import session_scope
from spoke.events.export_models import EventExportBatch
from spoke.events.sender import UnknownOutcome

EVENTS = 1_200


def _load(export: Export, count: int, users: int = 20) -> None:
    for user in range(users):
        if export.contact_id(f"user{user}@example.com") is None:
            export.create_contact(f"user{user}@example.com")
    for start in range(0, count, 1000):
        export.ingest(
            *[
                {"type": "track", "name": "Tick", "email": f"user{i % users}@example.com"}
                for i in range(start, min(count, start + 1000))
            ]
        )
    export.core("track", "Tick")


def _unsettled_batches(export: Export) -> int:
    with session_scope(export.runtime.sessions) as session:
        return int(
            session.scalar(
                sa.select(sa.func.count()).where(
                    EventExportBatch.workspace_id == export.tenant.workspace_id
                )
            )
            or 0
        )


class TestUnknownOutcomes:
    def test_lost_answers_and_errors_never_duplicate(self, export: Export) -> None:
        _load(export, EVENTS)
        export.faults(error_rate=0.2, error_after_processing_rate=0.3, seed=7)
        export.configure()
        runs = []
        while len(runs) < 10:
            try:
                runs.append(export.run(chunk=300))
            except Exception:  # a run that gave up is queued again, as the job retry does
                runs.append(None)
                continue
            if runs[-1].status == "succeeded":
                break
        export.faults(error_rate=0.0, error_after_processing_rate=0.0)
        assert runs[-1] is not None
        assert runs[-1].status == "succeeded"
        assert sum(r.resolved for r in runs if r is not None) > 0
        assert export.completions()["received"] == EVENTS
        assert export.completions()["duplicate_uuids"] == 0
        assert export.completions()["distinct_uuids"] == EVENTS
        assert export.status()["sent"] == EVENTS
        assert _unsettled_batches(export) == 0

    def test_a_stopped_run_is_resolved_before_anything_is_resent(self, export: Export) -> None:
        _load(export, 20)
        export.configure()
        assert export.run().sent == 20  # contacts found, definition created
        _load(export, EVENTS)
        # Every answer is lost, the read-back too: the run gives up with its batches recorded.
        export.faults(error_after_processing_rate=1.0, seed=1)
        with pytest.raises(UnknownOutcome):
            export.run(chunk=EVENTS)
        stopped = export.status()["last_run"]
        assert stopped["status"] == "queued"
        assert stopped["error"].startswith("UnknownOutcome")
        assert _unsettled_batches(export) == 3  # 1,200 events in batches of 500
        assert export.completions()["received"] == 20 + EVENTS  # each batch went out once

        export.faults(error_after_processing_rate=0.0)
        run = export.run(chunk=EVENTS)
        assert (run.status, run.resolved, run.sent) == ("succeeded", 3, EVENTS)
        assert export.completions() == {
            "received": 20 + EVENTS,
            "duplicate_uuids": 0,
            "distinct_uuids": 20 + EVENTS,
            "month_count": 20 + EVENTS,
        }
        assert export.status()["sent"] == 20 + EVENTS
        assert _unsettled_batches(export) == 0


class TestMonthlyCap:
    def test_nothing_is_sent_past_the_cap_and_the_rest_waits(self, export: Export) -> None:
        _load(export, 10, users=2)
        export.configure(monthly_cap=6)
        run = export.run()
        assert (run.sent, run.waiting) == (6, 4)
        status = export.status()
        assert status["waiting"] == {"total": 4, "by_reason": {"cap": 4}}
        cap = status["cap"]
        assert (cap["used"], cap["cap"], cap["remaining"]) == (6, 6, 0)
        assert cap["warning"] is True
        assert cap["reached"] is True
        assert cap["forecast"] >= 6
        assert export.completions()["received"] == 6

        assert export.run().sent == 0  # still no room: the waiting events stay

        export.configure(monthly_cap=100)
        assert export.run().sent == 4
        status = export.status()
        assert status["waiting"]["total"] == 0
        assert (status["cap"]["used"], status["cap"]["warning"]) == (10, False)
        assert export.completions()["received"] == 10
