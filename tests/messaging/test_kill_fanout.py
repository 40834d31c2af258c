"""`kill -9` of a `spoke worker` in the middle of a push fan-out: after a restart every
recipient's device has received exactly one message, counted at the FCM emulator. What the
dead worker had in flight is settled as sent with an unknown outcome, not sent again, and
each of those was indeed received (the mark is committed just before the write)."""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.support.server import LiveServer
from tests.support.workers import (
    KILL_BACKEND_IDS,
    KILL_BACKENDS,
    start_worker,
    stop_worker,
    worker_environment,
)

from spoke.core import bulk
from spoke.core.clock import utcnow
from spoke.core.db import session_scope, table_of
from spoke.messaging import providers_config, service
from spoke.messaging.models import Delivery, Notification, Subscription
from spoke.messaging.send_journal import OUTCOME_UNKNOWN
from spoke.runtime import Runtime
from spoke.sandbox.fcm import FcmStore, create_fcm_app
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import User
from spoke.users.schemas import UserFields
from spoke.workspaces import service as workspaces

USERS = 3000
BATCH = 50
LEASE_SECONDS = 3


@pytest.fixture(params=KILL_BACKENDS, ids=KILL_BACKEND_IDS)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Runtime]]:
    with worker_environment(
        request.param,
        tmp_path,
        lease_seconds=LEASE_SECONDS,
        SPOKE_MESSAGING__SEND_BATCH=str(BATCH),
        SPOKE_MESSAGING__PUSH_CONCURRENCY="16",
    ) as pair:
        yield pair


def _state(runtime: Runtime, notification_id: str) -> tuple[str, int]:
    with session_scope(runtime.read_sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        sent = session.scalar(
            sa.select(sa.func.count())
            .select_from(Delivery)
            .where(Delivery.notification_id == notification_id, Delivery.status == "sent")
        )
        return notification.status, int(sent or 0)


def _seed(runtime: Runtime, fcm_url: str, key: dict[str, str]) -> str:
    with session_scope(runtime.sessions) as session:
        ws = workspaces.create_workspace(
            session,
            runtime.encryptor,
            name="kill",
            slug=f"kill-{uuid.uuid4().hex[:6]}",
            owner_email="o@example.com",
        ).workspace
        origin = Origin(ws.id, "test", "test")
        users.write_users(
            session, origin, [users.WriteItem(f"u{i}", UserFields()) for i in range(USERS)]
        )
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
                    "address": f"device-{i}:APA91b",
                    "platform": "android",
                    "status": "subscribed",
                    "status_reason": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(USERS)
            ],
        )
        providers_config.set_fcm(session, runtime.encryptor, ws.id, key, fcm_url)
        notification = service.create_push(
            session,
            runtime.jobs,
            ws.id,
            source="users",
            content={"title": "Sale", "body": "Today only"},
            recipients=[f"u{i}" for i in range(USERS)],
            request_group_id=None,
        )
        return notification.id


@pytest.mark.slow
def test_killed_worker_resumes_fanout_and_each_device_gets_exactly_one_message(
    setup: tuple[dict[str, str], Runtime], tmp_path: Path
) -> None:
    env, runtime = setup
    store = FcmStore(latency_ms=5)
    emulator = LiveServer(create_fcm_app(store)).start()
    try:
        key = httpx.post(
            f"{emulator.url}/_fcm/service-accounts", json={"project_id": "kill-project"}
        ).json()
        notification_id = _seed(runtime, emulator.url, key)
        log = tmp_path / "worker.log"
        first = start_worker(env, log)
        try:
            deadline = time.monotonic() + 120
            while len(store.messages) < 400:
                assert first.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no sends started: " + log.read_text()
                time.sleep(0.005)
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        status, sent_at_kill = _state(runtime, notification_id)
        assert status == "running"
        assert len(store.messages) < USERS, "the kill must land mid fan-out"

        time.sleep(LEASE_SECONDS + 0.5)
        second = start_worker(env, log)
        try:
            deadline = time.monotonic() + 120
            while _state(runtime, notification_id)[0] != "completed":
                assert second.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "fan-out did not finish: " + log.read_text()
                time.sleep(0.1)
        finally:
            stop_worker(second)
    finally:
        emulator.stop()

    status, sent = _state(runtime, notification_id)
    assert sent == USERS
    per_token = Counter(m["token"] for m in store.messages)
    assert set(per_token) == {f"device-{i}:APA91b" for i in range(USERS)}  # nobody missed
    duplicates = {token: n for token, n in per_token.items() if n > 1}
    assert duplicates == {}  # nobody got two
    with session_scope(runtime.read_sessions) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        assert notification.attempts >= 2
        rows = session.execute(
            sa.select(Delivery.status, Delivery.reason, Subscription.address)
            .join(Subscription, Subscription.user_id == Delivery.user_id)
            .where(Delivery.notification_id == notification_id)
        ).all()
    assert len(rows) == USERS
    assert {status for status, _reason, _token in rows} == {"sent"}
    unknown = [token for _status, reason, token in rows if reason == OUTCOME_UNKNOWN]
    assert all(per_token[token] == 1 for token in unknown)  # in flight = really sent
    assert sent_at_kill < USERS
