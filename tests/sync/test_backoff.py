"""Failing records back off: retried by later runs only when due (a minute, doubling, capped
at six hours, with jitter), shown on the records API, and retried on request."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from tests.sync.conftest import Sync, connect_oauth

from spoke.core.db import session_scope
from spoke.sync.links import LONGEST_RETRY, MAX_RETRIES, record_failure, retry_delay
from spoke.sync.models import ContactLink
from spoke.users.models import User


def test_the_delay_doubles_from_a_minute_up_to_six_hours_with_jitter() -> None:
    rng = random.Random(5)
    for failures in range(1, 20):
        expected = min(timedelta(minutes=1) * 2 ** (failures - 1), LONGEST_RETRY)
        delay = retry_delay(failures, rng=rng)
        assert expected * 0.8 <= delay <= min(expected * 1.2, LONGEST_RETRY)
    spread = {retry_delay(3, rng=rng) for _ in range(20)}
    assert len(spread) > 1  # jittered: records that failed together come back apart


def _score_property(sync: Sync, method: str) -> None:
    if method == "DELETE":
        sync.hubspot("DELETE", "/crm/v3/properties/contacts/score")
        return
    sync.hubspot(
        "POST",
        "/crm/v3/properties/contacts",
        {
            "name": "score",
            "label": "Score",
            "type": "number",
            "fieldType": "number",
            "groupName": "contactinformation",
        },
    )


def _record(sync: Sync, external_id: str) -> dict[str, object]:
    records = sync.http.get("/v1/sync/contacts/records", params={"limit": 500}).json()["data"]
    return next(r for r in records if r["external_id"] == external_id)


def _time_passes(sync: Sync, external_id: str) -> None:
    """Make the record's next attempt due, as if its backoff had run out."""
    with session_scope(sync.runtime.sessions) as session:
        user_id = session.scalar(
            sa.select(User.id).where(
                User.workspace_id == sync.tenant.workspace_id, User.external_id == external_id
            )
        )
        session.execute(
            sa.update(ContactLink)
            .where(ContactLink.user_id == user_id)
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_a_failing_record_waits_for_its_backoff_and_can_be_retried_now(sync: Sync) -> None:
    _score_property(sync, "POST")
    assert connect_oauth(sync.tenant, sync.portal_id).status_code == 200
    saved = sync.http.put(
        "/v1/sync/contacts/settings",
        json={"mappings": [{"spoke": "custom.score", "hubspot": "score", "create_field": True}]},
    )
    assert saved.status_code == 200, saved.text
    _score_property(sync, "DELETE")  # behind Spoke's back: records with a score are refused
    sync.http.put("/v1/users/b1", json={"email": "b1@example.com", "custom": {"score": 1}})
    sync.settle()

    first = _record(sync, "b1")
    assert (first["state"], first["failures"]) == ("failing", 1)
    due = datetime.fromisoformat(str(first["next_attempt_at"]))
    assert timedelta(seconds=45) <= due - datetime.now(UTC) <= timedelta(seconds=75)

    writes = sync.writes()
    sync.settle()
    assert sync.writes() == writes  # not due: later runs leave it alone
    assert _record(sync, "b1")["failures"] == 1

    _time_passes(sync, "b1")
    sync.settle()
    second = _record(sync, "b1")
    assert second["failures"] == 2
    due = datetime.fromisoformat(str(second["next_attempt_at"]))
    assert timedelta(seconds=90) <= due - datetime.now(UTC) <= timedelta(seconds=150)

    _score_property(sync, "POST")  # fixed in HubSpot: ask for a retry rather than wait
    retried = sync.http.post("/v1/sync/contacts/records/b1/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "failing"
    sync.settle()
    fixed = _record(sync, "b1")
    assert (fixed["state"], fixed["failures"], fixed["next_attempt_at"]) == ("in_sync", 0, None)
    assert sync.contact_by_email("b1@example.com", "score")["properties"]["score"] == "1"


def test_automatic_retries_stop_after_the_last_one(sync: Sync) -> None:
    sync.http.put("/v1/users/b2", json={"email": "b2@example.com"})
    sync.settle()
    with session_scope(sync.runtime.sessions) as session:
        link = session.scalar(
            sa.select(ContactLink).where(ContactLink.workspace_id == sync.tenant.workspace_id)
        )
        assert link is not None
        for _ in range(MAX_RETRIES):
            record_failure(link, "HubSpot refused it")
        assert link.next_attempt_at is None
    record = _record(sync, "b2")
    assert (record["state"], record["failures"], record["next_attempt_at"]) == (
        "failing",
        MAX_RETRIES,
        None,
    )
    assert sync.http.post("/v1/sync/contacts/records/b2/retry").status_code == 200
    sync.settle()
    assert _record(sync, "b2")["state"] == "in_sync"  # nothing was wrong with it after all


def test_retry_answers_404_for_unknown_and_409_for_healthy_records(sync: Sync) -> None:
    missing = sync.http.post("/v1/sync/contacts/records/nobody/retry")
    assert missing.status_code == 404
    assert missing.json()["code"] == "sync_record_not_found"
    sync.http.put("/v1/users/ok", json={"email": "ok@example.com"})
    sync.settle()
    healthy = sync.http.post("/v1/sync/contacts/records/ok/retry")
    assert healthy.status_code == 409
    assert healthy.json()["code"] == "sync_record_not_failing"


def test_hubspot_outages_do_not_back_off_the_record(sync: Sync) -> None:
    faults = f"/portals/{sync.portal_id}/settings"
    sync.sandbox.admin("PATCH", faults, {"faults": {"error_rate": 1.0, "seed": 3}})
    sync.http.put("/v1/users/o1", json={"email": "o1@example.com", "first_name": "O"})
    sync.run_once()
    down = _record(sync, "o1")
    assert down["state"] == "failing"
    assert datetime.fromisoformat(str(down["next_attempt_at"])) <= datetime.now(UTC)
    sync.sandbox.admin("PATCH", faults, {"faults": {"error_rate": 0.0}})
    sync.settle()  # due at once: the next run sends it, no minute's wait
    assert _record(sync, "o1")["state"] == "in_sync"
    assert sync.contact_by_email("o1@example.com", "firstname")["properties"]["firstname"] == "O"
