"""The periodic reconcile: contacts HubSpot changed whose webhooks never arrived are found by
search (`lastmodifieddate` with a look-back) and applied, past the search result cap by
`hs_object_id` windows even when every contact shares one modification time."""

from __future__ import annotations

import time

import sqlalchemy as sa
from tests.sync.conftest import Sync

from spoke.core.db import session_scope
from spoke.sync.engine import Engine
from spoke.sync.models import HubSpotWebhookBatch
from spoke.users.models import User


def _lose_webhooks(sync: Sync) -> None:
    """Wait for the sandbox to deliver, then drop what arrived, as if it never had."""
    deadline = time.monotonic() + 10
    while sync.sandbox.pending_deliveries() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    with session_scope(sync.runtime.sessions) as session:
        session.execute(
            sa.delete(HubSpotWebhookBatch).where(
                HubSpotWebhookBatch.workspace_id == sync.tenant.workspace_id
            )
        )


def _reconcile(sync: Sync) -> int:
    return Engine(
        sync.runtime.sessions,
        sync.runtime.settings,
        sync.runtime.encryptor,
        sync.tenant.workspace_id,
    ).reconcile()


def test_reconcile_applies_a_change_whose_webhook_was_lost(sync: Sync) -> None:
    sync.http.put("/v1/users/r1", json={"email": "r1@example.com", "first_name": "Before"})
    sync.settle()
    contact_id = sync.contact_by_email("r1@example.com")["id"]
    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact_id}", {"properties": {"firstname": "After"}}
    )
    _lose_webhooks(sync)
    sync.settle()
    assert sync.http.get("/v1/users/r1").json()["first_name"] == "Before"
    writes = sync.writes()
    assert _reconcile(sync) >= 1
    assert sync.http.get("/v1/users/r1").json()["first_name"] == "After"
    feed = sync.feed("r1")
    assert [o for o, _ in feed] == ["api", "sync.hubspot"]
    assert _reconcile(sync) >= 1  # the look-back reads it again, and nothing is written
    assert len(sync.feed("r1")) == 2
    sync.settle()
    assert sync.writes() == writes


def test_reconcile_pages_past_the_search_cap_with_one_shared_timestamp(sync: Sync) -> None:
    sync.sandbox.admin("PATCH", f"/portals/{sync.portal_id}/settings", {"search_result_cap": 40})
    seeded = sync.sandbox.admin(
        "POST", f"/portals/{sync.portal_id}/seed", {"contacts": 130, "seed": 3}
    )
    assert seeded["contacts"] == 130
    _lose_webhooks(sync)
    assert _reconcile(sync) == 130
    with session_scope(sync.runtime.sessions) as session:
        count = session.scalar(
            sa.select(sa.func.count())
            .select_from(User)
            .where(User.workspace_id == sync.tenant.workspace_id)
        )
        distinct = session.scalar(
            sa.select(sa.func.count(sa.distinct(User.email))).where(
                User.workspace_id == sync.tenant.workspace_id
            )
        )
    assert count == distinct == 130
