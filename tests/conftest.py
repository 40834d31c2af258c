"""Fixtures for Spoke's own domains: every database test runs on SQLite and PostgreSQL.

Each backend gets one freshly migrated database per test session (so the migrations are
tested too) and one live HTTP server on a loopback port. Tests isolate themselves the way
tenants are isolated in production: each test creates its own workspace.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from tests.support.server import LiveServer
from tests.support.services import create_pg_database, drop_pg_database

from spoke.app import create_app
from spoke.config import LogSettings, Settings
from spoke.core import migrate
from spoke.core.db import session_scope
from spoke.core.logging import configure_logging
from spoke.runtime import Runtime, build_runtime
from spoke.workspaces import service as workspaces

BACKENDS = ("sqlite", "postgresql")
configure_logging(LogSettings(level="WARNING", json_output=True))
_counter = itertools.count()


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    # Tests never reach the real HubSpot: a closed loopback port unless a test says otherwise.
    overrides.setdefault(
        "hubspot", {"base_url": "http://127.0.0.1:9", "app_url": "http://127.0.0.1:9"}
    )
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        secret_key=Fernet.generate_key().decode(),  # type: ignore[arg-type]
        log={"level": "WARNING", "json_output": True},  # type: ignore[arg-type]
        **overrides,
    )  # type: ignore[arg-type]


@dataclass
class Backend:
    name: str
    database_url: str
    runtime: Runtime
    server: LiveServer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session", params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    name: str = request.param
    data_dir = tmp_path_factory.mktemp(f"spoke-{name}")
    url = f"sqlite:///{data_dir / 'spoke.db'}" if name == "sqlite" else create_pg_database()
    try:
        migrate.upgrade(url)
        runtime = build_runtime(make_settings(url, data_dir), queue_name=f"test-{name}")
        server = LiveServer(create_app(runtime)).start()
        yield Backend(name, url, runtime, server)
        server.stop()
        runtime.close()
    finally:
        if name == "postgresql":
            drop_pg_database(url)


@dataclass
class Tenant:
    """A fresh workspace with its owner's key, and an HTTP client that uses that key."""

    workspace_id: str
    slug: str
    key_id: str
    secret: str
    client_key: str
    http: httpx.Client
    backend: Backend

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.backend.url, headers={"X-Client-Key": self.client_key}, timeout=30
        )


def create_tenant(backend: Backend) -> Tenant:
    slug = f"t{next(_counter)}-{uuid.uuid4().hex[:8]}"
    with session_scope(backend.runtime.sessions) as session:
        created = workspaces.create_workspace(
            session,
            backend.runtime.encryptor,
            name=slug,
            slug=slug,
            owner_email=f"owner@{slug}.example",
        )
    http = httpx.Client(
        base_url=backend.url,
        timeout=30,
        headers={"X-Api-Key": created.key.id, "X-Secret-Key": created.secret},
    )
    return Tenant(
        created.workspace.id,
        slug,
        created.key.id,
        created.secret,
        created.workspace.client_key,
        http,
        backend,
    )


@pytest.fixture
def tenant(backend: Backend) -> Iterator[Tenant]:
    t = create_tenant(backend)
    yield t
    t.http.close()


@pytest.fixture
def other_tenant(backend: Backend) -> Iterator[Tenant]:
    t = create_tenant(backend)
    yield t
    t.http.close()
