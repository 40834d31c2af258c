"""The real PostgreSQL and Redis the suite runs against, and how to reach them.

Outside CI a missing service skips the tests that need it (with the reason printed);
inside CI (`CI=true`) it fails them, so a green CI run always covered both backends.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get(
    "SPOKE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("SPOKE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    message = f"{service} is not reachable on {host}:{port}"
    if in_ci():
        pytest.fail(f"{message} (CI must run every backend)")
    pytest.skip(f"{message}; start it to run these tests")


def require_postgres() -> None:
    url = sa.engine.make_url(PG_ADMIN_URL)
    require("PostgreSQL", url.host or "127.0.0.1", url.port or 5432)


def require_redis() -> None:
    url = sa.engine.make_url(REDIS_URL.replace("redis://", "redis+x://"))
    require("Redis", url.host or "127.0.0.1", url.port or 6379)


def create_pg_database(prefix: str = "spoke_test") -> str:
    """A brand-new database on the test server; returns its URL."""
    require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return str(
        sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    )


def drop_pg_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
