from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from tests.messaging.support import Fcm
from tests.support.server import LiveServer

from spoke.sandbox.fcm import FcmStore, create_fcm_app


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
