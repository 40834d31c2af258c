"""Email and SMS go through the fan-out's send journal like push: each delivery is marked
`sending` (with the run's `send_attempt`) before its message leaves, and what a dead run
left `sending` is settled: an SMS Twilio took is confirmed, one it didn't is sent again,
and an email (an SMTP server can't be asked) counts as sent."""

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
from spoke.messaging.send_journal import OUTCOME_CONFIRMED, OUTCOME_UNKNOWN, SendJournal


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


def _dead_run_marked(tenant: Tenant, notification_id: str, user: str) -> int:
    """A run that planned, marked `user`'s delivery `sending` and died before the answer
    (and before writing anything); its lease has run out. Returns the delivery id."""
    sessions = tenant.backend.runtime.sessions
    with session_scope(sessions) as session:
        assert leases.claim(session, Notification, notification_id, "dead-run", 60)
    assert fanout._plan_chunk(sessions, notification_id, "dead-run", fanout.FanoutOptions())
    with session_scope(sessions) as session:
        delivery = session.scalar(
            sa.select(Delivery.id).where(
                Delivery.notification_id == notification_id, Delivery.external_id == user
            )
        )
    assert delivery is not None

    async def mark() -> None:
        journal = SendJournal(sessions, notification_id, "dead-run", lease_seconds=60, interval=0.0)
        await journal.write(delivery, lambda: None)
        await journal.close()

    asyncio.run(mark())
    with session_scope(sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        notification.lease_expires_at = utcnow() - timedelta(seconds=1)
    return delivery


def test_what_a_dead_run_had_in_flight_by_email_is_settled_not_sent_again(
    tenant: Tenant, sink: Sink, sms: Sms
) -> None:
    # An SMTP server can't be asked whether it took a message: the row is settled as sent.
    notification_id, addresses = _accept(tenant, "email", sink, sms)
    _dead_run_marked(tenant, notification_id, "ann")

    result = run_fanout(tenant, notification_id)

    assert (result["status"], result["counts"]["sent"]) == ("completed", 2)
    assert _deliveries(tenant, notification_id) == {
        "ann": ("sent", OUTCOME_UNKNOWN),
        "bob": ("sent", None),
    }
    assert _received("email", sink, sms, addresses["ann"]) == 0  # the dead run may have
    assert _received("email", sink, sms, addresses["bob"]) == 1


def test_an_sms_a_dead_run_marked_but_never_wrote_is_sent_again(
    tenant: Tenant, sink: Sink, sms: Sms
) -> None:
    notification_id, addresses = _accept(tenant, "sms", sink, sms)
    _dead_run_marked(tenant, notification_id, "ann")

    result = run_fanout(tenant, notification_id)

    assert (result["status"], result["counts"]["sent"]) == ("completed", 2)
    assert _deliveries(tenant, notification_id) == {"ann": ("sent", None), "bob": ("sent", None)}
    assert [_received("sms", sink, sms, a) for a in addresses.values()] == [1, 1]


def test_an_sms_that_reached_twilio_before_the_crash_is_confirmed_not_sent_again(
    tenant: Tenant, sink: Sink, sms: Sms
) -> None:
    account = sms.account()
    connect_sms(tenant, sms, **account)
    addresses = {"ann": unique_phone(), "bob": unique_phone()}
    for user, number in addresses.items():
        put_user(tenant, user, phone=number)
    # Earlier messages to ann: another text, and the same text from another sender.
    sms.post_message(account, addresses["ann"], "Yesterday's news", "+15005550006")
    sms.post_message(account, addresses["ann"], "Hi", "+15005550001")
    notification_id = str(send(tenant, "sms", list(addresses), body="Hi")["id"])
    _dead_run_marked(tenant, notification_id, "ann")
    # What the dead run's write did before the kill: Twilio took it.
    sid = sms.post_message(account, addresses["ann"], "Hi", "+15005550006")

    result = run_fanout(tenant, notification_id)

    assert (result["status"], result["counts"]["sent"]) == ("completed", 2)
    assert _deliveries(tenant, notification_id) == {
        "ann": ("sent", OUTCOME_CONFIRMED),
        "bob": ("sent", None),
    }
    assert len(sms.messages(addresses["ann"])) == 3  # nothing more than before the run
    assert len(sms.messages(addresses["bob"])) == 1
    with session_scope(tenant.backend.runtime.read_sessions) as session:
        ann_message_id = session.scalar(
            sa.select(Delivery.provider_message_id).where(
                Delivery.notification_id == notification_id, Delivery.external_id == "ann"
            )
        )
    assert ann_message_id == sid  # so Twilio's delivery reports find the delivery


def test_an_sms_twilio_cannot_answer_for_is_settled_as_unknown(
    tenant: Tenant, sink: Sink, sms: Sms
) -> None:
    notification_id, addresses = _accept(tenant, "sms", sink, sms)
    _dead_run_marked(tenant, notification_id, "ann")
    sms.fault(400, to=addresses["ann"])  # the look-up of ann's messages is refused

    result = run_fanout(tenant, notification_id)

    assert (result["status"], result["counts"]["sent"]) == ("completed", 2)
    assert _deliveries(tenant, notification_id) == {
        "ann": ("sent", OUTCOME_UNKNOWN),
        "bob": ("sent", None),
    }
    assert [_received("sms", sink, sms, a) for a in addresses.values()] == [0, 1]
