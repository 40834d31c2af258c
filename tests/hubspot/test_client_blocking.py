"""Driving the async client from synchronous code (as Spoke's services and Huey tasks do)."""

from __future__ import annotations

import pytest
from tests.hubspot.support import SandboxPortal

from spoke.hubspot import ContactExists, HubSpotClient, blocking_client

pytestmark = pytest.mark.timeout(60)


def test_calls_and_iterates_from_sync_code(portal: SandboxPortal) -> None:
    def build(http: object) -> HubSpotClient:
        import httpx

        assert isinstance(http, httpx.AsyncClient)
        return HubSpotClient(http, auth=portal.token, base_url=portal.base_url)

    with blocking_client(build) as hs:
        created = hs.call(lambda c: c.contacts.create({"email": "sync@example.com"}))
        assert hs.call(lambda c: c.contacts.get(created.id)).id == created.id
        hs.call(
            lambda c: c.contacts.batch_upsert_by_email(
                [(f"sync{i}@example.com", {}) for i in range(5)]
            )
        )
        emails = [r.properties["email"] for r in hs.iterate(lambda c: c.contacts.iter_all())]
        assert len(emails) == 6
        with pytest.raises(ContactExists):
            hs.call(lambda c: c.contacts.create({"email": "sync@example.com"}))
