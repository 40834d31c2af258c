"""The signed `unavailable_users` callback to the workspace's webhook, over loopback HTTP."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tests.conftest import Tenant
from tests.messaging.support import Fcm, connect_fcm, register, run_fanout, token_for
from tests.support.server import LiveServer
from tests.users.support import problem


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def hook(request: Request) -> Response:
        received.append({"headers": dict(request.headers), "body": await request.body()})
        return Response(status_code=204)

    server = LiveServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
    yield f"{server.url}/hook", received
    server.stop()


def test_unreachable_users_are_posted_signed(
    tenant: Tenant, fcm: Fcm, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    connect_fcm(tenant, fcm)
    created = tenant.http.put("/v1/messaging/webhook", json={"url": url})
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    assert tenant.http.get("/v1/messaging/webhook").json()["secret"] is None
    register(tenant, "ann", token_for(uuid.uuid4().hex[:10]))
    tenant.http.put("/v1/users/bare", json={})
    notification_id = tenant.http.post(
        "/v1/push/users", json={"user_ids": ["ann", "bare", "ghost"], "title": "x"}
    ).json()["id"]
    run_fanout(tenant, notification_id)
    before = len(received)
    jobs = tenant.backend.runtime.jobs
    jobs.run_now("messaging.notify_unavailable", notification_id=notification_id)
    assert len(received) == before + 1
    request = received[-1]
    body = orjson.loads(request["body"])
    assert body == {
        "type": "notification.unavailable_users",
        "notification_id": notification_id,
        "request_group_id": notification_id,
        "channel": "push",
        "not_found": ["ghost"],
        "no_subscription": ["bare"],
        "token_invalid": [],
    }
    stamp, signature = (
        p.split("=", 1)[1] for p in request["headers"]["x-spoke-signature"].split(",")
    )
    expected = hmac.new(
        secret.encode(), f"{stamp}.{request['body'].decode()}".encode(), hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(signature, expected)
    assert abs(int(stamp) - time.time()) < 60

    everyone_reached = tenant.http.post(
        "/v1/push/users", json={"user_ids": ["ann"], "title": "y"}
    ).json()["id"]
    run_fanout(tenant, everyone_reached)
    jobs.run_now("messaging.notify_unavailable", notification_id=everyone_reached)
    assert len(received) == before + 1  # nothing to report: no call

    assert tenant.http.delete("/v1/messaging/webhook").status_code == 204
    problem(tenant.http.get("/v1/messaging/webhook"), 404, "webhook_not_configured")
    problem(tenant.http.put("/v1/messaging/webhook", json={"url": "ftp://x"}), 422, "invalid_input")
