"""Email and SMS go through the fan-out's send journal like push: each delivery is marked
`sending` (with the run's `send_attempt`) before its message leaves, and what a dead run
left `sending` is settled as sent, not sent again."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
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

from spoke.core import leases
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.messaging import fanout
from spoke.messaging.models import Delivery, Notification
from spoke.messaging.send_journal import OUTCOME_UNKNOWN, SendJournal


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


def _accept(tenant: Tenant, channel: str, sink: Sink, sms: Sms) -> tuple[str, dict[str, str]]:
    """A two-recipient send on `channel`; returns its id and each user's address."""
    if channel == "email":
        connect_smtp(tenant, sink)
        addresses = {"ann": unique_email("ann"), "bob": unique_email("bob")}
        for user, address in addresses.items():
            put_user(tenant, user, email=address)
        accepted = send(tenant, "email", list(addresses), subject="Hello", text="Hi")
    else:
        connect_sms(tenant, sms)
        addresses = {"ann": unique_phone(), "bob": unique_phone()}
        for user, number in addresses.items():
            put_user(tenant, user, phone=number)
        accepted = send(tenant, "sms", list(addresses), body="Hi")
    return str(accepted["id"]), addresses


def _received(channel: str, sink: Sink, sms: Sms, address: str) -> int:
    return len(sink.messages(address) if channel == "email" else sms.messages(address))


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_each_delivery_is_marked_by_the_run_that_sent_it(
    tenant: Tenant, sink: Sink, sms: Sms, channel: str
) -> None:
    notification_id, addresses = _accept(tenant, channel, sink, sms)
    assert run_fanout(tenant, notification_id)["counts"]["sent"] == 2
    with session_scope(tenant.backend.runtime.read_sessions) as session:
        attempts = set(
            session.scalars(
                sa.select(Delivery.send_attempt).where(Delivery.notification_id == notification_id)
            )
        )
    (attempt,) = attempts  # one run marked them all
    assert attempt is not None
    assert all(_received(channel, sink, sms, a) == 1 for a in addresses.values())


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_what_a_dead_run_had_in_flight_is_settled_not_sent_again(
    tenant: Tenant, sink: Sink, sms: Sms, channel: str
) -> None:
    notification_id, addresses = _accept(tenant, channel, sink, sms)
    sessions = tenant.backend.runtime.sessions
    # A run that planned, marked ann's delivery `sending` and died before the answer.
    with session_scope(sessions) as session:
        assert leases.claim(session, Notification, notification_id, "dead-run", 60)
    assert fanout._plan_chunk(sessions, notification_id, "dead-run", fanout.FanoutOptions())
    with session_scope(sessions) as session:
        ann_delivery = session.scalar(
            sa.select(Delivery.id).where(
                Delivery.notification_id == notification_id, Delivery.external_id == "ann"
            )
        )
    assert ann_delivery is not None

    async def mark() -> None:
        journal = SendJournal(sessions, notification_id, "dead-run", lease_seconds=60, interval=0.0)
        await journal.write(ann_delivery, lambda: None)
        await journal.close()

    asyncio.run(mark())
    with session_scope(sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        notification.lease_expires_at = utcnow() - timedelta(seconds=1)

    result = run_fanout(tenant, notification_id)

    assert (result["status"], result["counts"]["sent"]) == ("completed", 2)
    assert _deliveries(tenant, notification_id) == {
        "ann": ("sent", OUTCOME_UNKNOWN),
        "bob": ("sent", None),
    }
    assert _received(channel, sink, sms, addresses["ann"]) == 0  # the dead run may have
    assert _received(channel, sink, sms, addresses["bob"]) == 1
