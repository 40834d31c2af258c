"""`kill -9` of a `spoke worker` in the middle of a push fan-out: after a restart every
recipient's device shows exactly one notification, read at the FCM emulator. What the dead
worker had in flight is sent again: nothing is lost whether or not its request had left,
and a device that got both copies shows one (each delivery has its own tag)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session
from tests.messaging.kill_support import Audience, kill_then_resume, outcomes, seed
from tests.support.server import LiveServer

from spoke.messaging import providers_config
from spoke.runtime import Runtime
from spoke.sandbox.fcm import FcmStore, create_fcm_app

USERS = 3000
AUDIENCE = Audience("push", USERS, lambda i: f"device-{i}:APA91b")


@pytest.mark.slow
def test_killed_worker_resumes_fanout_and_each_device_gets_exactly_one_message(
    kill_env: tuple[dict[str, str], Runtime], tmp_path: Path
) -> None:
    env, runtime = kill_env
    log = tmp_path / "worker.log"
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
            log=log,
        )
    finally:
        emulator.stop()

    per_token = Counter(m["token"] for m in store.messages)
    assert set(per_token) == {AUDIENCE.address(i) for i in range(USERS)}  # nobody missed
    shown = {token: len(store.shown(token)) for token in per_token}
    assert set(shown.values()) == {1}  # every device shows one notification
    # Only what the dead worker had in flight can have gone twice, and at most twice.
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    resent = sum(e["count"] for e in events if e["event"] == "fanout.resent_after_crash")
    twice = [token for token, n in per_token.items() if n > 1]
    assert len(twice) <= resent
    assert max(per_token.values()) <= 2
    rows = outcomes(runtime, notification_id)
    assert len(rows) == USERS
    assert {(status, reason) for status, reason, _token in rows} == {("sent", None)}
