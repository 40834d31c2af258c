"""SMS sends end to end through the Twilio-compatible emulator over loopback HTTP: the
user's phone number is the address, Twilio's error codes move the subscription, 429/5xx
are retried."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Tenant
from tests.messaging.channel_support import Sms, connect_sms, put_user, send, unique_phone
from tests.messaging.support import run_fanout
from tests.users.support import problem

from spoke.messaging import channel_send, fanout
from spoke.messaging.providers.fcm import RetryPolicy


def _run_with(tenant: Tenant, notification_id: str, attempts: int) -> dict[str, Any]:
    options = fanout.FanoutOptions(
        retry=RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.02)
    )
    runtime = tenant.backend.runtime
    factory = channel_send.factory(
        fanout.fcm_factory(runtime.encryptor, options),
        runtime.encryptor,
        runtime.settings,
        options.retry,
    )
    assert fanout.run(runtime.sessions, notification_id, provider_factory=factory, options=options)
    return dict(tenant.http.get(f"/v1/notifications/{notification_id}").json())


def _sms_status(tenant: Tenant, user: str) -> tuple[str, str | None]:
    (found,) = tenant.http.get(f"/v1/users/{user}/subscriptions").json()
    return found["status"], found["status_reason"]


def test_a_personalised_sms_is_sent(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    ann, bob = unique_phone(), unique_phone()
    put_user(tenant, "ann", phone=ann, first_name="Ann")
    put_user(tenant, "bob", phone=bob)
    accepted = send(
        tenant, "sms", ["ann", "bob"], body="Hi {{ first_name | default('there') }}: 20% off"
    )
    result = run_fanout(tenant, accepted["id"])
    assert result["status"] == "completed"
    assert (result["channel"], result["counts"]["sent"], result["counts"]["failed"]) == (
        "sms",
        2,
        0,
    )
    (to_ann,) = sms.messages(ann)
    assert (to_ann["body"], to_ann["from"], to_ann["status"]) == (
        "Hi Ann: 20% off",
        "+15005550006",
        "queued",
    )
    assert sms.messages(bob)[0]["body"] == "Hi there: 20% off"
    run_fanout(tenant, accepted["id"])  # once only
    assert len(sms.messages(ann)) == 1


def test_users_without_a_phone_are_reported(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    put_user(tenant, "ann", phone=unique_phone())
    put_user(tenant, "no-phone", email="np@mail.example")
    result = run_fanout(tenant, send(tenant, "sms", ["ann", "no-phone", "ghost"], body="x")["id"])
    assert result["unavailable"] == {
        "not_found": ["ghost"],
        "no_subscription": ["no-phone"],
        "token_invalid": [],
    }


def test_an_invalid_number_becomes_invalid_and_stop_unsubscribes(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    bad, stopped, fine = unique_phone(), unique_phone(), unique_phone()
    put_user(tenant, "bad", phone=bad)
    put_user(tenant, "stopped", phone=stopped)
    put_user(tenant, "fine", phone=fine)
    sms.set_number(bad, "invalid")
    sms.set_number(stopped, "stopped")
    first = run_fanout(tenant, send(tenant, "sms", ["bad", "stopped", "fine"], body="x")["id"])
    assert sorted(first["unavailable"]["token_invalid"]) == ["bad", "stopped"]
    assert first["counts"]["sent"] == 1
    status, reason = _sms_status(tenant, "bad")
    assert (status, (reason or "")[:6]) == ("invalid", "21211:")
    status, reason = _sms_status(tenant, "stopped")
    assert (status, (reason or "")[:6]) == ("unsubscribed", "21610:")
    second = run_fanout(tenant, send(tenant, "sms", ["bad", "stopped", "fine"], body="y")["id"])
    assert sorted(second["unavailable"]["no_subscription"]) == ["bad", "stopped"]
    assert sms.messages(bad) == sms.messages(stopped) == []
    assert len(sms.messages(fine)) == 2


def test_rate_limits_and_server_errors_are_retried(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    slow, flaky, broken = unique_phone(), unique_phone(), unique_phone()
    put_user(tenant, "slow", phone=slow)
    put_user(tenant, "flaky", phone=flaky)
    put_user(tenant, "broken", phone=broken)
    sms.fault(429, count=1, to=slow, retry_after=1)
    sms.fault(503, count=2, to=flaky)
    sms.fault(500, count=20, to=broken)
    result = _run_with(tenant, send(tenant, "sms", ["slow", "flaky", "broken"], body="z")["id"], 4)
    sms.store.faults.clear()
    assert (result["counts"]["sent"], result["counts"]["failed"]) == (2, 1)
    assert len(sms.messages(slow)) == len(sms.messages(flaky)) == 1
    deliveries = {
        d["external_id"]: d
        for d in tenant.http.get(f"/v1/notifications/{result['id']}/deliveries").json()["data"]
    }
    assert deliveries["broken"]["reason"].startswith("20500")
    assert _sms_status(tenant, "broken")[0] == "subscribed"  # a server error says nothing


def test_random_rate_limiting_loses_nothing(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    users = [f"u{n}" for n in range(20)]
    numbers = {user: unique_phone() for user in users}
    for user, number in numbers.items():
        put_user(tenant, user, phone=number)
    response = sms.http.put("/_sms/config", json={"fault_rates": {"429": 0.3, "503": 0.1}})
    assert response.status_code == 200
    try:
        result = _run_with(tenant, send(tenant, "sms", users, body="hello")["id"], 10)
    finally:
        sms.http.put("/_sms/config", json={"fault_rates": {}})
    assert result["counts"]["sent"] == 20
    assert all(len(sms.messages(number)) == 1 for number in numbers.values())
    stats = sms.http.get("/_sms/stats").json()
    assert stats.get("fault_429", 0) > 0


def test_refused_credentials_fail_the_send_before_anything_leaves(tenant: Tenant, sms: Sms) -> None:
    account = sms.account()
    response = tenant.http.put(
        "/v1/messaging/providers/twilio",
        json={
            **account,
            "auth_token": "wrong-token-123",
            "from_number": "+15005550006",
            "base_url": sms.url,
        },
    )
    assert response.status_code == 200
    number = unique_phone()
    put_user(tenant, "ann", phone=number)
    result = run_fanout(tenant, send(tenant, "sms", ["ann"], body="x")["id"])
    assert result["status"] == "failed"
    assert "20003" in result["error"]
    assert sms.messages(number) == []


def test_a_messaging_service_can_send_instead_of_a_number(tenant: Tenant, sms: Sms) -> None:
    service = "MG" + "a" * 32
    connect_sms(tenant, sms, from_number=None, messaging_service_sid=service)
    number = unique_phone()
    put_user(tenant, "ann", phone=number)
    run_fanout(tenant, send(tenant, "sms", ["ann"], body="x")["id"])
    (message,) = sms.messages(number)
    assert (message["messaging_service_sid"], message["from"]) == (service, None)


def test_a_body_longer_than_one_sms_allows_is_failed_per_user(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    number = unique_phone()
    put_user(tenant, "ann", phone=number, first_name="A" * 150)
    body = "{{ first_name }}" * 11  # 1,650 characters once rendered
    result = run_fanout(tenant, send(tenant, "sms", ["ann"], body=body)["id"])
    (delivery,) = tenant.http.get(f"/v1/notifications/{result['id']}/deliveries").json()["data"]
    assert delivery["status"] == "failed"
    assert delivery["reason"].startswith("21617")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "sms"}, "body"),
        ({"channel": "sms", "body": "x" * 1601}, "1600"),
        ({"channel": "sms", "body": "x", "title": "push only"}, "title"),
        ({"channel": "sms", "body": "x", "subject": "email only"}, "subject"),
    ],
)
def test_sms_content_is_checked(tenant: Tenant, sms: Sms, body: dict[str, Any], field: str) -> None:
    connect_sms(tenant, sms)
    response = tenant.http.post("/v1/notifications", json={"audience": {"everyone": True}, **body})
    found = problem(response, 422, "invalid_input")
    assert field in str(found.get("errors"))


def test_sms_without_a_provider_is_refused(tenant: Tenant) -> None:
    response = tenant.http.post(
        "/v1/notifications", json={"channel": "sms", "audience": {"everyone": True}, "body": "x"}
    )
    problem(response, 409, "sms_not_configured")
