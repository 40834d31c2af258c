"""`kill -9` of a `spoke worker` in the middle of a users import: after a restart the
import finishes and every row is present exactly once (one `created` change per user)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.support.workers import (
    KILL_BACKEND_IDS,
    KILL_BACKENDS,
    kill_test_workspace,
    kill_worker_when,
    start_worker,
    stop_worker,
    worker_environment,
)

from spoke.core.db import session_scope
from spoke.runtime import Runtime
from spoke.users import imports
from spoke.users.models import User, UserChange, UserImport

ROWS = 30_000
LEASE_SECONDS = 3


@pytest.fixture(params=KILL_BACKENDS, ids=KILL_BACKEND_IDS)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[dict[str, str], Runtime]]:
    with worker_environment(request.param, tmp_path, lease_seconds=LEASE_SECONDS) as pair:
        yield pair


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
        ws = kill_test_workspace(session, runtime).workspace
        # Small chunks: many commits, so the kill surely lands between two of them.
        imp = imports.create_from_text(session, ws.id, "big.csv", csv.encode(), rows_per_chunk=50)
        import_id = imp.id
        runtime.jobs.enqueue_after_commit(session, "users.run_import", import_id=import_id)

    log = tmp_path / "worker.log"
    kill_worker_when(env, log, lambda: _import_state(runtime, import_id).processed_rows >= 500)
    at_kill = _import_state(runtime, import_id)
    assert at_kill.status == "running"
    assert 0 < at_kill.processed_rows < ROWS, "kill must land mid-import"
    assert at_kill.lease_owner is not None

    time.sleep(LEASE_SECONDS + 0.5)  # the dead worker's lease runs out
    second = start_worker(env, log)
    try:
        deadline = time.monotonic() + 180
        while _import_state(runtime, import_id).status != "completed":
            assert second.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "import did not finish: " + log.read_text()
            time.sleep(0.1)
    finally:
        stop_worker(second)

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
