"""Webhook batches that keep failing to apply are parked with their error after five
attempts, are listed and can be retried, and never hold up the batches after them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import sqlalchemy as sa
from tests.sync.conftest import Sync

from spoke.core.db import session_scope
from spoke.hubspot.signatures import sign_v3
from spoke.sync.models import HubSpotWebhookBatch
from spoke.sync.webhooks import PARK_AFTER


def _deliver(sync: Sync, events: list[dict[str, object]]) -> None:
    """A delivery signed as HubSpot signs it (v3, with the app's client secret)."""
    secret = sync.runtime.settings.hubspot.client_secret
    assert secret is not None
    url = f"{sync.tenant.backend.url}/hooks/hubspot"
    body = orjson.dumps(events)
    stamp = str(int(time.time() * 1000))
    answer = httpx.post(
        url,
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(secret.get_secret_value(), "POST", url, body, stamp),
            "X-HubSpot-Request-Timestamp": stamp,
        },
        timeout=10,
    )
    assert answer.status_code == 204, answer.text


def _batches(sync: Sync, state: str) -> list[dict[str, object]]:
    answer = sync.http.get("/v1/sync/contacts/webhooks", params={"state": state})
    assert answer.status_code == 200, answer.text
    data: list[dict[str, object]] = answer.json()["data"]
    return data


def _time_passes(sync: Sync) -> None:
    with session_scope(sync.runtime.sessions) as session:
        session.execute(
            sa.update(HubSpotWebhookBatch)
            .where(
                HubSpotWebhookBatch.workspace_id == sync.tenant.workspace_id,
                HubSpotWebhookBatch.next_attempt_at.is_not(None),
            )
            .values(next_attempt_at=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_a_batch_that_keeps_failing_is_parked_and_blocks_nothing(sync: Sync) -> None:
    sync.http.put("/v1/users/p1", json={"email": "p1@example.com", "first_name": "Before"})
    sync.settle()
    contact_id = sync.contact_by_email("p1@example.com")["id"]
    broken = {
        "eventId": 1,
        "subscriptionId": 1,
        "portalId": sync.portal_id,
        "occurredAt": "yesterday",  # not a timestamp: this batch cannot be applied
        "subscriptionType": "contact.propertyChange",
        "objectId": int(contact_id),
        "propertyName": "firstname",
        "propertyValue": "x",
    }
    _deliver(sync, [broken])
    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact_id}", {"properties": {"firstname": "After"}}
    )
    sync.settle()
    # The change delivered after the broken batch is applied all the same.
    assert sync.http.get("/v1/users/p1").json()["first_name"] == "After"
    [pending] = _batches(sync, "pending")
    assert pending["attempts"] == 1
    assert "ValueError" in str(pending["error"])
    assert pending["next_attempt_at"] is not None

    for _ in range(PARK_AFTER - 1):
        _time_passes(sync)
        sync.settle()
    assert _batches(sync, "pending") == []
    [parked] = _batches(sync, "parked")
    assert parked["attempts"] == PARK_AFTER
    assert parked["events"] == 1
    assert parked["parked_at"] is not None
    settings = sync.http.get("/v1/sync/contacts/settings").json()
    assert settings["parked_webhook_batches"] == 1

    # Parked, it no longer counts as work; a retry puts it back with fresh attempts.
    retried = sync.http.post(f"/v1/sync/contacts/webhooks/{parked['id']}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["state"], retried.json()["attempts"]) == ("pending", 0)
    sync.settle()
    [again] = _batches(sync, "pending")
    assert again["attempts"] == 1


def test_retrying_an_applied_or_unknown_batch_is_refused(sync: Sync) -> None:
    sync.http.put("/v1/users/p2", json={"email": "p2@example.com"})
    sync.settle()
    contact_id = sync.contact_by_email("p2@example.com")["id"]
    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact_id}", {"properties": {"firstname": "Z"}}
    )
    sync.settle()
    applied = _batches(sync, "applied")
    assert applied
    answer = sync.http.post(f"/v1/sync/contacts/webhooks/{applied[0]['id']}/retry")
    assert answer.status_code == 409
    assert answer.json()["code"] == "sync_webhook_batch_applied"
    unknown = sync.http.post("/v1/sync/contacts/webhooks/999999999/retry")
    assert unknown.status_code == 404
    assert unknown.json()["code"] == "sync_webhook_batch_not_found"
    assert sync.http.get("/v1/sync/contacts/webhooks", params={"state": "nope"}).status_code == 422
