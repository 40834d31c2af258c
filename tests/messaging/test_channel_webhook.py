"""The signed `unavailable_users` callback names the channel: email and SMS sends report
the users they could not reach the same way push does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import Tenant
from tests.messaging.channel_support import (
    Sink,
    Sms,
    connect_sms,
    connect_smtp,
    put_user,
    send,
    unique_email,
    unique_phone,
)
from tests.messaging.support import run_fanout
from tests.support.server import LiveServer

from spoke.messaging.webhooks import sign


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append({"headers": dict(request.headers), "body": await request.body()})
        return Response(status_code=204)

    server = LiveServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
    yield f"{server.url}/hook", received
    server.stop()


def _callback(
    tenant: Tenant, receiver: tuple[str, list[dict[str, Any]]], notification_id: str, secret: str
) -> dict[str, Any]:
    _, received = receiver
    before = len(received)
    tenant.backend.runtime.jobs.run_now(
        "messaging.notify_unavailable", notification_id=notification_id
    )
    assert len(received) == before + 1
    request = received[-1]
    stamp = request["headers"]["x-spoke-signature"].split(",")[0].split("=")[1]
    expected = sign(secret, int(stamp), request["body"])
    assert request["headers"]["x-spoke-signature"] == expected
    return dict(orjson.loads(request["body"]))


def test_email_and_sms_sends_report_unreachable_users(
    tenant: Tenant, sink: Sink, sms: Sms, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    secret = tenant.http.put("/v1/messaging/webhook", json={"url": receiver[0]}).json()["secret"]
    connect_smtp(tenant, sink)
    connect_sms(tenant, sms)
    gone = unique_email("gone")
    sink.set_recipient(gone, "reject")
    put_user(tenant, "mail-only", email=unique_email("mail"))
    put_user(tenant, "phone-only", phone=unique_phone())
    put_user(tenant, "bouncing", email=gone)
    everyone = ["mail-only", "phone-only", "bouncing", "ghost"]
    email = run_fanout(tenant, send(tenant, "email", everyone, subject="s", text="t")["id"])
    assert _callback(tenant, receiver, email["id"], secret) == {
        "type": "notification.unavailable_users",
        "notification_id": email["id"],
        "request_group_id": email["id"],
        "channel": "email",
        "not_found": ["ghost"],
        "no_subscription": ["phone-only"],
        "token_invalid": ["bouncing"],
    }
    text = run_fanout(tenant, send(tenant, "sms", everyone, body="t")["id"])
    body = _callback(tenant, receiver, text["id"], secret)
    assert body["channel"] == "sms"
    assert (body["not_found"], sorted(body["no_subscription"])) == (
        ["ghost"],
        ["bouncing", "mail-only"],
    )
