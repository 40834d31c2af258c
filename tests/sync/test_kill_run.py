"""`kill -9` of a `spoke worker` in the middle of a 50,000-record manual sync, each way: after
a restart the run resumes from its last checkpoint and finishes, every record is on the other
side exactly once, and the run's counts add up. Going to HubSpot the settings name a HubSpot
list: every contact ends up in it, and only the pages in flight at the kill repeat their
membership call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
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
from tests.sync.conftest import SandboxServer, new_portal

from spoke.connections import service as connections
from spoke.core.db import session_scope
from spoke.runtime import Runtime
from spoke.sync import runs
from spoke.sync.models import ContactLink, ContactSyncRun
from spoke.sync.settings import ensure_row
from spoke.users import service as users
from spoke.users.changes import Origin
from spoke.users.models import User
from spoke.users.schemas import UserFields
from spoke.workspaces import service as workspaces

RECORDS = 50_000
LEASE_SECONDS = 2
PORTAL_RATE_LIMIT = 190


@pytest.fixture(params=KILL_BACKENDS, ids=KILL_BACKEND_IDS)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, hubspot_sandbox: SandboxServer
) -> Iterator[tuple[dict[str, str], Runtime]]:
    with worker_environment(
        request.param,
        tmp_path,
        lease_seconds=LEASE_SECONDS,
        SPOKE_HUBSPOT__BASE_URL=hubspot_sandbox.url,
        # The portal's budget paces a backfill (one call per 100 records). These portals
        # stand for a Pro/Enterprise private app, which HubSpot grants 190 calls per 10 s
        # (the default 100 is the Free/Starter figure); their sandbox limits are off, so
        # only Spoke's own pacing applies. It halves the run without changing what it does.
        SPOKE_HUBSPOT__RATE_LIMIT=str(PORTAL_RATE_LIMIT),
    ) as pair:
        yield pair


def _run(runtime: Runtime, run_id: str) -> ContactSyncRun:
    with session_scope(runtime.read_sessions) as session:
        run = session.get(ContactSyncRun, run_id)
        assert run is not None
        return run


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("direction", ["to_hubspot", "to_spoke"])
def test_killed_worker_resumes_manual_sync_without_loss_or_duplicates(
    setup: tuple[dict[str, str], Runtime],
    tmp_path: Path,
    hubspot_sandbox: SandboxServer,
    direction: str,
) -> None:
    env, runtime = setup
    portal = new_portal(
        hubspot_sandbox,
        settings={"rate_limits": {"enabled": False}, "faults": {"latency_ms": 5}},
    )
    portal_url = f"{hubspot_sandbox.url}/_sandbox/portals/{portal['portal_id']}"
    as_portal = {"Authorization": f"Bearer {portal['private_app_token']}"}
    list_id: str | None = None
    if direction == "to_hubspot":
        made = httpx.post(
            f"{hubspot_sandbox.url}/crm/v3/lists",
            json={"name": "From Spoke", "objectTypeId": "0-1", "processingType": "MANUAL"},
            headers=as_portal,
            timeout=10,
        )
        list_id = str(made.json()["list"]["listId"])
    if direction == "to_spoke":
        # Contacts that were there before any app subscribed: no creation webhooks.
        seeded = httpx.post(
            f"{portal_url}/seed", json={"contacts": RECORDS, "webhooks": False}, timeout=120
        )
        assert seeded.json()["contacts"] == RECORDS
    with session_scope(runtime.sessions) as session:
        created = kill_test_workspace(session, runtime)
        ws_id = created.workspace.id
        caller = workspaces.Caller(
            workspace_id=ws_id, member_id=created.owner.id, role=None, key_id=created.key.id
        )
        if direction == "to_hubspot":
            users.write_users(
                session,
                Origin(ws_id, "api", "test"),
                [
                    users.WriteItem(
                        f"k{i}",
                        UserFields.model_validate(
                            {"email": f"k{i}@example.com", "first_name": "K"}
                        ),
                    )
                    for i in range(RECORDS)
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
        ensure_row(session, ws_id).hubspot_list_id = list_id
        run = runs.start(
            session, ws_id, direction=direction, source_app=None, dry_run=False, actor="t"
        )
        run_id = run.id
        runtime.jobs.enqueue_after_commit(session, runs.RUN_JOB, run_id=run_id)

    log = tmp_path / "worker.log"
    # Asked every 50 ms, a page or so: the kill still lands well inside the run.
    kill_worker_when(
        env, log, lambda: _run(runtime, run_id).done >= RECORDS // 5, timeout=400, poll=0.05
    )
    at_kill = _run(runtime, run_id)
    assert at_kill.status == "running"
    assert 0 < at_kill.done < RECORDS, "kill must land mid-run"

    time.sleep(LEASE_SECONDS + 0.5)
    second = start_worker(env, log)
    try:
        deadline = time.monotonic() + 400
        while _run(runtime, run_id).status != "succeeded":
            assert second.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run did not finish: " + log.read_text()
            time.sleep(0.1)
    finally:
        stop_worker(second)

    done = _run(runtime, run_id)
    assert done.attempts >= 2
    assert (done.done, done.total, done.failed) == (RECORDS, RECORDS, 0)
    # A page in flight at the kill is redone: its records count as found the second time.
    assert done.created + done.duplicates == RECORDS
    contacts = httpx.get(portal_url, timeout=30).json()["record_counts"]["contacts"]
    assert contacts == RECORDS
    with session_scope(runtime.sessions) as session:
        linked = session.scalar(
            sa.select(sa.func.count(sa.distinct(ContactLink.hubspot_id))).where(
                ContactLink.workspace_id == ws_id, ContactLink.state == "in_sync"
            )
        )
        spoke_users = session.scalar(
            sa.select(sa.func.count(sa.distinct(User.email))).where(User.workspace_id == ws_id)
        )
        rows = session.scalar(
            sa.select(sa.func.count()).select_from(User).where(User.workspace_id == ws_id)
        )
    assert linked == RECORDS
    assert spoke_users == rows == RECORDS
    if list_id is not None:
        listed = httpx.get(
            f"{hubspot_sandbox.url}/crm/v3/lists/{list_id}", headers=as_portal, timeout=10
        )
        assert listed.json()["list"]["size"] == RECORDS
        assert done.list_adds == RECORDS
        counters = httpx.get(f"{portal_url}/counters", timeout=10).json()
        calls = sum(
            n
            for key, n in counters["requests_by_endpoint"].items()
            if key.endswith("/memberships/add")
        )
        # One call per page of 100; at most the pages in flight at the kill call again.
        in_flight = runtime.settings.hubspot.backfill_concurrency
        assert RECORDS // 100 <= calls <= RECORDS // 100 + in_flight
