"""Local-time delivery: each recipient at a time of day in their own zone. Zones are chosen
so the target time has just passed for some users (they get the push now, through the FCM
emulator) and lies hours ahead for others (they wait, and the notification is parked until
the sweeper finds them due)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from tests.conftest import Tenant
from tests.messaging.support import Fcm, connect_fcm, register, run_fanout, token_for
from tests.users.support import problem

from spoke.core import leases
from spoke.core.db import session_scope
from spoke.messaging.local_delivery import next_local, parse_time_of_day
from spoke.messaging.models import Delivery, Notification


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9:00AM", time(9, 0)),
        ("9:00 pm", time(21, 0)),
        ("12:15AM", time(0, 15)),
        ("12:15PM", time(12, 15)),
        ("21:45", time(21, 45)),
        ("9:45:30", time(9, 45, 30)),
        ("00:00", time(0, 0)),
    ],
)
def test_times_of_day_read_like_onesignal(text: str, expected: time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize("text", ["24:00", "13:00PM", "0:30AM", "9", "9:60", "nine", "9:00XM"])
def test_other_times_of_day_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"time of day|AM/PM"):
        parse_time_of_day(text)


def test_the_next_local_time_comes_round_once_a_day() -> None:
    seoul = ZoneInfo("Asia/Seoul")  # UTC+9
    after = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)  # 10:00 in Seoul
    assert next_local(time(11, 0), seoul, after) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert next_local(time(9, 0), seoul, after) == datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
    # Passed less than a minute ago: now (the send was made just after the target time).
    just = datetime(2026, 3, 1, 1, 0, 40, tzinfo=UTC)
    assert next_local(time(10, 0), seoul, just) == datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    # The same across midnight: 23:59:59 yesterday is 2 s ago at 00:00:01.
    midnight = datetime(2026, 3, 1, 15, 0, 1, tzinfo=UTC)  # 00:00:01 on 2 March in Seoul
    assert next_local(time(23, 59, 59), seoul, midnight) == midnight - timedelta(seconds=2)
    # Across a DST change the wall-clock time holds: 09:00 in Berlin is 08:00 UTC, then 07:00.
    berlin = ZoneInfo("Europe/Berlin")
    before_dst = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert next_local(time(9, 0), berlin, before_dst) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def _zone(offset_hours: int) -> str:
    """An IANA zone `offset_hours` ahead of UTC (Etc/GMT-N is UTC+N)."""
    return f"Etc/GMT{-offset_hours:+d}" if offset_hours else "Etc/GMT"


def _deliveries(tenant: Tenant, notification_id: str) -> dict[str, dict[str, Any]]:
    page = tenant.http.get(f"/v1/notifications/{notification_id}/deliveries").json()
    return {d["external_id"]: d for d in page["data"]}


def _time_passes(tenant: Tenant, notification_id: str, external_id: str) -> None:
    """Make one waiting delivery due, and the parked notification's wake-up time too."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    with session_scope(tenant.backend.runtime.sessions) as session:
        session.execute(
            sa.update(Delivery)
            .where(Delivery.notification_id == notification_id)
            .where(Delivery.external_id == external_id)
            .values(not_before=past)
        )
        session.execute(
            sa.update(Notification)
            .where(Notification.id == notification_id)
            .values(lease_expires_at=past)
        )


def _abandoned(tenant: Tenant) -> list[str]:
    with session_scope(tenant.backend.runtime.sessions) as session:
        return list(leases.abandoned(session, Notification, grace_seconds=60))


def _send(tenant: Tenant, at: str, **extra: Any) -> dict[str, Any]:
    response = tenant.http.post(
        "/v1/notifications",
        json={
            "channel": "push",
            "audience": {"everyone": True},
            "title": "Good morning {{ external_id }}",
            "delayed_option": "timezone",
            "delivery_time_of_day": at,
            **extra,
        },
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_each_user_gets_the_push_at_the_local_time(tenant: Tenant, fcm: Fcm) -> None:
    connect_fcm(tenant, fcm)
    prefix = uuid.uuid4().hex[:8]
    zones = {"utc": _zone(0), "east": _zone(5), "west": _zone(-5), "nowhere": None}
    for name, zone in zones.items():
        assert tenant.http.put(f"/v1/users/{name}", json={"timezone": zone}).is_success
        register(tenant, name, token_for(f"{prefix}-{name}"))
    # The target time passed 2 s ago in UTC: due now there (and for users without a zone),
    # 5 h ahead in UTC-5, and tomorrow (19 h ahead) in UTC+5.
    now = datetime.now(UTC)
    at = (now - timedelta(seconds=2)).strftime("%H:%M:%S")
    accepted = _send(tenant, at)
    result = run_fanout(tenant, accepted["id"])
    assert result["delivery_time_of_day"] == at
    assert result["status"] == "running"  # parked until the others are due
    assert (result["counts"]["sent"], result["counts"]["queued"]) == (2, 2)
    deliveries = _deliveries(tenant, accepted["id"])
    assert {n for n, d in deliveries.items() if d["status"] == "sent"} == {"utc", "nowhere"}
    west = datetime.fromisoformat(deliveries["west"]["not_before"])
    east = datetime.fromisoformat(deliveries["east"]["not_before"])
    assert abs(west - (now + timedelta(hours=5))) < timedelta(minutes=1)
    assert abs(east - (now + timedelta(hours=19))) < timedelta(minutes=1)
    assert fcm.messages(token_for(f"{prefix}-west")) == []
    assert fcm.messages(token_for(f"{prefix}-utc"))[0]["notification"] == {
        "title": "Good morning utc"
    }
    assert accepted["id"] not in _abandoned(tenant)  # the sweeper leaves it until due
    assert run_fanout(tenant, accepted["id"])["counts"]["sent"] == 2  # an early wake-up: no-op

    _time_passes(tenant, accepted["id"], "west")
    assert accepted["id"] in _abandoned(tenant)
    later = run_fanout(tenant, accepted["id"])
    assert (later["status"], later["counts"]["sent"]) == ("running", 3)
    assert len(fcm.messages(token_for(f"{prefix}-west"))) == 1

    _time_passes(tenant, accepted["id"], "east")
    done = run_fanout(tenant, accepted["id"])
    assert (done["status"], done["counts"]["sent"], done["counts"]["queued"]) == ("completed", 4, 0)
    assert done["finished_at"] is not None
    for name in zones:
        assert len(fcm.messages(token_for(f"{prefix}-{name}"))) == 1


def test_users_without_a_zone_follow_the_workspace(tenant: Tenant, fcm: Fcm) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{uuid.uuid4().hex[:8]}-plain")
    register(tenant, "plain", token)
    problem(
        tenant.http.patch("/v1/workspace", json={"timezone": "Mars/Base"}), 422, "invalid_input"
    )
    workspace = tenant.http.patch("/v1/workspace", json={"timezone": _zone(5)})
    assert workspace.json()["timezone"] == "Etc/GMT-5"
    now = datetime.now(UTC)
    accepted = _send(tenant, (now - timedelta(seconds=2)).strftime("%H:%M:%S"))
    result = run_fanout(tenant, accepted["id"])
    assert result["counts"]["sent"] == 0
    waits = datetime.fromisoformat(_deliveries(tenant, accepted["id"])["plain"]["not_before"])
    assert abs(waits - (now + timedelta(hours=19))) < timedelta(minutes=1)
    assert fcm.messages(token) == []
    assert tenant.http.patch("/v1/workspace", json={"timezone": ""}).json()["timezone"] is None


def test_the_ad_night_rule_uses_the_workspace_zone_for_users_without_one(
    tenant: Tenant, fcm: Fcm
) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{uuid.uuid4().hex[:8]}-owl")
    register(tenant, "owl", token)
    night = (23 - datetime.now(UTC).hour + 12) % 24 - 12  # the offset where it is 23:xx now
    tenant.http.patch("/v1/workspace", json={"timezone": _zone(night)})
    response = tenant.http.post(
        "/v1/push/users", json={"user_ids": ["owl"], "title": "Sale", "ad": True}
    )
    result = run_fanout(tenant, response.json()["id"])
    assert result["counts"]["failed"] == 1
    reason = _deliveries(tenant, response.json()["id"])["owl"]["reason"]
    assert reason.startswith("night_time_rule: ")
    assert fcm.messages(token) == []


def test_local_delivery_options_are_checked(tenant: Tenant, fcm: Fcm) -> None:
    connect_fcm(tenant, fcm)
    base = {"channel": "push", "audience": {"everyone": True}, "title": "x"}
    for extra in (
        {"delayed_option": "timezone"},
        {"delivery_time_of_day": "9:00AM"},
        {"delayed_option": "timezone", "delivery_time_of_day": "25:00"},
        {"delayed_option": "last-active", "delivery_time_of_day": "9:00"},
    ):
        problem(tenant.http.post("/v1/notifications", json={**base, **extra}), 422, "invalid_input")
    assert tenant.http.get("/v1/notifications").json()["data"] == []
