"""Email sends end to end: the API accepts, the fan-out job sends over SMTP with STARTTLS
to the SMTP sink on a loopback port, and the history shows counts and who was missed."""

from __future__ import annotations

from typing import Any

import pytest
from tests.conftest import Tenant
from tests.messaging.channel_support import (
    Sink,
    connect_smtp,
    put_user,
    send,
    unique_email,
)
from tests.messaging.support import run_fanout
from tests.users.support import problem

from spoke.messaging import channel_send, fanout
from spoke.messaging.providers.fcm import RetryPolicy


def _email(**extra: Any) -> dict[str, Any]:
    return {"subject": "Hello", "text": "Hi there", **extra}


def _header(message: dict[str, Any], name: str) -> str:
    return next(value for key, value in message["headers"] if key.lower() == name.lower())


def test_a_personalised_email_arrives_over_starttls(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    ann, bob = unique_email("ann"), unique_email("bob")
    put_user(tenant, "ann", email=ann, first_name="<b>Ann</b>", tags={"plan": "pro"})
    put_user(tenant, "bob", email=bob)
    accepted = send(
        tenant,
        "email",
        ["ann", "bob", "ann"],
        subject="Hi {{ first_name | default('there') }}, your {{ plan | default('free') }} plan",
        html="<p>Dear {{ first_name | default('friend') }}</p>",
        text="Dear {{ first_name | default('friend') }}",
        from_name="Shop team",
    )
    assert accepted["recipients"] == 2
    result = run_fanout(tenant, accepted["id"])
    assert result["status"] == "completed"
    assert result["channel"] == "email"
    counts = result["counts"]
    assert (counts["sent"], counts["failed"], counts["send_rate"]) == (2, 0, 1.0)

    (to_ann,) = sink.messages(ann)
    assert to_ann["tls"] is True
    assert to_ann["rcpt_tos"] == [ann]
    assert to_ann["mail_from"] == "news@shop.example"
    assert to_ann["from"] == "Shop team <news@shop.example>"
    assert to_ann["subject"] == "Hi <b>Ann</b>, your pro plan"
    assert to_ann["html"].startswith("<p>Dear &lt;b&gt;Ann&lt;/b&gt;</p>")  # escaped in HTML
    assert to_ann["text"].startswith("Dear <b>Ann</b>")  # plain text is not HTML
    (to_bob,) = sink.messages(bob)
    assert to_bob["subject"] == "Hi there, your free plan"
    assert to_bob["html"].startswith("<p>Dear friend</p>")
    # One-click unsubscribe (RFC 8058) and a stable Message-ID per delivery.
    assert _header(to_ann, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert _header(to_ann, "List-Unsubscribe").startswith(f"<{tenant.backend.url}/u/")
    assert to_ann["message_id"].endswith("@shop.example>")
    deliveries = tenant.http.get(f"/v1/notifications/{accepted['id']}/deliveries").json()
    assert {(d["external_id"], d["channel"], d["status"]) for d in deliveries["data"]} == {
        ("ann", "email", "sent"),
        ("bob", "email", "sent"),
    }
    run_fanout(tenant, accepted["id"])  # running the job again sends nothing
    assert len(sink.messages(ann)) == 1


def test_users_without_an_email_are_reported(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    put_user(tenant, "ann", email=unique_email("ann"))
    put_user(tenant, "no-email", first_name="Nobody")
    result = run_fanout(
        tenant, send(tenant, "email", ["ann", "no-email", "ghost"], **_email())["id"]
    )
    assert result["unavailable"] == {
        "not_found": ["ghost"],
        "no_subscription": ["no-email"],
        "token_invalid": [],
    }
    assert (result["counts"]["sent"], result["counts"]["no_subscription"]) == (1, 1)


def test_a_segment_and_everyone_reach_users_by_email(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    vip, other = unique_email("vip"), unique_email("other")
    put_user(tenant, "vip", email=vip, tags={"tier": "gold"})
    put_user(tenant, "other", email=other, tags={"tier": "silver"})
    response = tenant.http.post(
        "/v1/notifications",
        json={"channel": "email", "audience": {"tags": {"tier": "gold"}}, **_email()},
    )
    assert response.status_code == 202, response.text
    run_fanout(tenant, response.json()["id"])
    assert len(sink.messages(vip)) == 1
    assert sink.messages(other) == []


def test_a_permanent_refusal_bounces_the_address(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    gone, fine = unique_email("gone"), unique_email("fine")
    put_user(tenant, "gone", email=gone)
    put_user(tenant, "fine", email=fine)
    sink.set_recipient(gone, "reject")
    first = run_fanout(tenant, send(tenant, "email", ["gone", "fine"], **_email())["id"])
    assert first["unavailable"]["token_invalid"] == ["gone"]
    assert (first["counts"]["sent"], first["counts"]["failed"]) == (1, 1)
    (email,) = tenant.http.get("/v1/users/gone/subscriptions").json()
    assert (email["channel"], email["address"], email["status"]) == ("email", gone, "bounced")
    assert email["status_reason"].startswith("550 5.1.1")
    # The next send does not try the bounced address again.
    second = run_fanout(tenant, send(tenant, "email", ["gone"], **_email())["id"])
    assert second["unavailable"]["no_subscription"] == ["gone"]
    rejected_before = sink.store.counts["rcpt_reject"]
    run_fanout(tenant, send(tenant, "email", ["gone"], **_email())["id"])
    assert sink.store.counts["rcpt_reject"] == rejected_before
    # The operator lifts the bounce (the mailbox exists again): the address is tried again.
    sink.set_recipient(gone, "accept")
    lifted = tenant.http.patch("/v1/users/gone/subscriptions/email", json={"status": "subscribed"})
    assert lifted.status_code == 200, lifted.text
    third = run_fanout(tenant, send(tenant, "email", ["gone"], **_email())["id"])
    assert third["counts"]["sent"] == 1


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


def test_temporary_refusals_are_retried(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    busy, stuck = unique_email("busy"), unique_email("stuck")
    put_user(tenant, "busy", email=busy)
    put_user(tenant, "stuck", email=stuck)
    sink.fault(451, count=2, stage="rcpt", recipient=busy)
    sink.fault(452, count=1, stage="data", recipient=busy)
    sink.fault(450, count=50, stage="rcpt", recipient=stuck)
    result = _run_with(tenant, send(tenant, "email", ["busy", "stuck"], **_email())["id"], 5)
    sink.store.faults.clear()
    assert (result["counts"]["sent"], result["counts"]["failed"]) == (1, 1)
    assert len(sink.messages(busy)) == 1
    deliveries = {
        d["external_id"]: d
        for d in tenant.http.get(f"/v1/notifications/{result['id']}/deliveries").json()["data"]
    }
    assert deliveries["stuck"]["reason"].startswith("450 ")
    # A temporary refusal says nothing about the address: it stays subscribed.
    (email,) = tenant.http.get("/v1/users/stuck/subscriptions").json()
    assert email["status"] == "subscribed"


def test_a_server_that_drops_the_connection_is_reconnected(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    ann = unique_email("ann")
    put_user(tenant, "ann", email=ann)
    sink.fault(421, count=1, stage="mail", message="4.3.2 Service shutting down")
    result = _run_with(tenant, send(tenant, "email", ["ann"], **_email())["id"], 3)
    assert result["counts"]["sent"] == 1
    assert len(sink.messages(ann)) == 1


def test_refused_credentials_fail_the_send_before_anything_leaves(
    tenant: Tenant, sink: Sink
) -> None:
    sink.store.username, sink.store.password = "mailer", "right-password"
    connect_smtp(tenant, sink, username="mailer", password="wrong-password")
    ann = unique_email("ann")
    put_user(tenant, "ann", email=ann)
    result = run_fanout(tenant, send(tenant, "email", ["ann"], **_email())["id"])
    assert result["status"] == "failed"
    assert "authentication failed" in result["error"]
    assert sink.messages(ann) == []
    # With the right password the same sink accepts, logged in and over TLS.
    connect_smtp(tenant, sink, username="mailer", password="right-password")
    run_fanout(tenant, send(tenant, "email", ["ann"], **_email())["id"])
    (received,) = sink.messages(ann)
    assert (received["auth_user"], received["tls"]) == ("mailer", True)


def test_an_untrusted_certificate_fails_the_send(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink, ca_pem=None)  # the sink's certificate is self-signed
    ann = unique_email("ann")
    put_user(tenant, "ann", email=ann)
    result = run_fanout(tenant, send(tenant, "email", ["ann"], **_email())["id"])
    assert result["status"] == "failed"
    assert "certificate is not trusted" in result["error"]
    assert sink.messages(ann) == []


def test_a_resend_with_the_same_idempotency_key_sends_once(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    ann = unique_email("ann")
    put_user(tenant, "ann", email=ann)
    body = {"channel": "email", "audience": {"user_ids": ["ann"]}, **_email()}
    headers = {"Idempotency-Key": f"email-{ann}"}
    first = tenant.http.post("/v1/notifications", json=body, headers=headers)
    second = tenant.http.post("/v1/notifications", json=body, headers=headers)
    assert first.status_code == second.status_code == 202
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["id"] == second.json()["id"]
    run_fanout(tenant, first.json()["id"])
    run_fanout(tenant, second.json()["id"])
    assert len(sink.messages(ann)) == 1
    listed = tenant.http.get("/v1/notifications").json()["data"]
    assert [n["id"] for n in listed] == [first.json()["id"]]


def test_the_address_follows_the_users_email(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    old, new = unique_email("old"), unique_email("new")
    put_user(tenant, "ann", email=old)
    run_fanout(tenant, send(tenant, "email", ["ann"], **_email())["id"])
    tenant.http.patch("/v1/users/ann/subscriptions/email", json={"status": "unsubscribed"})
    put_user(tenant, "ann", email=new)
    run_fanout(tenant, send(tenant, "email", ["ann"], **_email())["id"])
    assert (len(sink.messages(old)), len(sink.messages(new))) == (1, 1)
    subscriptions = tenant.http.get("/v1/users/ann/subscriptions").json()
    assert [(s["address"], s["status"]) for s in subscriptions] == [(new, "subscribed")]
    # Back to the old address: its unsubscribe still holds.
    put_user(tenant, "ann", email=old)
    back = run_fanout(tenant, send(tenant, "email", ["ann"], **_email())["id"])
    assert back["unavailable"]["no_subscription"] == ["ann"]
    assert len(sink.messages(old)) == 1


def test_an_address_two_users_share_gets_one_email(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    shared = unique_email("family")
    put_user(tenant, "parent", email=shared)
    put_user(tenant, "child", email=shared)
    result = run_fanout(tenant, send(tenant, "email", ["parent", "child"], **_email())["id"])
    assert result["counts"]["sent"] == 1
    assert result["unavailable"]["no_subscription"] == ["child"]
    assert len(sink.messages(shared)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"channel": "email", "text": "no subject"}, "subject"),
        ({"channel": "email", "subject": "no body"}, "body"),
        ({"channel": "email", "subject": "s", "text": "t", "title": "push only"}, "title"),
        ({"channel": "push", "title": "t", "html": "<p>email only</p>"}, "html"),
        ({"channel": "email", "subject": "line\nbreak", "text": "t"}, "subject"),
    ],
)
def test_email_content_is_checked(
    tenant: Tenant, sink: Sink, body: dict[str, Any], field: str
) -> None:
    connect_smtp(tenant, sink)
    response = tenant.http.post("/v1/notifications", json={"audience": {"everyone": True}, **body})
    found = problem(response, 422, "invalid_input")
    assert field in str(found.get("errors"))


def test_a_template_that_does_not_parse_is_refused(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    response = tenant.http.post(
        "/v1/notifications",
        json={"channel": "email", "audience": {"everyone": True}, "subject": "x", "html": "{{ a"},
    )
    problem(response, 422, "invalid_template")


def test_email_without_a_provider_is_refused(tenant: Tenant) -> None:
    response = tenant.http.post(
        "/v1/notifications",
        json={"channel": "email", "audience": {"everyone": True}, **_email()},
    )
    problem(response, 409, "email_not_configured")
    assert tenant.http.get("/v1/notifications").json()["data"] == []
