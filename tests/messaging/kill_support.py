"""What the `kill -9` fan-out tests share, whatever the channel: a workspace with many
recipients and a send to all of them, a real `spoke worker` killed once the emulator has
received some of the messages, a second worker that finishes the send, and the rows the
two runs left behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from tests.support.workers import (
    kill_test_workspace,
    kill_worker_when,
    start_worker,
    stop_worker,
)

from spoke.core import bulk
from spoke.core.clock import utcnow
from spoke.core.db import session_scope, table_of
from spoke.messaging import service
from spoke.messaging.models import Delivery, Notification, Subscription
from spoke.runtime import Runtime
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import User
from spoke.users.schemas import UserFields

LEASE_SECONDS = 3  # a killed worker's send is taken over this soon
SEND_BATCH = 50

# Configures the workspace's provider for the channel: (session, runtime, workspace id).
Connect = Callable[[Session, Runtime, str], None]


@dataclass(frozen=True)
class Audience:
    """`size` users and how each is reached: `address(i)` is user `u{i}`'s device token,
    email address or phone number."""

    channel: str
    size: int
    address: Callable[[int], str]

    def fields(self, i: int) -> UserFields:
        if self.channel == "email":
            return UserFields(email=self.address(i))
        if self.channel == "sms":
            return UserFields(phone=self.address(i))
        return UserFields()


def seed(runtime: Runtime, audience: Audience, connect: Connect, content: dict[str, Any]) -> str:
    """A fresh workspace, its users and a queued send to all of them; the notification id."""
    with session_scope(runtime.sessions) as session:
        ws = kill_test_workspace(session, runtime).workspace
        origin = Origin(ws.id, "test", "test")
        users.write_users(
            session,
            origin,
            [users.WriteItem(f"u{i}", audience.fields(i)) for i in range(audience.size)],
        )
        if audience.channel == "push":  # email and SMS addresses come from the user fields
            ids = dict(
                session.execute(
                    sa.select(User.external_id, User.id).where(User.workspace_id == ws.id)
                ).all()
            )
            now = utcnow()
            bulk.insert(
                session,
                table_of(Subscription),
                [
                    {
                        "workspace_id": ws.id,
                        "user_id": ids[f"u{i}"],
                        "channel": "push",
                        "address": audience.address(i),
                        "platform": "android",
                        "status": "subscribed",
                        "status_reason": None,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(audience.size)
                ],
            )
        connect(session, runtime, ws.id)
        notification = service.create_push(
            session,
            runtime.jobs,
            ws.id,
            source="users",
            content=content,
            recipients=[f"u{i}" for i in range(audience.size)],
            request_group_id=None,
            channel=audience.channel,
        )
        return notification.id


def state(runtime: Runtime, notification_id: str) -> tuple[str, int]:
    """The notification's status and how many of its deliveries are `sent`."""
    with session_scope(runtime.read_sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        sent = session.scalar(
            sa.select(sa.func.count())
            .select_from(Delivery)
            .where(Delivery.notification_id == notification_id, Delivery.status == "sent")
        )
        return notification.status, int(sent or 0)


def kill_then_resume(
    env: dict[str, str],
    runtime: Runtime,
    notification_id: str,
    *,
    received: Callable[[], int],
    kill_at: int,
    total: int,
    log: Path,
) -> int:
    """Start a worker, `kill -9` it once `received()` reaches `kill_at`, start another after
    the lease ran out and wait until the send completed; returns `received()` at the kill."""
    kill_worker_when(env, log, lambda: received() >= kill_at)
    at_kill = received()
    assert state(runtime, notification_id)[0] == "running"
    assert at_kill < total, "the kill must land mid fan-out"

    time.sleep(LEASE_SECONDS + 0.5)
    second = start_worker(env, log)
    try:
        deadline = time.monotonic() + 120
        while state(runtime, notification_id)[0] != "completed":
            assert second.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "fan-out did not finish: " + log.read_text()
            time.sleep(0.1)
    finally:
        stop_worker(second)
    return at_kill


def outcomes(runtime: Runtime, notification_id: str) -> list[tuple[str, str | None, str]]:
    """(status, reason, address) of every delivery, and the run count check."""
    with session_scope(runtime.read_sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        assert notification.attempts >= 2  # the killed run and the one that finished
        return [
            (status, reason, address)
            for status, reason, address in session.execute(
                sa.select(Delivery.status, Delivery.reason, Subscription.address)
                .join(
                    Subscription,
                    sa.and_(
                        Subscription.user_id == Delivery.user_id,
                        Subscription.channel == Delivery.channel,
                    ),
                )
                .where(Delivery.notification_id == notification_id)
            )
        ]
