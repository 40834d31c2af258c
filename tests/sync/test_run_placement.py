"""Manual runs spread over the worker processes: the fair-share rule, the counts it reads
from the database, and four runs queued at once on two real `spoke worker` processes."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import Backend, Tenant
from tests.support.workers import kill_test_workspace, start_worker, stop_worker, worker_environment
from tests.sync.conftest import SandboxServer, new_portal

from spoke.connections import service as connections
from spoke.core import workers
from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.core.ids import new_id
from spoke.runtime import Runtime
from spoke.sync import run_placement, runs
from spoke.sync.models import ContactSyncRun
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.schemas import UserFields
from spoke.workspaces import service as workspaces


@pytest.mark.parametrize(
    ("mine", "elsewhere", "live", "takes"),
    [
        (0, 9, 2, True),  # holding nothing, a process always takes the run
        (1, 0, 2, False),  # another process is idle
        (1, 1, 2, True),  # 3 runs over 2: someone takes two
        (2, 1, 2, False),  # 4 runs over 2: the other has room
        (2, 2, 2, True),
        (1, 0, 1, True),  # alone: everything
        (3, 0, 1, True),
        (1, 5, 0, True),  # no live row at all (a heartbeat blip): don't hold work back
    ],
)
def test_fair_share(mine: int, elsewhere: int, live: int, takes: bool) -> None:
    assert run_placement.within_share(mine, elsewhere, live) is takes


def _run_row(workspace_id: str, owner: str, expires_in: float) -> ContactSyncRun:
    return ContactSyncRun(
        id=new_id("run"),
        workspace_id=workspace_id,
        direction="to_hubspot",
        source_app="spoke",
        dry_run=False,
        requested_by="t",
        status="running",
        lease_owner=owner,
        lease_expires_at=utcnow() + timedelta(seconds=expires_in),
        checkpoint={},
        samples={"conflicts": [], "errors": []},
        created_at=utcnow(),
    )


def test_counts_runs_held_elsewhere_and_live_processes(backend: Backend, tenant: Tenant) -> None:
    me, other = f"me_{uuid.uuid4().hex[:6]}", f"other-{uuid.uuid4().hex[:6]}"
    sessions = backend.runtime.sessions
    with session_scope(sessions) as session:
        elsewhere_before = run_placement.held_elsewhere(session, me)
        live_before = workers.live_workers(session)
    rows = [
        _run_row(tenant.workspace_id, f"{other}/a", 60),
        _run_row(tenant.workspace_id, f"{other}/b", 60),
        _run_row(tenant.workspace_id, f"{me}/c", 60),  # ours: not elsewhere
        _run_row(tenant.workspace_id, f"{other}/d", -1),  # its worker died: not held
    ]
    with session_scope(sessions) as session:
        session.add_all(rows)
        workers.beat(session, me)
        workers.beat(session, other)
        session.add(workers.JobWorker(id=f"gone-{uuid.uuid4().hex[:6]}", seen_at=utcnow()))
    with session_scope(sessions) as session:
        session.execute(  # a process killed half a minute ago
            sa.update(workers.JobWorker)
            .where(workers.JobWorker.id.startswith("gone-"))
            .values(seen_at=utcnow() - timedelta(seconds=workers.STALE_SECONDS * 2))
        )
    try:
        with session_scope(sessions) as session:
            # `_` in the worker id is no LIKE wildcard: `me_x/…` is not `meax/…`.
            assert run_placement.held_elsewhere(session, me) == elsewhere_before + 2
            assert workers.live_workers(session) == live_before + 2
    finally:
        with session_scope(sessions) as session:
            session.execute(
                sa.delete(ContactSyncRun).where(ContactSyncRun.id.in_([r.id for r in rows]))
            )
            session.execute(
                sa.delete(workers.JobWorker).where(
                    sa.or_(
                        workers.JobWorker.id.in_([me, other]),
                        workers.JobWorker.id.startswith("gone-"),
                    )
                )
            )


def test_a_run_handed_back_long_enough_is_taken_wherever_it_lands(
    backend: Backend, tenant: Tenant
) -> None:
    sessions = backend.runtime.sessions
    me = f"me-{uuid.uuid4().hex[:6]}"
    with session_scope(sessions) as session:
        # Enough live processes that a second run is more than this process's share.
        crowd = run_placement.held_elsewhere(session, me) + 3
    others = [f"other-{uuid.uuid4().hex[:6]}-{n}" for n in range(crowd)]
    with session_scope(sessions) as session:
        for worker_id in (me, *others):
            workers.beat(session, worker_id)
    long_ago = time.time() - run_placement.MAX_WAIT_SECONDS - 1
    try:
        with run_placement.placed(sessions, me, None) as first:
            assert first  # holding nothing, it takes the run
            for handed_back_at, takes in [(None, False), (time.time(), False), (long_ago, True)]:
                with run_placement.placed(sessions, me, handed_back_at) as taken:
                    assert taken is takes, handed_back_at
    finally:
        with session_scope(sessions) as session:
            session.execute(
                sa.delete(workers.JobWorker).where(workers.JobWorker.id.in_([me, *others]))
            )


RUNS = 4
USERS = 2000


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_runs_queued_together_spread_over_the_worker_processes(
    tmp_path: Path, hubspot_sandbox: SandboxServer
) -> None:
    # Each process has a thread for every run, so only placement can keep them apart; the
    # portals' budget (10 calls per 10 s, a page per call) keeps the runs going side by side
    # for several seconds.
    with worker_environment(
        ("postgresql", "redis"),
        tmp_path,
        lease_seconds=10,
        SPOKE_HUBSPOT__BASE_URL=hubspot_sandbox.url,
        SPOKE_HUBSPOT__RATE_LIMIT="10",
        SPOKE_JOBS__WORKERS=str(RUNS),
    ) as (env, runtime):
        procs = [start_worker(env, tmp_path / f"worker-{n}.log") for n in range(2)]
        try:
            deadline = time.monotonic() + 60
            while True:
                with session_scope(runtime.read_sessions) as session:
                    if workers.live_workers(session) == 2:
                        break
                assert time.monotonic() < deadline, "the workers never came up"
                time.sleep(0.1)
            run_ids = [_new_run(runtime, hubspot_sandbox) for _ in range(RUNS)]
            for run_id in run_ids:  # queued together, as a caller starting several would
                runtime.jobs.enqueue(runs.RUN_JOB, run_id=run_id)
            most: Counter[str] = Counter()
            seen: set[str] = set()
            deadline = time.monotonic() + 240
            while True:
                with session_scope(runtime.read_sessions) as session:
                    rows = session.execute(
                        sa.select(ContactSyncRun.status, ContactSyncRun.lease_owner).where(
                            ContactSyncRun.id.in_(run_ids)
                        )
                    ).all()
                now = Counter(o.split("/")[0] for s, o in rows if s == "running" and o)
                seen |= set(now)
                for process, held in now.items():
                    most[process] = max(most[process], held)
                if all(s == "succeeded" for s, _ in rows):
                    break
                assert time.monotonic() < deadline, f"runs did not finish: {rows}"
                time.sleep(0.02)
        finally:
            for proc in procs:
                stop_worker(proc)
    assert len(seen) == 2, f"one process ran every run: {most}"
    assert max(most.values()) == RUNS // 2, most


def _new_run(runtime: Runtime, sandbox: SandboxServer) -> str:
    portal = new_portal(sandbox, settings={"rate_limits": {"enabled": False}})
    with session_scope(runtime.sessions) as session:
        created = kill_test_workspace(session, runtime)
        ws_id = created.workspace.id
        caller = workspaces.Caller(
            workspace_id=ws_id, member_id=created.owner.id, role=None, key_id=created.key.id
        )
        users.write_users(
            session,
            Origin(ws_id, "api", "test"),
            [
                users.WriteItem(f"p{i}", UserFields.model_validate({"email": f"p{i}@example.com"}))
                for i in range(USERS)
            ],
        )
        connections.connect_private_app(
            session,
            runtime.settings,
            runtime.encryptor,
            caller,
            token=portal["private_app_token"],
            portal_id=portal["portal_id"],
            webhook_secret=None,
        )
        run = runs.start(
            session, ws_id, direction="to_hubspot", source_app=None, dry_run=False, actor="t"
        )
        return run.id
