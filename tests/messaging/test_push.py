"""Push sends end to end: the API accepts, the fan-out job sends through the FCM emulator
over loopback HTTP, and the history shows counts, rates and who could not be reached."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.conftest import Tenant
from tests.messaging.support import Fcm, connect_fcm, register, run_fanout, token_for
from tests.users.support import problem

from spoke.core import leases
from spoke.core.db import session_scope
from spoke.messaging import fanout
from spoke.messaging.models import Notification
from spoke.messaging.providers.fcm import RetryPolicy


@pytest.fixture
def prefix() -> str:
    return uuid.uuid4().hex[:8]


def _send_users(tenant: Tenant, user_ids: list[str], **content: Any) -> dict[str, Any]:
    response = tenant.http.post(
        "/v1/push/users", json={"user_ids": user_ids, "title": "Hello", "body": "World", **content}
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


def test_same_content_reaches_every_device_once(tenant: Tenant, fcm: Fcm, prefix: str) -> None:
    connect_fcm(tenant, fcm)
    phone, tablet, other = (token_for(f"{prefix}-{n}") for n in ("phone", "tablet", "other"))
    register(tenant, "ann", phone)
    register(tenant, "ann", tablet)
    register(tenant, "bob", other)
    accepted = _send_users(
        tenant, ["ann", "bob", "ann"], image_url="https://x.example/i.png", data={"deal": "7"}
    )
    assert accepted["recipients"] == 2
    assert accepted["status"] == "queued"
    assert accepted["request_group_id"] == accepted["id"]
    result = run_fanout(tenant, accepted["id"])
    assert result["status"] == "completed"
    counts = result["counts"]
    assert (counts["recipients"], counts["sent"], counts["failed"], counts["queued"]) == (
        2,
        2,
        0,
        0,
    )
    assert counts["send_rate"] == 1.0
    for token in (phone, tablet, other):
        (received,) = fcm.messages(token)
        assert received["notification"] == {
            "title": "Hello",
            "body": "World",
            "image": "https://x.example/i.png",
        }
        assert received["data"]["deal"] == "7"
        assert received["data"]["spoke_notification_id"] == accepted["id"]
    assert fcm.messages(phone)[0]["data"]["spoke_user_id"] == "ann"
    deliveries = tenant.http.get(f"/v1/notifications/{accepted['id']}/deliveries").json()
    assert {(d["external_id"], d["status"], d["devices_sent"]) for d in deliveries["data"]} == {
        ("ann", "sent", 2),
        ("bob", "sent", 1),
    }
    run_fanout(tenant, accepted["id"])  # running the job again sends nothing
    assert len(fcm.messages(phone)) == 1


def test_unreachable_users_are_reported(tenant: Tenant, fcm: Fcm, prefix: str) -> None:
    connect_fcm(tenant, fcm)
    register(tenant, "ann", token_for(f"{prefix}-a"))
    assert tenant.http.put("/v1/users/no-device", json={}).status_code == 201
    accepted = _send_users(tenant, ["ann", "no-device", "ghost"])
    result = run_fanout(tenant, accepted["id"])
    assert result["unavailable"] == {
        "not_found": ["ghost"],
        "no_subscription": ["no-device"],
        "token_invalid": [],
    }
    counts = result["counts"]
    assert (counts["sent"], counts["failed"], counts["no_subscription"]) == (1, 2, 1)


def test_unregistered_tokens_are_invalidated_and_skipped_next_time(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    dead, alive = token_for(f"{prefix}-dead"), token_for(f"{prefix}-alive")
    register(tenant, "ann", dead)
    register(tenant, "bob", alive)
    fcm.set_state(dead, "unregistered")
    first = run_fanout(tenant, _send_users(tenant, ["ann", "bob"])["id"])
    assert first["unavailable"]["token_invalid"] == ["ann"]
    devices = tenant.http.get("/v1/users/ann/devices").json()
    assert [(d["status"], d["status_reason"][:12]) for d in devices] == [
        ("invalid", "UNREGISTERED")
    ]
    second = run_fanout(tenant, _send_users(tenant, ["ann", "bob"])["id"])
    assert second["unavailable"]["no_subscription"] == ["ann"]
    assert fcm.messages(dead) == []
    assert len(fcm.messages(alive)) == 2
    # The app logs in again with a fresh token from FCM: the user is reachable again.
    register(tenant, "ann", dead)
    fcm.set_state(dead, "valid")
    third = run_fanout(tenant, _send_users(tenant, ["ann"])["id"])
    assert third["counts"]["sent"] == 1


def test_rate_limits_are_retried_and_exhausted_retries_fail(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    slow, broken = token_for(f"{prefix}-slow"), token_for(f"{prefix}-broken")
    register(tenant, "ann", slow)
    register(tenant, "bob", broken)
    fcm.fault(429, count=1, token=slow, retry_after=1)
    fcm.fault(503, count=10, token=broken)
    accepted = _send_users(tenant, ["ann", "bob"])
    options = fanout.FanoutOptions(retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02))
    runtime = tenant.backend.runtime
    assert fanout.run(
        runtime.sessions,
        accepted["id"],
        provider_factory=fanout.fcm_factory(runtime.encryptor, options),
        options=options,
    )
    fcm.store.faults.clear()
    result = tenant.http.get(f"/v1/notifications/{accepted['id']}").json()
    assert (result["counts"]["sent"], result["counts"]["failed"]) == (1, 1)
    deliveries = {
        d["external_id"]: d
        for d in tenant.http.get(f"/v1/notifications/{accepted['id']}/deliveries").json()["data"]
    }
    assert deliveries["bob"]["status"] == "failed"
    assert deliveries["bob"]["reason"].startswith("UNAVAILABLE")
    assert len(fcm.messages(slow)) == 1


def test_per_user_messages_carry_their_own_content(tenant: Tenant, fcm: Fcm, prefix: str) -> None:
    connect_fcm(tenant, fcm)
    ann, bob = token_for(f"{prefix}-ann"), token_for(f"{prefix}-bob")
    register(tenant, "ann", ann)
    register(tenant, "bob", bob)
    response = tenant.http.post(
        "/v1/push/messages",
        json={
            "request_group_id": f"grp-{prefix}",
            "messages": [
                {
                    "user_id": "ann",
                    "title": "Ann's order",
                    "body": "Shipped",
                    "link_url": "app://o/1",
                },
                {"user_id": "bob", "title": "Bob's cart", "body": "Still there"},
                {"user_id": "ann", "title": "ignored duplicate"},
            ],
        },
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["request_group_id"] == f"grp-{prefix}"
    assert accepted["recipients"] == 2
    run_fanout(tenant, accepted["id"])
    (to_ann,) = fcm.messages(ann)
    (to_bob,) = fcm.messages(bob)
    assert to_ann["notification"] == {"title": "Ann's order", "body": "Shipped"}
    assert to_ann["data"]["link"] == "app://o/1"
    assert to_bob["notification"] == {"title": "Bob's cart", "body": "Still there"}
    history = tenant.http.get("/v1/users/ann/notifications").json()
    assert history[0]["notification_id"] == accepted["id"]
    assert history[0]["content"]["title"] == "Ann's order"
    listed = tenant.http.get("/v1/notifications", params={"request_group_id": f"grp-{prefix}"})
    assert [n["id"] for n in listed.json()["data"]] == [accepted["id"]]


def test_idempotency_key_sends_once(tenant: Tenant, fcm: Fcm, prefix: str) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{prefix}-once")
    register(tenant, "ann", token)
    body = {"user_ids": ["ann"], "title": "Once"}
    key = {"Idempotency-Key": f"send-{prefix}"}
    first = tenant.http.post("/v1/push/users", json=body, headers=key)
    second = tenant.http.post("/v1/push/users", json=body, headers=key)
    assert first.status_code == second.status_code == 202
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.json() == second.json()
    run_fanout(tenant, first.json()["id"])
    listed = tenant.http.get("/v1/notifications").json()["data"]
    assert len(listed) == 1
    assert len(fcm.messages(token)) == 1


def test_app_reports_delivery_and_clicks_and_rates_follow(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    for name in ("a", "b", "c", "d"):
        register(tenant, name, token_for(f"{prefix}-{name}"))
    notification_id = _send_users(tenant, ["a", "b", "c", "d"])["id"]
    run_fanout(tenant, notification_id)
    with tenant.client() as app:
        for name, event in (("a", "delivered"), ("b", "delivered"), ("c", "clicked")):
            response = app.post(
                f"/v1/client/notifications/{notification_id}/events",
                json={"external_id": name, "event": event},
            )
            assert response.status_code == 200, response.text
        assert response.json()["status"] == "clicked"
        stranger = app.post(
            f"/v1/client/notifications/{notification_id}/events",
            json={"external_id": "zed", "event": "clicked"},
        )
        problem(stranger, 404, "recipient_not_found")
        problem(
            app.post(
                "/v1/client/notifications/ntf_nope/events",
                json={"external_id": "a", "event": "clicked"},
            ),
            404,
            "notification_not_found",
        )
    counts = tenant.http.get(f"/v1/notifications/{notification_id}").json()["counts"]
    assert (counts["sent"], counts["delivered"], counts["clicked"]) == (4, 3, 1)
    assert counts["delivery_rate"] == 0.75
    assert counts["click_rate"] == 0.25


def test_sending_needs_a_provider_and_valid_input(tenant: Tenant, other_tenant: Tenant) -> None:
    problem(
        tenant.http.post("/v1/push/users", json={"user_ids": ["a"], "title": "x"}),
        409,
        "push_not_configured",
    )
    problem(tenant.http.get("/v1/messaging/providers/push"), 404, "provider_not_configured")
    problem(tenant.http.post("/v1/push/users", json={"user_ids": []}), 422, "invalid_input")
    too_many = {"user_ids": [f"u{i}" for i in range(10_001)]}
    problem(tenant.http.post("/v1/push/users", json=too_many), 422, "invalid_input")
    reserved = {"user_ids": ["a"], "data": {"google.x": "1"}}
    problem(tenant.http.post("/v1/push/users", json=reserved), 422, "invalid_input")
    bad_key = tenant.http.put(
        "/v1/messaging/providers/fcm", json={"service_account": {"type": "service_account"}}
    )
    problem(bad_key, 422, "invalid_service_account")
    problem(tenant.http.get("/v1/notifications/ntf_missing"), 404, "notification_not_found")


def test_credentials_are_never_shown_back(tenant: Tenant, fcm: Fcm) -> None:
    info = connect_fcm(tenant, fcm, project_id="shown-project")
    assert info["project_id"] == "shown-project"
    assert info["base_url"] == fcm.url
    shown = tenant.http.get("/v1/messaging/providers/push")
    assert shown.status_code == 200
    assert "PRIVATE KEY" not in shown.text
    assert set(shown.json()) == {
        "channel",
        "provider",
        "project_id",
        "client_email",
        "base_url",
        "updated_at",
    }
    assert tenant.http.delete("/v1/messaging/providers/push").status_code == 204
    problem(tenant.http.get("/v1/messaging/providers/push"), 404, "provider_not_configured")


def test_the_emulator_reports_deliveries_and_clicks_like_an_app(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    names = [f"r{i}" for i in range(20)]
    for name in names:
        register(tenant, name, token_for(f"{prefix}-{name}"))
    report = {"spoke_url": tenant.backend.url, "client_key": tenant.client_key, "clicked": 0.5}
    assert fcm.http.put("/_fcm/config", json={"report": report}).status_code == 200
    try:
        notification_id = _send_users(tenant, names)["id"]
        run_fanout(tenant, notification_id)
        deadline = time.monotonic() + 10
        while True:
            counts = tenant.http.get(f"/v1/notifications/{notification_id}").json()["counts"]
            if counts["delivered"] == 20 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        fcm.http.put("/_fcm/config", json={"report": None})
    assert counts["delivered"] == 20
    assert 0 < counts["clicked"] < 20  # about half, decided by each token's hash
    assert counts["click_rate"] == round(counts["clicked"] / 20, 4)


def test_scheduled_sends_wait_until_due_and_can_be_canceled(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{prefix}-later")
    register(tenant, "ann", token)
    when = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    later = _send_users(tenant, ["ann"], send_at=when)
    assert later["status"] == "scheduled"
    assert later["send_at"] is not None
    early = run_fanout(tenant, later["id"])  # the sweeper offers it before it is due
    assert early["status"] == "scheduled"
    assert fcm.messages(token) == []
    # Time passes: the send is due now.
    with session_scope(tenant.backend.runtime.sessions) as session:
        notification = session.get(Notification, later["id"])
        assert notification is not None
        notification.send_at = datetime.now(UTC) - timedelta(seconds=1)
    assert run_fanout(tenant, later["id"])["counts"]["sent"] == 1
    assert len(fcm.messages(token)) == 1
    problem(tenant.http.delete(f"/v1/notifications/{later['id']}"), 409, "notification_started")

    doomed = _send_users(tenant, ["ann"], send_at=when)
    canceled = tenant.http.delete(f"/v1/notifications/{doomed['id']}")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert run_fanout(tenant, doomed["id"])["status"] == "canceled"
    assert len(fcm.messages(token)) == 1


def test_send_at_must_be_now_or_a_minute_ahead(tenant: Tenant, fcm: Fcm) -> None:
    connect_fcm(tenant, fcm)
    soon = (datetime.now(UTC) + timedelta(seconds=20)).isoformat()
    body = problem(
        tenant.http.post("/v1/push/users", json={"user_ids": ["a"], "send_at": soon}),
        422,
        "invalid_input",
    )
    assert body["errors"][0]["field"] == "body.send_at"
    naive = tenant.http.post(
        "/v1/push/users", json={"user_ids": ["a"], "send_at": "2030-01-01T09:00:00"}
    )
    problem(naive, 422, "invalid_input")
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    now = tenant.http.post("/v1/push/users", json={"user_ids": ["a"], "send_at": past})
    assert now.status_code == 202
    assert (now.json()["status"], now.json()["send_at"]) == ("queued", None)


def test_the_lease_is_kept_while_a_batch_waits_out_a_retry_after(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{prefix}-wait")
    register(tenant, "ann", token)
    fcm.fault(429, count=1, token=token, retry_after=3)
    notification_id = _send_users(tenant, ["ann"])["id"]
    runtime = tenant.backend.runtime
    options = fanout.FanoutOptions(lease_seconds=1.5)
    worker = threading.Thread(
        target=fanout.run,
        args=(runtime.sessions, notification_id),
        kwargs={
            "provider_factory": fanout.fcm_factory(runtime.encryptor, options),
            "options": options,
        },
    )
    worker.start()
    time.sleep(2.2)  # past the lease: without renewal another worker could take over here
    with session_scope(runtime.sessions) as session:
        taken = leases.claim(session, Notification, notification_id, "intruder", 10)
    worker.join(20)
    assert not taken
    result = tenant.http.get(f"/v1/notifications/{notification_id}").json()
    assert result["status"] == "completed"
    assert len(fcm.messages(token)) == 1


def test_a_send_whose_provider_vanished_fails_with_the_reason(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    register(tenant, "ann", token_for(f"{prefix}-orphan"))
    notification_id = _send_users(tenant, ["ann"])["id"]
    assert tenant.http.delete("/v1/messaging/providers/push").status_code == 204
    result = run_fanout(tenant, notification_id)
    assert result["status"] == "failed"
    assert "No push provider" in result["error"]
    assert result["counts"]["failed"] == 1


def test_segments_by_tags_and_everyone(tenant: Tenant, fcm: Fcm, prefix: str) -> None:
    connect_fcm(tenant, fcm)
    people = {
        "p1": {"plan": "pro", "region": "kr"},
        "p2": {"plan": "pro", "region": "jp"},
        "p3": {"plan": "free", "region": "kr"},
        "p4": {"plan": "pro", "region": "kr"},
    }
    for name, tags in people.items():
        assert tenant.http.put(f"/v1/users/{name}", json={"tags": tags}).status_code == 201
        register(tenant, name, token_for(f"{prefix}-{name}"))
    assert tenant.http.delete("/v1/users/p4").status_code == 204  # deleted users are skipped
    response = tenant.http.post(
        "/v1/notifications",
        json={
            "channel": "push",
            "audience": {"tags": {"plan": "pro", "region": "kr"}},
            "title": "Pro in Korea",
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["recipients"] == 1
    result = run_fanout(tenant, response.json()["id"])
    assert result["audience"] == {"tags": {"plan": "pro", "region": "kr"}}
    assert (result["counts"]["recipients"], result["counts"]["sent"]) == (1, 1)
    assert [m["notification"]["title"] for m in fcm.messages(token_for(f"{prefix}-p1"))] == [
        "Pro in Korea"
    ]
    assert fcm.messages(token_for(f"{prefix}-p2")) == []

    everyone = tenant.http.post(
        "/v1/notifications",
        json={"channel": "push", "audience": {"everyone": True}, "body": "All hands"},
    )
    assert everyone.status_code == 202, everyone.text
    done = run_fanout(tenant, everyone.json()["id"])
    assert done["counts"]["sent"] == 3
    for name in ("p1", "p2", "p3"):
        assert fcm.messages(token_for(f"{prefix}-{name}"))[-1]["notification"] == {
            "body": "All hands"
        }

    by_ids = tenant.http.post(
        "/v1/notifications",
        json={"channel": "push", "audience": {"user_ids": ["p3"]}, "title": "Just you"},
    )
    assert run_fanout(tenant, by_ids.json()["id"])["counts"]["sent"] == 1


def test_an_audience_is_exactly_one_thing(tenant: Tenant) -> None:
    for audience in ({}, {"everyone": True, "tags": {"a": "b"}}, {"everyone": False}):
        response = tenant.http.post(
            "/v1/notifications", json={"channel": "push", "audience": audience, "title": "x"}
        )
        problem(response, 422, "invalid_input")
    email = tenant.http.post(
        "/v1/notifications", json={"channel": "email", "audience": {"everyone": True}}
    )
    problem(email, 422, "invalid_input")


def test_content_is_personalised_with_fields_tags_and_fallbacks(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    tenant.http.put("/v1/users/ann", json={"first_name": "Ann", "tags": {"tier": "gold"}})
    tenant.http.put("/v1/users/anon", json={})
    register(tenant, "ann", token_for(f"{prefix}-ann"))
    register(tenant, "anon", token_for(f"{prefix}-anon"))
    accepted = _send_users(
        tenant,
        ["ann", "anon"],
        title='Hi {{ first_name | default("there") }}',
        body="{% if tier %}Your {{ tier }} perks{% else %}Join us{% endif %}",
        link_url="app://u/{{ external_id }}",
    )
    run_fanout(tenant, accepted["id"])
    (to_ann,) = fcm.messages(token_for(f"{prefix}-ann"))
    (to_anon,) = fcm.messages(token_for(f"{prefix}-anon"))
    assert to_ann["notification"] == {"title": "Hi Ann", "body": "Your gold perks"}
    assert to_ann["data"]["link"] == "app://u/ann"
    assert to_anon["notification"] == {"title": "Hi there", "body": "Join us"}


def test_bad_templates_are_refused_or_fail_only_their_recipient(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    broken = tenant.http.post(
        "/v1/push/users", json={"user_ids": ["a"], "title": "Hi {{ first_name "}
    )
    assert problem(broken, 422, "invalid_template")["errors"][0]["field"] == "body.title"
    register(tenant, "ann", token_for(f"{prefix}-ann"))
    register(tenant, "bob", token_for(f"{prefix}-bob"))
    response = tenant.http.post(
        "/v1/push/messages",
        json={
            "messages": [
                {"user_id": "ann", "title": "{{ ''.__class__.__mro__[1].__subclasses__() }}"},
                {"user_id": "bob", "title": "Hello {{ external_id }}"},
            ]
        },
    )
    assert response.status_code == 202, response.text
    result = run_fanout(tenant, response.json()["id"])
    assert (result["counts"]["sent"], result["counts"]["failed"]) == (1, 1)
    deliveries = tenant.http.get(f"/v1/notifications/{response.json()['id']}/deliveries").json()
    reasons = {d["external_id"]: d["reason"] for d in deliveries["data"]}
    assert reasons["ann"].startswith("template_error")
    assert fcm.messages(token_for(f"{prefix}-ann")) == []
    assert fcm.messages(token_for(f"{prefix}-bob"))[0]["notification"] == {"title": "Hello bob"}


def _zone_at(hour: int) -> str:
    """An IANA zone where it is now `hour` o'clock (Etc/GMT-N is UTC+N)."""
    offset = (hour - datetime.now(UTC).hour + 12) % 24 - 12
    return f"Etc/GMT{-offset:+d}" if offset else "Etc/GMT"


def test_ads_respect_the_night_time_rule(tenant: Tenant, fcm: Fcm, prefix: str) -> None:
    connect_fcm(tenant, fcm)
    night, day = _zone_at(23), _zone_at(12)
    users = {
        "owl": {"timezone": night},
        "consenting-owl": {"timezone": night, "tags": {"marketing_night": "yes"}},
        "lark": {"timezone": day},
    }
    for name, fields in users.items():
        assert tenant.http.put(f"/v1/users/{name}", json=fields).status_code == 201
        register(tenant, name, token_for(f"{prefix}-{name}"))
    ad = run_fanout(tenant, _send_users(tenant, list(users), ad=True)["id"])
    assert (ad["counts"]["sent"], ad["counts"]["failed"]) == (2, 1)
    reasons = {
        d["external_id"]: d["reason"]
        for d in tenant.http.get(f"/v1/notifications/{ad['id']}/deliveries").json()["data"]
    }
    assert reasons["owl"].startswith("night_time_rule: ")  # 23:xx (00:xx past the hour)
    assert fcm.messages(token_for(f"{prefix}-owl")) == []
    # Not an ad: the rule does not apply.
    plain = run_fanout(tenant, _send_users(tenant, ["owl"])["id"])
    assert plain["counts"]["sent"] == 1
