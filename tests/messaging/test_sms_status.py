"""SMS delivery reports over real HTTP: the emulator posts Twilio-style signed status
callbacks to Spoke's receiver, which moves the recipient's delivery to delivered or failed."""

from __future__ import annotations

import time
from typing import Any

import httpx
from tests.conftest import Tenant
from tests.messaging.channel_support import Sms, connect_sms, put_user, send, unique_phone
from tests.messaging.support import run_fanout
from tests.users.support import problem

from spoke.messaging import twilio_signature
from spoke.sandbox.sms.callbacks import sign as emulator_sign


def _sent_sms(tenant: Tenant, sms: Sms, number: str) -> tuple[str, str]:
    """Send one SMS to a fresh user at `number`; the notification id and Twilio's sid."""
    put_user(tenant, "ann", phone=number)
    notification = run_fanout(tenant, send(tenant, "sms", ["ann"], body="Your code is 1234")["id"])
    # Not `sent == 1`: with reports on, a failure report may already have arrived.
    assert notification["status"] == "completed"
    (message,) = sms.messages(number)
    return notification["id"], str(message["sid"])


def _delivery(tenant: Tenant, notification_id: str) -> dict[str, Any]:
    response = tenant.http.get(f"/v1/notifications/{notification_id}/deliveries")
    assert response.status_code == 200, response.text
    (delivery,) = response.json()["data"]
    return dict(delivery)


def _counts(tenant: Tenant, notification_id: str) -> dict[str, Any]:
    return dict(tenant.http.get(f"/v1/notifications/{notification_id}").json()["counts"])


def _settled(sms: Sms, sid: str) -> list[dict[str, Any]]:
    """The emulator's callbacks for `sid` once its final status was accepted by Spoke."""
    deadline = time.monotonic() + 30
    while True:
        posted = sms.callbacks(sid)
        if any(c["status"] != "sent" and 200 <= c["answer"] < 300 for c in posted):
            return posted
        assert time.monotonic() < deadline, f"no final status callback accepted: {posted}"
        time.sleep(0.05)


def test_a_delivered_report_counts_the_sms_as_delivered(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    sms.configure(report_status=True, callback_delay_ms=10)
    number = unique_phone()
    notification_id, sid = _sent_sms(tenant, sms, number)
    posted = _settled(sms, sid)
    assert [c["status"] for c in posted if 200 <= c["answer"] < 300] == ["sent", "delivered"]
    delivery = _delivery(tenant, notification_id)
    assert (delivery["status"], delivery["reason"]) == ("delivered", None)
    assert delivery["delivered_at"] is not None
    counts = _counts(tenant, notification_id)
    assert (counts["sent"], counts["delivered"], counts["failed"]) == (1, 1, 0)
    assert counts["delivery_rate"] == 1.0


def test_an_undelivered_report_fails_the_delivery_with_its_error_code(
    tenant: Tenant, sms: Sms
) -> None:
    connect_sms(tenant, sms)
    sms.configure(report_status=True, callback_delay_ms=10)
    number = unique_phone()
    sms.set_number(number, "undeliverable")  # Twilio takes it; the handset never gets it
    notification_id, sid = _sent_sms(tenant, sms, number)
    _settled(sms, sid)
    delivery = _delivery(tenant, notification_id)
    assert (delivery["status"], delivery["reason"]) == ("failed", "undelivered: 30003")
    assert delivery["delivered_at"] is None
    counts = _counts(tenant, notification_id)
    assert (counts["sent"], counts["delivered"], counts["failed"]) == (0, 0, 1)


def test_a_carrier_failure_is_reported_as_failed(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    sms.configure(report_status=True, callback_delay_ms=10)
    number = unique_phone()
    sms.set_number(number, "carrier_failed")
    notification_id, sid = _sent_sms(tenant, sms, number)
    _settled(sms, sid)
    assert _delivery(tenant, notification_id)["reason"] == "failed: 30008"


def test_a_callback_with_a_bad_signature_is_refused_and_changes_nothing(
    tenant: Tenant, sms: Sms
) -> None:
    connect_sms(tenant, sms)
    notification_id, sid = _sent_sms(tenant, sms, unique_phone())
    url = f"{tenant.backend.url}/hooks/twilio/status/{tenant.workspace_id}"
    params = {"MessageSid": sid, "MessageStatus": "undelivered", "ErrorCode": "30003"}
    forged = twilio_signature.signature("not-the-auth-token", url, params.items())
    for headers in ({"X-Twilio-Signature": forged}, {}):
        answer = httpx.post(url, data=params, headers=headers)
        problem(answer, 403, "invalid_twilio_signature")
    # Signed right, but for other parameters than the ones posted.
    (message,) = sms.messages()[-1:]
    token = sms.store.accounts[message["account_sid"]]
    signed_other = twilio_signature.signature(token, url, {**params, "ErrorCode": "1"}.items())
    answer = httpx.post(url, data=params, headers={"X-Twilio-Signature": signed_other})
    problem(answer, 403, "invalid_twilio_signature")
    # A workspace without Twilio can't be told apart from a bad signature.
    other = f"{tenant.backend.url}/hooks/twilio/status/ws_nobody"
    problem(
        httpx.post(other, data=params, headers={"X-Twilio-Signature": forged}),
        403,
        "invalid_twilio_signature",
    )
    delivery = _delivery(tenant, notification_id)
    assert (delivery["status"], delivery["reason"], delivery["delivered_at"]) == (
        "sent",
        None,
        None,
    )


def test_duplicated_and_reordered_callbacks_never_move_a_status_back(
    tenant: Tenant, sms: Sms
) -> None:
    connect_sms(tenant, sms)
    delivered_id, delivered_sid = _sent_sms(tenant, sms, unique_phone())
    answers = sms.replay(delivered_sid, ["delivered", "sent", "queued", "delivered", "undelivered"])
    assert answers == [204] * 5
    first = _delivery(tenant, delivered_id)
    assert (first["status"], first["reason"]) == ("delivered", None)
    assert sms.replay(delivered_sid, ["delivered"]) == [204]
    assert _delivery(tenant, delivered_id)["delivered_at"] == first["delivered_at"]

    put_user(tenant, "bob", phone=(bob := unique_phone()))
    failed_id = run_fanout(tenant, send(tenant, "sms", ["bob"], body="Hello")["id"])["id"]
    (message,) = sms.messages(bob)
    answers = sms.replay(message["sid"], ["undelivered", "sent", "delivered"], error_code=30005)
    assert answers == [204] * 3
    (failed,) = tenant.http.get(f"/v1/notifications/{failed_id}/deliveries").json()["data"]
    assert (failed["status"], failed["reason"], failed["delivered_at"]) == (
        "failed",
        "undelivered: 30005",
        None,
    )
    counts = _counts(tenant, failed_id)
    assert (counts["sent"], counts["delivered"], counts["failed"]) == (0, 0, 1)


def test_a_report_for_a_message_spoke_did_not_send_is_not_found(tenant: Tenant, sms: Sms) -> None:
    connect_sms(tenant, sms)
    _notification_id, sid = _sent_sms(tenant, sms, unique_phone())
    (message,) = sms.messages()[-1:]
    token = sms.store.accounts[message["account_sid"]]
    url = f"{tenant.backend.url}/hooks/twilio/status/{tenant.workspace_id}"
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    signed = twilio_signature.signature(token, url, params.items())
    answer = httpx.post(url, data=params, headers={"X-Twilio-Signature": signed})
    problem(answer, 404, "sms_message_not_found")
    assert sid != params["MessageSid"]


def test_both_signatures_match_twilios_documented_example() -> None:
    # The example in Twilio's webhook security docs (and its SDK's request validator tests).
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+14158675309",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
    }
    expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert twilio_signature.signature("12345", url, params.items()) == expected
    assert emulator_sign("12345", url, params) == expected
    assert twilio_signature.verify(
        "12345", ["https://elsewhere/", url], list(params.items()), expected
    )
    assert not twilio_signature.verify("12345", [url], list(params.items()), "")
