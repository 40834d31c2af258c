"""`kill -9` of a `spoke worker` in the middle of a push fan-out: after a restart every
recipient's device has received exactly one message, counted at the FCM emulator. What the
dead worker had in flight is settled as sent with an unknown outcome, not sent again, and
each of those was indeed received (the mark is committed just before the write)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session
from tests.messaging.kill_support import Audience, kill_then_resume, outcomes, seed
from tests.support.server import LiveServer

from spoke.messaging import providers_config
from spoke.messaging.send_journal import OUTCOME_UNKNOWN
from spoke.runtime import Runtime
from spoke.sandbox.fcm import FcmStore, create_fcm_app

USERS = 3000
AUDIENCE = Audience("push", USERS, lambda i: f"device-{i}:APA91b")


@pytest.mark.slow
def test_killed_worker_resumes_fanout_and_each_device_gets_exactly_one_message(
    kill_env: tuple[dict[str, str], Runtime], tmp_path: Path
) -> None:
    env, runtime = kill_env
    store = FcmStore(latency_ms=5)
    emulator = LiveServer(create_fcm_app(store)).start()
    try:
        key = httpx.post(
            f"{emulator.url}/_fcm/service-accounts", json={"project_id": "kill-project"}
        ).json()

        def connect(session: Session, runtime: Runtime, workspace_id: str) -> None:
            providers_config.set_fcm(session, runtime.encryptor, workspace_id, key, emulator.url)

        notification_id = seed(runtime, AUDIENCE, connect, {"title": "Sale", "body": "Today only"})
        kill_then_resume(
            env,
            runtime,
            notification_id,
            received=lambda: len(store.messages),
            kill_at=400,
            total=USERS,
            log=tmp_path / "worker.log",
        )
    finally:
        emulator.stop()

    per_token = Counter(m["token"] for m in store.messages)
    assert set(per_token) == {AUDIENCE.address(i) for i in range(USERS)}  # nobody missed
    duplicates = {token: n for token, n in per_token.items() if n > 1}
    assert duplicates == {}  # nobody got two
    rows = outcomes(runtime, notification_id)
    assert len(rows) == USERS
    assert {status for status, _reason, _token in rows} == {"sent"}
    unknown = [token for _status, reason, token in rows if reason == OUTCOME_UNKNOWN]
    assert all(per_token[token] == 1 for token in unknown)  # in flight = really sent
