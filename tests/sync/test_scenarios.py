"""Harder real-time scenarios against the sandbox: conflicts, merges, deletes and restores,
faults (5xx, 429, duplicated and reordered webhooks), webhook signatures, and the trigger
that starts a sync run when users change."""

from __future__ import annotations

import time

import httpx
import sqlalchemy as sa
from tests.sync.conftest import SpokeApp, Sync

from spoke.core.db import session_scope
from spoke.sync.models import HubSpotWebhookBatch


def _user(sync: Sync, external_id: str, **fields: object) -> None:
    answer = sync.http.put(f"/v1/users/{external_id}", json=fields)
    assert answer.status_code in (200, 201), answer.text


def test_conflict_hubspot_wins_and_the_losing_value_is_kept(sync: Sync) -> None:
    _user(sync, "c1", email="c1@example.com", first_name="Start")
    sync.settle()
    contact_id = sync.contact_by_email("c1@example.com")["id"]
    sync.http.put("/v1/sync/contacts/settings", json={"state": "paused"})
    sync.http.patch("/v1/users/c1", json={"first_name": "FromSpoke"})
    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact_id}", {"properties": {"firstname": "FromHS"}}
    )
    sync.settle()
    sync.http.put("/v1/sync/contacts/settings", json={"state": "active"})
    sync.settle()
    assert sync.http.get("/v1/users/c1").json()["first_name"] == "FromHS"
    assert sync.contact_by_email("c1@example.com", "firstname")["properties"]["firstname"] == (
        "FromHS"
    )
    link = sync.link_of("c1")
    assert link is not None
    assert [(c["field"], c["value"], c["side"]) for c in link.conflicts] == [
        ("first_name", "FromSpoke", "spoke")
    ]


def test_conflict_spoke_wins_when_chosen(sync: Sync) -> None:
    sync.http.put("/v1/sync/contacts/settings", json={"conflict_winner": "spoke"})
    _user(sync, "c2", email="c2@example.com", first_name="Start")
    sync.settle()
    contact_id = sync.contact_by_email("c2@example.com")["id"]
    sync.http.put(
        "/v1/sync/contacts/settings", json={"conflict_winner": "spoke", "state": "paused"}
    )
    sync.http.patch("/v1/users/c2", json={"first_name": "FromSpoke"})
    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact_id}", {"properties": {"firstname": "FromHS"}}
    )
    sync.settle()
    sync.http.put(
        "/v1/sync/contacts/settings", json={"conflict_winner": "spoke", "state": "active"}
    )
    sync.settle()
    assert sync.http.get("/v1/users/c2").json()["first_name"] == "FromSpoke"
    assert sync.contact_by_email("c2@example.com", "firstname")["properties"]["firstname"] == (
        "FromSpoke"
    )
    link = sync.link_of("c2")
    assert link is not None
    assert [(c["value"], c["side"]) for c in link.conflicts] == [("FromHS", "hubspot")]


def test_a_blank_in_hubspot_never_clears_spoke(sync: Sync) -> None:
    _user(sync, "b1", email="b1@example.com", first_name="Keep", last_name="Me")
    sync.settle()
    contact_id = sync.contact_by_email("b1@example.com")["id"]
    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact_id}", {"properties": {"lastname": ""}}
    )
    sync.settle()
    assert sync.http.get("/v1/users/b1").json()["last_name"] == "Me"


def test_hubspot_merge_repoints_links_without_duplicates(sync: Sync) -> None:
    first = sync.hubspot(
        "POST", "/crm/v3/objects/contacts", {"properties": {"email": "m1@example.com"}}
    )
    second = sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts",
        {"properties": {"email": "m2@example.com", "firstname": "Second"}},
    )
    sync.settle()
    assert sync.link_of(f"hubspot-{first['id']}") is not None
    sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts/merge",
        {"primaryObjectId": first["id"], "objectIdToMerge": second["id"]},
    )
    sync.settle()
    survivor = sync.link_of(f"hubspot-{first['id']}")
    merged = sync.link_of(f"hubspot-{second['id']}")
    assert survivor is not None
    assert survivor.hubspot_id == first["id"]
    assert merged is not None
    assert merged.hubspot_id is None
    assert merged.state == "excluded"
    assert sync.http.get(f"/v1/users/hubspot-{first['id']}").json()["first_name"] == "Second"
    records = sync.http.get("/v1/sync/contacts/records").json()["data"]
    ids = [r["hubspot_id"] for r in records if r["hubspot_id"]]
    assert len(ids) == len(set(ids))


def test_soft_delete_tags_the_user_and_restore_clears_it(sync: Sync) -> None:
    _user(sync, "d1", email="d1@example.com", first_name="D")
    sync.settle()
    contact_id = sync.contact_by_email("d1@example.com")["id"]
    sync.hubspot("DELETE", f"/crm/v3/objects/contacts/{contact_id}")
    sync.settle()
    user = sync.http.get("/v1/users/d1").json()
    assert user["tags"] == {"hubspot_deleted": "true"}
    link = sync.link_of("d1")
    assert link is not None
    assert (link.state, link.reason) == ("excluded", "deleted in HubSpot")
    sync.sandbox.admin(
        "POST", f"/portals/{sync.portal_id}/objects/contacts/{contact_id}/restore", {}
    )
    sync.settle()
    assert sync.http.get("/v1/users/d1").json()["tags"] == {}
    restored = sync.link_of("d1")
    assert restored is not None
    assert (restored.state, restored.hubspot_id) == ("in_sync", contact_id)


def test_propagated_delete_archives_the_contact(sync: Sync) -> None:
    sync.http.put("/v1/sync/contacts/settings", json={"delete_policy": "propagate"})
    _user(sync, "d2", email="d2@example.com", first_name="D")
    sync.settle()
    contact_id = sync.contact_by_email("d2@example.com")["id"]
    assert sync.http.delete("/v1/users/d2").status_code == 204
    sync.settle()
    gone = httpx.get(
        f"{sync.sandbox.url}/crm/v3/objects/contacts/{contact_id}",
        headers={"Authorization": f"Bearer {sync.portal_token}"},
        timeout=10,
    )
    assert gone.status_code == 404


def test_converges_with_5xx_429_and_duplicated_reordered_webhooks(sync: Sync) -> None:
    sync.sandbox.admin(
        "PATCH",
        f"/portals/{sync.portal_id}/settings",
        {
            "faults": {
                "error_rate": 0.1,
                "spurious_429_rate": 0.1,
                "webhook_duplicate_rate": 0.5,
                "webhook_reorder": True,
                "seed": 7,
            },
            "rate_limits": {"enabled": False, "retry_after_seconds": 0},
        },
    )
    batch = [
        {"external_id": f"f{i}", "email": f"f{i}@example.com", "first_name": f"S{i}"}
        for i in range(30)
    ]
    assert sync.http.post("/v1/users/batch", json={"items": batch}).status_code == 200
    sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        {
            "inputs": [
                {
                    "id": f"h{i}@example.com",
                    "idProperty": "email",
                    "properties": {"email": f"h{i}@example.com", "firstname": f"H{i}"},
                }
                for i in range(10)
            ]
        },
        retries=20,
    )
    sync.settle(timeout=60)
    for i in range(0, 30, 7):
        sync.http.patch(f"/v1/users/f{i}", json={"first_name": f"T{i}"})
    sync.settle(timeout=60)
    sync.sandbox.admin(
        "PATCH",
        f"/portals/{sync.portal_id}/settings",
        {"faults": {"error_rate": 0.0, "spurious_429_rate": 0.0}},
    )
    sync.settle()
    contacts = sync.hubspot("GET", "/crm/v3/objects/contacts?limit=100&properties=email,firstname")[
        "results"
    ]
    emails = [c["properties"]["email"] for c in contacts]
    assert len(emails) == len(set(emails)) == 40
    remote = {c["properties"]["email"]: c["properties"]["firstname"] for c in contacts}
    users = sync.http.get("/v1/users", params={"limit": 100}).json()["data"]
    local = {u["email"]: u["first_name"] for u in users}
    assert local == remote
    assert remote["f7@example.com"] == "T7"


def test_unsigned_or_forged_webhooks_are_refused(spoke_app: SpokeApp) -> None:
    url = f"{spoke_app.backend.url}/hooks/hubspot"
    body = b'[{"eventId":1,"subscriptionId":1,"portalId":1,"occurredAt":1,"objectId":1}]'
    assert httpx.post(url, content=body, timeout=10).status_code == 401
    forged = httpx.post(
        url,
        content=body,
        headers={
            "X-HubSpot-Signature-v3": "AAAA",
            "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000)),
        },
        timeout=10,
    )
    assert forged.status_code == 401
    assert forged.json()["code"] == "invalid_webhook_signature"


def test_a_user_write_enqueues_a_sync_run(sync: Sync) -> None:
    jobs = sync.runtime.jobs
    before = jobs.pending_count()
    _user(sync, "t1", email="t1@example.com")
    assert jobs.pending_count() == before + 1
    sync.settle()
    with session_scope(sync.runtime.sessions) as session:
        left = session.scalar(
            sa.select(sa.func.count())
            .select_from(HubSpotWebhookBatch)
            .where(
                HubSpotWebhookBatch.workspace_id == sync.tenant.workspace_id,
                HubSpotWebhookBatch.processed_at.is_(None),
            )
        )
    assert left == 0
