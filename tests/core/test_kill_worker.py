"""`kill -9` of a `spoke worker` in the middle of a users import: after a restart the
import finishes and every row is present exactly once (one `created` change per user)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from tests.support.services import REDIS_URL, create_pg_database, drop_pg_database, require_redis

from spoke.config import Settings
from spoke.core import migrate
from spoke.core.db import session_scope
from spoke.runtime import Runtime, build_runtime
from spoke.users import imports
from spoke.users.models import User, UserChange, UserImport
from spoke.workspaces import service as workspaces

ROWS = 30_000
LEASE_SECONDS = 3


@pytest.fixture(
    params=[("sqlite", None), ("postgresql", "redis")],
    ids=["sqlite+sqlite-queue", "postgresql+redis"],
)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Runtime]]:
    database, queue = request.param
    url = f"sqlite:///{tmp_path / 'spoke.db'}" if database == "sqlite" else create_pg_database()
    env = {
        "SPOKE_DATABASE_URL": url,
        "SPOKE_DATA_DIR": str(tmp_path / "data"),
        "SPOKE_SECRET_KEY": Fernet.generate_key().decode(),
        "SPOKE_JOBS__LEASE_SECONDS": str(LEASE_SECONDS),
        "SPOKE_JOBS__SWEEP_GRACE_SECONDS": "1",
        "SPOKE_JOBS__WORKERS": "1",
        "SPOKE_LOG__LEVEL": "WARNING",
    }
    if queue == "redis":
        require_redis()
        env["SPOKE_REDIS_URL"] = REDIS_URL
    migrate.upgrade(url)
    settings = Settings(
        **{k.removeprefix("SPOKE_").lower(): v for k, v in env.items() if "__" not in k}
    )  # type: ignore[arg-type]
    settings.jobs.lease_seconds = LEASE_SECONDS
    runtime = build_runtime(settings)
    runtime.jobs.huey.flush()
    try:
        yield env, runtime
    finally:
        runtime.jobs.huey.flush()
        runtime.close()
        if database == "postgresql":
            drop_pg_database(url)


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "spoke", "worker"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _import_state(runtime: Runtime, import_id: str) -> UserImport:
    with session_scope(runtime.read_sessions) as session:
        imp = session.get(UserImport, import_id)
        assert imp is not None
        return imp


@pytest.mark.slow
def test_killed_worker_resumes_import_without_loss_or_duplicates(
    setup: tuple[dict[str, str], Runtime], tmp_path: Path
) -> None:
    env, runtime = setup
    csv = "external_id,email,first_name,tags.cohort\n" + "".join(
        f"k{i},k{i}@example.com,Name{i},c{i % 7}\n" for i in range(ROWS)
    )
    with session_scope(runtime.sessions) as session:
        ws = workspaces.create_workspace(
            session,
            runtime.encryptor,
            name="kill",
            slug=f"kill-{uuid.uuid4().hex[:6]}",
            owner_email="o@example.com",
        ).workspace
        # Small chunks: many commits, so the kill surely lands between two of them.
        imp = imports.create_from_text(session, ws.id, "big.csv", csv.encode(), rows_per_chunk=50)
        import_id = imp.id
        runtime.jobs.enqueue_after_commit(session, "users.run_import", import_id=import_id)

    log = tmp_path / "worker.log"
    first = _start_worker(env, log)
    try:
        deadline = time.monotonic() + 120
        while _import_state(runtime, import_id).processed_rows < 500:
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker never got going: " + log.read_text()
            time.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = _import_state(runtime, import_id)
    assert at_kill.status == "running"
    assert 0 < at_kill.processed_rows < ROWS, "kill must land mid-import"
    assert at_kill.lease_owner is not None

    time.sleep(LEASE_SECONDS + 0.5)  # the dead worker's lease runs out
    second = _start_worker(env, log)
    try:
        deadline = time.monotonic() + 180
        while _import_state(runtime, import_id).status != "completed":
            assert second.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "import did not finish: " + log.read_text()
            time.sleep(0.1)
    finally:
        second.send_signal(signal.SIGINT)
        try:
            second.wait(20)
        except subprocess.TimeoutExpired:
            second.kill()

    done = _import_state(runtime, import_id)
    assert (done.processed_rows, done.created_count, done.failed_count) == (ROWS, ROWS, 0)
    assert done.attempts >= 2
    with session_scope(runtime.sessions) as session:
        count = session.scalar(
            sa.select(sa.func.count()).select_from(User).where(User.workspace_id == ws.id)
        )
        distinct = session.scalar(
            sa.select(sa.func.count(sa.distinct(User.external_id))).where(
                User.workspace_id == ws.id
            )
        )
        kinds = dict(
            session.execute(
                sa.select(UserChange.kind, sa.func.count())
                .where(UserChange.workspace_id == ws.id)
                .group_by(UserChange.kind)
            ).all()
        )
        seqs = session.execute(
            sa.select(sa.func.min(UserChange.seq), sa.func.max(UserChange.seq)).where(
                UserChange.workspace_id == ws.id
            )
        ).one()
    assert count == distinct == ROWS
    assert kinds == {"created": ROWS}  # no row was applied twice
    assert tuple(seqs) == (1, ROWS)  # the feed has no gaps
