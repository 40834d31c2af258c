"""Jobs on both queues (SqliteHuey and RedisHuey): after-commit sending, consumers,
periodic jobs, and the sweeper that resumes work whose lease ran out."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tests.conftest import Backend, Tenant
from tests.support.services import REDIS_URL, require_redis

from spoke.core import leases
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.core.jobs import EmbeddedWorker, JobContext, JobRuntime, job
from spoke.users import imports
from spoke.users.models import User, UserChange, UserImport

_seen: dict[str, list[int]] = {}
_seen_lock = threading.Lock()


@job("tests.record", retries=2, retry_delay=0)
def record(ctx: JobContext, token: str, value: int, fail_first: bool = False) -> None:
    with _seen_lock:
        calls = _seen.setdefault(token, [])
        calls.append(value)
        if fail_first and len(calls) == 1:
            raise RuntimeError("first attempt fails on purpose")


@pytest.fixture(params=["sqlite-queue", "redis-queue"])
def huey(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Huey]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite-queue":
        queue: Huey = SqliteHuey(name=name, filename=str(tmp_path / "jobs.db"), results=False)
    else:
        require_redis()
        queue = RedisHuey(name=name, url=REDIS_URL, results=False)
    yield queue
    queue.flush()


@pytest.fixture
def jobs(backend: Backend, huey: Huey) -> JobRuntime:
    rt = backend.runtime
    return JobRuntime(rt.settings, rt.sessions, huey, rt.encryptor)


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


class TestEnqueueAfterCommit:
    def test_rolled_back_transaction_sends_nothing(self, jobs: JobRuntime) -> None:
        def failing_request() -> None:
            with session_scope(jobs.sessions) as session:
                jobs.enqueue_after_commit(session, "tests.record", token="x", value=1)
                raise RuntimeError("the request failed")

        with pytest.raises(RuntimeError):
            failing_request()
        assert jobs.pending_count() == 0

    def test_job_is_sent_only_when_the_commit_happens(self, jobs: JobRuntime) -> None:
        with session_scope(jobs.sessions) as session:
            jobs.enqueue_after_commit(session, "tests.record", token="y", value=1)
            session.execute(sa.text("SELECT 1"))
            assert jobs.pending_count() == 0  # still inside the transaction
        assert jobs.pending_count() == 1

    def test_unknown_job_is_refused_at_once(self, jobs: JobRuntime) -> None:
        with session_scope(jobs.sessions) as session, pytest.raises(KeyError):
            jobs.enqueue_after_commit(session, "tests.nope")


class TestConsumer:
    def test_consumer_runs_jobs_and_retries_failures(self, jobs: JobRuntime) -> None:
        token = uuid.uuid4().hex
        worker = EmbeddedWorker(jobs)
        worker.start()
        try:
            jobs.enqueue("tests.record", token=token, value=7, fail_first=True)
            for n in range(5):
                jobs.enqueue("tests.record", token=token + "-many", value=n)
            _wait_for(lambda: len(_seen.get(token, [])) == 2)
            _wait_for(lambda: sorted(_seen.get(token + "-many", [])) == [0, 1, 2, 3, 4])
        finally:
            worker.stop()
        assert _seen[token] == [7, 7]  # failed once, retried once, then done

    def test_an_idle_worker_wakes_when_its_process_enqueues(self, jobs: JobRuntime) -> None:
        # The doorbell ends an idle worker's wait; counted by wake-ups, not by the clock:
        # the worker's poll is set to an hour, so only a ring can get the job run.
        token = uuid.uuid4().hex
        consumer = jobs.consumer(workers=1, embedded=True)
        for worker, _process in consumer.worker_threads:
            worker.delay = worker.default_delay = worker.max_delay = 3600.0
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        try:
            time.sleep(0.2)  # let the worker find the queue empty and go to sleep
            jobs.enqueue("tests.record", token=token, value=1)
            _wait_for(lambda: _seen.get(token) == [1], timeout=20)
        finally:
            consumer.stop(graceful=True)
            thread.join(10)
        assert not thread.is_alive()

    def test_periodic_sweeper_resumes_an_import_whose_worker_died(
        self, jobs: JobRuntime, tenant: Tenant
    ) -> None:
        csv = "external_id,email\n" + "".join(f"s{i},s{i}@example.com\n" for i in range(1200))
        with session_scope(jobs.sessions) as session:
            imp = imports.create_from_text(session, tenant.workspace_id, "s.csv", csv.encode())
            import_id = imp.id
        # A worker claimed it, applied nothing, and died: its lease ran out long ago.
        with session_scope(jobs.sessions) as session:
            session.execute(
                sa.update(UserImport)
                .where(UserImport.id == import_id)
                .values(
                    status="running",
                    lease_owner="dead-host:1:x",
                    attempts=1,
                    lease_expires_at=utcnow() - timedelta(seconds=5),
                )
            )
        worker = EmbeddedWorker(jobs)  # the scheduler runs `core.sweep` when it starts
        worker.start()
        try:

            def done() -> bool:
                with session_scope(jobs.sessions) as session:
                    return session.get(UserImport, import_id).status == "completed"  # type: ignore[union-attr]

            _wait_for(done, timeout=60)
        finally:
            worker.stop()
        with session_scope(jobs.sessions) as session:
            imp = session.get(UserImport, import_id)
            assert imp is not None
            assert (imp.processed_rows, imp.created_count, imp.attempts) == (1200, 1200, 2)
            assert (
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(User)
                    .where(User.workspace_id == tenant.workspace_id)
                )
                == 1200
            )

    def test_a_live_lease_is_not_taken_over(self, jobs: JobRuntime, tenant: Tenant) -> None:
        csv = "external_id\n" + "".join(f"l{i}\n" for i in range(10))
        with session_scope(jobs.sessions) as session:
            imp = imports.create_from_text(session, tenant.workspace_id, "l.csv", csv.encode())
            import_id = imp.id
        with session_scope(jobs.sessions) as session:
            session.execute(
                sa.update(UserImport)
                .where(UserImport.id == import_id)
                .values(
                    status="running",
                    lease_owner="busy-host:1:x",
                    lease_expires_at=utcnow() + timedelta(minutes=5),
                )
            )
        assert imports.process(jobs.sessions, import_id, owner="me", lease_seconds=5) is False
        with session_scope(jobs.sessions) as session:
            imp2 = session.get(UserImport, import_id)
            assert imp2 is not None
            assert imp2.processed_rows == 0
            assert (
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(UserChange)
                    .where(UserChange.workspace_id == tenant.workspace_id)
                )
                == 0
            )


class _OtherBase(DeclarativeBase):
    pass


class _Unmigrated(leases.Leased, _OtherBase):
    """A kind of work whose table does not exist (e.g. a release not migrated yet)."""

    __tablename__ = "sweeper_test_missing_table"
    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column()


def test_a_broken_kind_does_not_stop_the_sweeper(backend: Backend, tenant: Tenant) -> None:
    sessions = backend.runtime.sessions
    with session_scope(sessions) as session:
        imp = imports.create_from_text(session, tenant.workspace_id, "b.csv", b"external_id\nx1\n")
        session.execute(
            sa.update(UserImport)
            .where(UserImport.id == imp.id)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )
    broken = leases.Sweepable(_Unmigrated, "tests.record", "token")
    leases._SWEEPABLES.insert(0, broken)
    sent: list[tuple[str, dict[str, object]]] = []
    try:
        with session_scope(sessions) as session:
            leases.sweep(session, lambda name, **kw: sent.append((name, kw)), grace_seconds=60)
    finally:
        leases._SWEEPABLES.remove(broken)
    assert ("users.run_import", {"import_id": imp.id}) in sent
