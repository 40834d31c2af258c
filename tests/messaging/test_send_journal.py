"""The delivery state machine of a push fan-out (`messaging.send_journal`): what a dead run
left `sending` is sent again and shown once by the device; a delivery waiting out a retry
goes back to `queued`, so a crash during the wait re-sends it instead of losing it."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from tests.conftest import Tenant
from tests.messaging.support import Fcm, connect_fcm, register, run_fanout, token_for

from spoke.core import leases
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.messaging import fanout
from spoke.messaging.models import Delivery, Notification
from spoke.messaging.providers.fcm import RetryPolicy
from spoke.messaging.send_journal import SendJournal


@pytest.fixture
def prefix() -> str:
    return uuid.uuid4().hex[:8]


def _send(tenant: Tenant, user_ids: list[str]) -> str:
    response = tenant.http.post("/v1/push/users", json={"user_ids": user_ids, "title": "Hi"})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _deliveries(tenant: Tenant, notification_id: str) -> dict[str, tuple[str, str | None]]:
    with session_scope(tenant.backend.runtime.read_sessions) as session:
        return {
            external_id: (status, reason)
            for external_id, status, reason in session.execute(
                sa.select(Delivery.external_id, Delivery.status, Delivery.reason).where(
                    Delivery.notification_id == notification_id
                )
            )
        }


@pytest.mark.parametrize("it_went_out", [False, True])
def test_what_a_dead_run_had_in_flight_is_sent_again_and_shown_once(
    tenant: Tenant, fcm: Fcm, prefix: str, it_went_out: bool
) -> None:
    connect_fcm(tenant, fcm)
    ann, bob = token_for(f"{prefix}-ann"), token_for(f"{prefix}-bob")
    register(tenant, "ann", ann)
    register(tenant, "bob", bob)
    notification_id = _send(tenant, ["ann", "bob"])
    sessions = tenant.backend.runtime.sessions
    options = fanout.FanoutOptions()
    # A run that planned, marked ann's delivery `sending` and died, before or after its
    # request reached FCM, but before writing down what FCM answered.
    with session_scope(sessions) as session:
        assert leases.claim(session, Notification, notification_id, "dead-run", 60)
    assert fanout._plan_chunk(sessions, notification_id, "dead-run", options)
    with session_scope(sessions) as session:
        ann_delivery = session.scalar(
            sa.select(Delivery.id).where(
                Delivery.notification_id == notification_id, Delivery.external_id == "ann"
            )
        )
    assert ann_delivery is not None

    def write() -> None:
        if it_went_out:  # what the dead run's request carried (`fanout._messages`)
            tag = f"spoke-{ann_delivery}"
            fcm.store.record(
                "demo-project",
                {
                    "token": ann,
                    "notification": {"title": "Hi"},
                    "android": {"collapse_key": tag, "notification": {"tag": tag}},
                },
            )

    async def mark() -> None:
        journal = SendJournal(sessions, notification_id, "dead-run", lease_seconds=60, interval=0.0)
        await journal.write(ann_delivery, write)
        await journal.close()

    asyncio.run(mark())
    assert _deliveries(tenant, notification_id)["ann"] == ("sending", None)
    with session_scope(sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        notification.lease_expires_at = utcnow() - timedelta(seconds=1)

    result = run_fanout(tenant, notification_id)

    assert result["status"] == "completed"
    assert result["counts"]["sent"] == 2
    assert _deliveries(tenant, notification_id) == {"ann": ("sent", None), "bob": ("sent", None)}
    # Sent again: nothing is lost if the dead run's request never left, and if it did, the
    # second copy replaces the first on ann's device.
    assert len(fcm.messages(ann)) == (2 if it_went_out else 1)
    assert [n["notification"]["title"] for n in fcm.store.shown(ann)] == ["Hi"]
    assert len(fcm.messages(bob)) == 1


def test_a_delivery_waiting_out_a_retry_is_queued_again_until_it_goes(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{prefix}-wait")
    register(tenant, "ann", token)
    fcm.fault(503, count=1, token=token, retry_after=2)
    notification_id = _send(tenant, ["ann"])
    runtime = tenant.backend.runtime
    options = fanout.FanoutOptions(retry=RetryPolicy(attempts=3, base_delay=0.01))
    worker = threading.Thread(
        target=fanout.run,
        args=(runtime.sessions, notification_id),
        kwargs={
            "provider_factory": fanout.fcm_factory(runtime.encryptor, options),
            "options": options,
        },
    )
    worker.start()
    seen: set[tuple[str, str | None]] = set()
    deadline = time.monotonic() + 20
    while worker.is_alive() and time.monotonic() < deadline:
        seen.update(_deliveries(tenant, notification_id).values())
        time.sleep(0.02)
    worker.join(20)
    # While FCM's Retry-After ran, a crash would have found the delivery queued.
    assert ("queued", None) in seen
    assert _deliveries(tenant, notification_id) == {"ann": ("sent", None)}
    assert len(fcm.messages(token)) == 1
