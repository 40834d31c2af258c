"""Manual sync (backfill) runs: dry runs, both directions, source app on conflicts,
one run at a time, `syncing` holding real-time changes back, progress and history."""

from __future__ import annotations

from typing import Any

from tests.sync.conftest import Sync


def _start(sync: Sync, **body: Any) -> dict[str, Any]:
    answer = sync.http.post("/v1/sync/contacts/runs", json=body)
    assert answer.status_code == 202, answer.text
    run: dict[str, Any] = answer.json()
    return run


def _finish(sync: Sync, run_id: str) -> dict[str, Any]:
    sync.runtime.jobs.run_now("sync.manual_run", run_id=run_id)
    answer = sync.http.get(f"/v1/sync/contacts/runs/{run_id}")
    assert answer.status_code == 200
    run: dict[str, Any] = answer.json()
    return run


def _existing_users(sync: Sync, count: int) -> None:
    """Users that existed before the sync was switched on (real-time never sent them)."""
    sync.http.put("/v1/sync/contacts/settings", json={"state": "paused"})
    items = [
        {"external_id": f"u{i}", "email": f"u{i}@example.com", "first_name": f"U{i}"}
        for i in range(count)
    ]
    assert sync.http.post("/v1/users/batch", json={"items": items}).status_code == 200
    sync.skip_changes_so_far()
    sync.http.put("/v1/sync/contacts/settings", json={"state": "active"})


def _pause(sync: Sync) -> None:
    """Hold real time back so records created in HubSpot now are left for the manual run."""
    assert sync.http.put("/v1/sync/contacts/settings", json={"state": "paused"}).status_code == 200


def test_dry_run_to_hubspot_counts_and_writes_nothing(sync: Sync) -> None:
    _existing_users(sync, 150)
    _pause(sync)
    sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts",
        {"properties": {"email": "u3@example.com", "firstname": "Other"}},
    )
    sync.settle()
    writes = sync.writes()
    run = _start(sync, direction="to_hubspot", dry_run=True)
    assert run["status"] == "queued"
    assert run["source_app"] == "spoke"
    done = _finish(sync, run["id"])
    assert done["status"] == "succeeded"
    assert done["progress"]["done"] == done["progress"]["total"] == 150
    assert (done["created"], done["updated"], done["duplicates"]) == (149, 1, 1)
    assert done["conflicts"] == 1
    assert done["samples"]["conflicts"] == [
        {"record": "u3", "field": "firstname", "spoke": "U3", "hubspot": "Other", "kept": "spoke"}
    ]
    assert sync.writes() == writes


def test_run_to_hubspot_copies_everything_and_source_wins(sync: Sync) -> None:
    _existing_users(sync, 120)
    _pause(sync)
    sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts",
        {
            "properties": {
                "email": "u5@example.com",
                "firstname": "Other",
                "lastname": "Kept",
                "hs_lead_status": "IN_PROGRESS",
            }
        },
    )
    sync.settle()
    run = _finish(sync, _start(sync, direction="to_hubspot")["id"])
    assert run["status"] == "succeeded"
    assert run["failed"] == 0
    assert (run["created"], run["duplicates"], run["progress"]["done"]) == (119, 1, 120)
    contacts = []
    after = None
    while True:
        page = sync.hubspot(
            "GET",
            "/crm/v3/objects/contacts?limit=100&properties=email,firstname,lastname,hs_lead_status"
            + (f"&after={after}" if after else ""),
        )
        contacts += page["results"]
        after = (page.get("paging") or {}).get("next", {}).get("after")
        if not after:
            break
    by_email = {c["properties"]["email"]: c["properties"] for c in contacts}
    assert len(by_email) == len(contacts) == 120
    assert by_email["u5@example.com"]["firstname"] == "U5"  # Spoke, the source, won
    assert by_email["u5@example.com"]["lastname"] == "Kept"  # a blank never overwrites
    # Contacts the run created carry the configured lead status; an existing one keeps its own.
    assert by_email["u5@example.com"]["hs_lead_status"] == "IN_PROGRESS"
    assert {p["hs_lead_status"] for e, p in by_email.items() if e != "u5@example.com"} == {
        "CONNECTED"
    }
    sync.http.put("/v1/sync/contacts/settings", json={"state": "active"})
    records = sync.http.get("/v1/sync/contacts/records", params={"limit": 500}).json()["data"]
    assert sum(1 for r in records if r["state"] == "in_sync") == 120
    before = sync.writes()
    sync.settle()  # real time has nothing left to send after the run
    assert sync.writes() == before


def test_run_to_spoke_with_hubspot_as_source_and_spoke_as_source(sync: Sync) -> None:
    _existing_users(sync, 2)
    _pause(sync)
    sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts/batch/create",
        {
            "inputs": [
                {"properties": {"email": "u0@example.com", "firstname": "FromHS"}},
                {"properties": {"email": "new@example.com", "firstname": "New"}},
            ]
        },
    )
    sync.settle()
    kept = _finish(sync, _start(sync, direction="to_spoke", source_app="spoke")["id"])
    assert kept["source_app"] == "spoke"
    assert sync.http.get("/v1/users/u0").json()["first_name"] == "U0"
    assert kept["conflicts"] == 1
    contact_id = sync.contact_by_email("new@example.com")["id"]
    assert sync.http.get(f"/v1/users/hubspot-{contact_id}").json()["first_name"] == "New"
    won = _finish(sync, _start(sync, direction="to_spoke")["id"])
    assert won["source_app"] == "hubspot"
    assert sync.http.get("/v1/users/u0").json()["first_name"] == "FromHS"
    history = sync.http.get("/v1/sync/contacts/runs").json()
    assert [r["id"] for r in history] == [won["id"], kept["id"]]


def test_one_run_at_a_time_and_real_time_waits_while_syncing(sync: Sync) -> None:
    run = _start(sync, direction="to_hubspot")
    second = sync.http.post("/v1/sync/contacts/runs", json={"direction": "to_spoke"})
    assert second.status_code == 409
    assert second.json()["code"] == "sync_run_in_progress"
    assert sync.http.get("/v1/sync/contacts/settings").json()["state"] == "syncing"
    sync.http.put("/v1/users/rt", json={"email": "rt@example.com", "first_name": "Waits"})
    sync.settle()
    assert sync.link_of("rt") is None  # queued behind the manual run
    _finish(sync, run["id"])
    sync.settle()
    assert sync.http.get("/v1/sync/contacts/settings").json()["state"] == "active"
    assert sync.contact_by_email("rt@example.com", "firstname")["properties"]["firstname"] == (
        "Waits"
    )


def test_unknown_run_is_404(sync: Sync) -> None:
    answer = sync.http.get("/v1/sync/contacts/runs/run_nope")
    assert answer.status_code == 404
    assert answer.json()["code"] == "sync_run_not_found"


def test_cli_runs_a_manual_sync_and_shows_the_result(sync: Sync, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    _existing_users(sync, 5)
    settings = sync.runtime.settings
    assert settings.secret_key is not None
    assert settings.hubspot.client_secret is not None
    env = {
        **os.environ,
        "SPOKE_DATABASE_URL": settings.database_url,
        "SPOKE_DATA_DIR": str(tmp_path / "cli"),
        "SPOKE_SECRET_KEY": settings.secret_key.get_secret_value(),
        "SPOKE_LOG__LEVEL": "WARNING",
        "SPOKE_HUBSPOT__BASE_URL": settings.hubspot.base_url,
        "SPOKE_HUBSPOT__CLIENT_ID": settings.hubspot.client_id or "",
        "SPOKE_HUBSPOT__CLIENT_SECRET": settings.hubspot.client_secret.get_secret_value(),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spoke",
            "sync",
            "run",
            "--workspace",
            sync.tenant.slug,
            "--direction",
            "to_hubspot",
            "--here",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "succeeded: 5 done, 5 created" in result.stdout
    assert sync.contact_by_email("u4@example.com", "firstname")["properties"]["firstname"] == "U4"
