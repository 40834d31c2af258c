"""Real `spoke worker` processes for the kill -9 tests, and the environment they share with
the test process (same database, same queue, short leases)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy.orm import Session
from tests.support.services import REDIS_URL, create_pg_database, drop_pg_database, require_redis

from spoke.config import Settings
from spoke.core import migrate
from spoke.runtime import Runtime, build_runtime
from spoke.workspaces import service as workspaces
from spoke.workspaces.service import CreatedWorkspace

# (database, queue): the embedded pair and the scaled-out pair.
KILL_BACKENDS = [("sqlite", None), ("postgresql", "redis")]
KILL_BACKEND_IDS = ["sqlite+sqlite-queue", "postgresql+redis"]


def settings_from_env(env: dict[str, str]) -> Settings:
    """The Settings a process started with `env` would read (nested `__` keys included)."""
    values: dict[str, Any] = {}
    for key, value in env.items():
        *parents, leaf = key.removeprefix("SPOKE_").lower().split("__")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return Settings(**values)


@contextmanager
def worker_environment(
    backend: tuple[str, str | None], tmp_path: Path, *, lease_seconds: float, **extra: str
) -> Iterator[tuple[dict[str, str], Runtime]]:
    """A migrated database and an empty queue; yields the workers' env and a runtime on it."""
    database, queue = backend
    url = f"sqlite:///{tmp_path / 'spoke.db'}" if database == "sqlite" else create_pg_database()
    env = {
        "SPOKE_DATABASE_URL": url,
        "SPOKE_DATA_DIR": str(tmp_path / "data"),
        "SPOKE_SECRET_KEY": Fernet.generate_key().decode(),
        "SPOKE_JOBS__LEASE_SECONDS": str(lease_seconds),
        "SPOKE_JOBS__SWEEP_GRACE_SECONDS": "1",
        "SPOKE_JOBS__WORKERS": "1",
        # Tests run side by side on one Redis: each gets a queue of its own.
        "SPOKE_JOBS__QUEUE_NAME": f"test-{uuid.uuid4().hex[:10]}",
        "SPOKE_LOG__LEVEL": "WARNING",
        **extra,
    }
    if queue == "redis":
        require_redis()
        env["SPOKE_REDIS_URL"] = REDIS_URL
    migrate.upgrade(url)
    runtime = build_runtime(settings_from_env(env))
    runtime.jobs.huey.flush()
    try:
        yield env, runtime
    finally:
        runtime.jobs.huey.flush()
        runtime.close()
        if database == "postgresql":
            drop_pg_database(url)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "spoke", "worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def kill_worker_when(
    env: dict[str, str],
    log: Path,
    reached: Callable[[], bool],
    *,
    timeout: float = 120,
    poll: float = 0.005,
) -> None:
    """Start a worker, wait until `reached()` holds (asked every `poll` s), then `kill -9` it."""
    worker = start_worker(env, log)
    try:
        deadline = time.monotonic() + timeout
        while not reached():
            assert worker.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker never got going: " + log.read_text()
            time.sleep(poll)
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()


def kill_test_workspace(session: Session, runtime: Runtime) -> CreatedWorkspace:
    """A fresh workspace for one kill test (tests share a database only within a run)."""
    return workspaces.create_workspace(
        session,
        runtime.encryptor,
        name="kill",
        slug=f"kill-{uuid.uuid4().hex[:6]}",
        owner_email="o@example.com",
    )


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """Ask politely (SIGINT drains in-flight jobs), then insist."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
