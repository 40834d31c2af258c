from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.messaging.channel_support import Sink, Sms
from tests.messaging.kill_support import LEASE_SECONDS, SEND_BATCH
from tests.messaging.support import Fcm
from tests.support.server import LiveServer, free_port
from tests.support.workers import KILL_BACKEND_IDS, KILL_BACKENDS, worker_environment

from spoke.runtime import Runtime
from spoke.sandbox.fcm import FcmStore, create_fcm_app
from spoke.sandbox.sms import SmsStore, create_sms_app
from spoke.sandbox.smtp import SmtpStore, create_smtp_app


@pytest.fixture(scope="session")
def fcm_server() -> Iterator[tuple[str, FcmStore]]:
    store = FcmStore()
    server = LiveServer(create_fcm_app(store)).start()
    yield server.url, store
    server.stop()


@pytest.fixture
def fcm(fcm_server: tuple[str, FcmStore]) -> Iterator[Fcm]:
    url, store = fcm_server
    store.faults.clear()
    store.latency_ms = 0.0
    with httpx.Client(base_url=url, timeout=30) as http:
        yield Fcm(url, store, http)


# -- email and SMS ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[str, int, SmtpStore]]:
    store = SmtpStore()
    smtp_port = free_port()
    server = LiveServer(create_smtp_app(store, smtp_port=smtp_port)).start()
    yield server.url, smtp_port, store
    server.stop()


@pytest.fixture
def sink(smtp_server: tuple[str, int, SmtpStore]) -> Iterator[Sink]:
    url, smtp_port, store = smtp_server
    store.faults.clear()
    store.recipient_states.clear()
    store.username = store.password = None
    store.latency_ms = 0.0
    with httpx.Client(base_url=url, timeout=30) as http:
        yield Sink(url, smtp_port, store, http)


@pytest.fixture(scope="session")
def sms_server() -> Iterator[tuple[str, SmsStore]]:
    store = SmsStore()
    server = LiveServer(create_sms_app(store)).start()
    yield server.url, store
    server.stop()


@pytest.fixture
def sms(sms_server: tuple[str, SmsStore]) -> Iterator[Sms]:
    url, store = sms_server
    store.faults.clear()
    store.fault_rates.clear()
    store.number_states.clear()
    store.latency_ms = 0.0
    store.report_status = False
    store.callback_delay_ms = 50.0
    with httpx.Client(base_url=url, timeout=30) as http:
        yield Sms(url, store, http)


# -- kill -9 fan-out tests ---------------------------------------------------------------------


@pytest.fixture(params=KILL_BACKENDS, ids=KILL_BACKEND_IDS)
def kill_env(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Runtime]]:
    """A database and queue for real `spoke worker` processes, with short leases."""
    with worker_environment(
        request.param,
        tmp_path,
        lease_seconds=LEASE_SECONDS,
        SPOKE_MESSAGING__SEND_BATCH=str(SEND_BATCH),
        SPOKE_MESSAGING__PUSH_CONCURRENCY="16",
    ) as pair:
        yield pair
