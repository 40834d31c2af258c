"""`kill -9` of a `spoke worker` in the middle of an events export: after a restart the run's
unknown batches are read back, it resumes from its cursor and finishes, and HubSpot received
every completion exactly once — counted by the sandbox before its uuid de-duplication."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.support.workers import (
    KILL_BACKEND_IDS,
    KILL_BACKENDS,
    kill_worker_when,
    start_worker,
    stop_worker,
    worker_environment,
)
from tests.sync.conftest import SandboxServer, new_portal

from spoke.connections import service as connections
from spoke.core.db import session_scope
from spoke.events import export_settings
from spoke.events import service as events
from spoke.events.export_models import EventExportRun, EventExportSettings
from spoke.events.export_schemas import ExportSettingsIn
from spoke.events.schemas import EventIn
from spoke.runtime import Runtime
from spoke.workspaces import service as workspaces

EVENTS = 6_000
USERS = 50
LEASE_SECONDS = 2


@pytest.fixture(params=KILL_BACKENDS, ids=KILL_BACKEND_IDS)
def setup(
    request: pytest.FixtureRequest, tmp_path: Path, hubspot_sandbox: SandboxServer
) -> Iterator[tuple[dict[str, str], Runtime]]:
    with worker_environment(
        request.param,
        tmp_path,
        lease_seconds=LEASE_SECONDS,
        SPOKE_HUBSPOT__BASE_URL=hubspot_sandbox.url,
        SPOKE_EVENTS_EXPORT__SETTLE_SECONDS="0",
        SPOKE_EVENTS_EXPORT__CHUNK="500",
        SPOKE_EVENTS_EXPORT__CONCURRENCY="1",
        SPOKE_EVENTS_EXPORT__RETRY_BASE_SECONDS="0.05",
    ) as pair:
        yield pair


def _counters(sandbox: SandboxServer, portal_id: int) -> dict[str, int]:
    return dict(
        httpx.get(f"{sandbox.url}/_sandbox/portals/{portal_id}/counters").json()["custom_events"]
    )


def _run(runtime: Runtime, workspace_id: str) -> EventExportRun:
    with session_scope(runtime.read_sessions) as session:
        run = session.scalar(
            sa.select(EventExportRun).where(EventExportRun.workspace_id == workspace_id)
        )
        assert run is not None
        return run


@pytest.mark.slow
def test_killed_worker_resumes_export_without_duplicates(
    setup: tuple[dict[str, str], Runtime], tmp_path: Path, hubspot_sandbox: SandboxServer
) -> None:
    env, runtime = setup
    portal = new_portal(
        hubspot_sandbox,
        settings={"rate_limits": {"enabled": False}, "faults": {"latency_ms": 40}},
    )
    portal_id = portal["portal_id"]
    token = {"Authorization": f"Bearer {portal['private_app_token']}"}
    for start in range(0, USERS, 100):
        inputs = [
            {"properties": {"email": f"k{i}@example.com"}}
            for i in range(start, min(USERS, start + 100))
        ]
        httpx.post(
            f"{hubspot_sandbox.url}/crm/v3/objects/contacts/batch/create",
            json={"inputs": inputs},
            headers=token,
            timeout=30,
        ).raise_for_status()
    with session_scope(runtime.sessions) as session:
        created = workspaces.create_workspace(
            session,
            runtime.encryptor,
            name="kill",
            slug=f"kill-{uuid.uuid4().hex[:6]}",
            owner_email="o@example.com",
        )
        ws_id = created.workspace.id
        caller = workspaces.Caller(
            workspace_id=ws_id, member_id=created.owner.id, role=None, key_id=created.key.id
        )
        batch = [
            (i, EventIn(type="track", name="Tick", email=f"k{i % USERS}@example.com"))
            for i in range(EVENTS)
        ]
        events.ingest(session, ws_id, batch)
        events.set_core(session, ws_id, "track", "Tick", True)
        connections.connect_private_app(
            session,
            runtime.settings,
            runtime.encryptor,
            caller,
            token=portal["private_app_token"],
            portal_id=portal_id,
            webhook_secret=None,
        )
        run = export_settings.save(session, ws_id, ExportSettingsIn(enabled=True))
        assert run is not None
        runtime.jobs.enqueue_after_commit(session, export_settings.RUN_JOB, run_id=run.id)

    log = tmp_path / "worker.log"
    kill_worker_when(
        env, log, lambda: _counters(hubspot_sandbox, portal_id)["received"] >= 1500, timeout=60
    )
    assert _counters(hubspot_sandbox, portal_id)["received"] < EVENTS, "kill must land mid-run"
    assert _run(runtime, ws_id).status == "running"

    time.sleep(LEASE_SECONDS + 0.5)
    second = start_worker(env, log)
    try:
        deadline = time.monotonic() + 120
        while _run(runtime, ws_id).status != "succeeded":
            assert second.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run did not finish: " + log.read_text()
            time.sleep(0.1)
    finally:
        stop_worker(second)

    done = _run(runtime, ws_id)
    assert done.attempts >= 2
    assert _counters(hubspot_sandbox, portal_id) == {
        "received": EVENTS,
        "duplicate_uuids": 0,
        "distinct_uuids": EVENTS,
        "month_count": EVENTS,
    }
    with session_scope(runtime.sessions) as session:
        row = session.get(EventExportSettings, ws_id)
        assert row is not None
        assert row.sent_total == EVENTS
