"""`kill -9` of a `spoke worker` in the middle of an email and of an SMS fan-out: after a
restart every recipient has exactly one message, counted at the SMTP sink and at the SMS
emulator. What the dead worker had in flight is not sent again: an email is settled as
sent with an unknown outcome (an SMTP server can't be asked), and each of those was indeed
received; an SMS is looked up at Twilio, confirmed if it arrived and sent again if not."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from tests.messaging.kill_support import Audience, Connect, kill_then_resume, outcomes, seed
from tests.support.server import LiveServer, free_port

from spoke.messaging import channel_providers
from spoke.messaging.send_journal import OUTCOME_UNKNOWN
from spoke.runtime import Runtime
from spoke.sandbox.sms import SmsStore, create_sms_app
from spoke.sandbox.smtp import SmtpStore, create_smtp_app

USERS = 400
KILL_AT = 100

# What a test needs from an emulator: how to connect a workspace to it, and the address of
# every message it has received so far.
Emulator = tuple[Connect, Callable[[], list[str]]]


@contextmanager
def _smtp() -> Iterator[Emulator]:
    store = SmtpStore(latency_ms=2)
    port = free_port()
    server = LiveServer(create_smtp_app(store, smtp_port=port)).start()

    def connect(session: Session, runtime: Runtime, workspace_id: str) -> None:
        values = {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from_address": "news@shop.example",
            "max_connections": 4,
        }
        channel_providers.set_smtp(session, runtime.encryptor, workspace_id, values)

    try:
        yield connect, lambda: [r for m in list(store.messages) for r in m.rcpt_tos]
    finally:
        server.stop()


@contextmanager
def _sms() -> Iterator[Emulator]:
    store = SmsStore(latency_ms=10)
    account = store.create_account()
    server = LiveServer(create_sms_app(store)).start()

    def connect(session: Session, runtime: Runtime, workspace_id: str) -> None:
        values = {**account, "from_number": "+15005550006", "base_url": server.url}
        channel_providers.set_twilio(session, runtime.encryptor, workspace_id, values)

    try:
        yield connect, lambda: [m["to"] for m in list(store.messages)]
    finally:
        server.stop()


CHANNELS = {
    "email": (
        Audience("email", USERS, lambda i: f"u{i}@kill.example"),
        _smtp,
        {"subject": "Sale", "text": "Today only"},
    ),
    "sms": (
        Audience("sms", USERS, lambda i: f"+8210{20000000 + i}"),
        _sms,
        {"body": "Sale today only"},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("channel", list(CHANNELS))
def test_killed_worker_resumes_and_each_recipient_gets_exactly_one_message(
    channel: str, kill_env: tuple[dict[str, str], Runtime], tmp_path: Path
) -> None:
    env, runtime = kill_env
    audience, emulator, content = CHANNELS[channel]
    with emulator() as (connect, received):
        notification_id = seed(runtime, audience, connect, content)
        kill_then_resume(
            env,
            runtime,
            notification_id,
            received=lambda: len(received()),
            kill_at=KILL_AT,
            total=USERS,
            log=tmp_path / "worker.log",
        )
        per_address = Counter(received())

    assert set(per_address) == {audience.address(i) for i in range(USERS)}  # nobody missed
    duplicates = {address: n for address, n in per_address.items() if n > 1}
    assert duplicates == {}  # nobody got two
    rows = outcomes(runtime, notification_id)
    assert len(rows) == USERS
    assert {status for status, _reason, _address in rows} == {"sent"}
    unknown = [address for _status, reason, address in rows if reason == OUTCOME_UNKNOWN]
    assert all(per_address[address] == 1 for address in unknown)  # in flight = really sent
    if channel == "sms":  # Twilio can be asked: nothing is left unknown
        assert unknown == []
