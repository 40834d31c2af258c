"""Custom events through Spoke's client against the sandbox: definitions, send, batch send."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from tests.hubspot.support import SandboxPortal

from spoke.hubspot import (
    CustomEvent,
    EventDefinitionCreate,
    EventPropertyDefinition,
    HubSpotClient,
    ObjectNotFound,
    RateLimited,
    ValidationFailed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def define_login(client: HubSpotClient) -> str:
    definition = await client.events.create_definition(
        EventDefinitionCreate(
            label="Logged in",
            name="logged_in",
            description="A user signed in to the app",
            property_definitions=[
                EventPropertyDefinition(label="Platform", name="platform", type="string")
            ],
        )
    )
    return definition.fully_qualified_name


def timeline(portal: SandboxPortal, contact_id: str) -> list[dict[str, object]]:
    answer = portal.admin_call("GET", f"/contacts/{contact_id}/timeline")
    return [item for item in answer["results"] if item["type"] == "CUSTOM_EVENT"]


class TestDefinitions:
    async def test_create_get_list(self, client: HubSpotClient, portal: SandboxPortal) -> None:
        name = await define_login(client)
        assert name == f"pe{portal.id}_logged_in"
        fetched = await client.events.get_definition("logged_in")
        assert fetched.fully_qualified_name == name
        page = await client.events.list_definitions(search="logged")
        assert [d.name for d in page.results] == ["logged_in"]

    async def test_unknown_definition(self, client: HubSpotClient) -> None:
        with pytest.raises(ObjectNotFound):
            await client.events.get_definition("never_defined")


class TestSend:
    async def test_send_lands_on_the_contact_timeline(
        self, client: HubSpotClient, portal: SandboxPortal
    ) -> None:
        name = await define_login(client)
        contact = await client.contacts.create({"email": "ev@example.com"})
        when = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        await client.events.send(
            CustomEvent(
                event_name=name,
                email="ev@example.com",
                properties={"platform": "ios"},
                occurred_at=when,
                uuid="5a0c2f1e-0000-4000-8000-000000000001",
            )
        )
        await client.events.send(
            CustomEvent(event_name=name, object_id=contact.id, properties={"platform": "web"})
        )
        events = timeline(portal, contact.id)
        assert sorted(str(e["properties"]) for e in events) == sorted(
            [str({"platform": "ios"}), str({"platform": "web"})]
        )
        assert any(str(e["timestamp"]).startswith("2026-03-01T12:00:00") for e in events)

    async def test_batch_send_chunks_by_500(
        self, client: HubSpotClient, portal: SandboxPortal
    ) -> None:
        name = await define_login(client)
        contact = await client.contacts.create({"email": "batch-ev@example.com"})
        events = [
            CustomEvent(event_name=name, object_id=contact.id, properties={"platform": str(i)})
            for i in range(620)
        ]
        await client.events.send_batch(events)
        assert len(timeline(portal, contact.id)) == 620
        sends = portal.admin_call("GET", "/requests?limit=50")
        batch_calls = [r for r in sends["results"] if r["path"] == "/events/v3/send/batch"]
        assert len(batch_calls) == 2

    async def test_undefined_property_is_refused(self, client: HubSpotClient) -> None:
        name = await define_login(client)
        with pytest.raises(ValidationFailed):
            await client.events.send(
                CustomEvent(event_name=name, email="x@example.com", properties={"nope": "1"})
            )

    async def test_monthly_cap_is_not_retried(
        self, client: HubSpotClient, portal: SandboxPortal
    ) -> None:
        portal.admin_call("PATCH", "/settings", {"custom_event_monthly_cap": 1})
        name = await define_login(client)
        await client.events.send(CustomEvent(event_name=name, email="cap@example.com"))
        with pytest.raises(RateLimited) as caught:
            await client.events.send(CustomEvent(event_name=name, email="cap@example.com"))
        assert caught.value.policy == "MONTHLY_EVENT_COMPLETIONS"

    def test_exactly_one_identifier(self) -> None:
        with pytest.raises(ValueError, match="exactly one"):
            CustomEvent(event_name="pe1_x", email="a@b.com", object_id="1")
        with pytest.raises(ValueError, match="exactly one"):
            CustomEvent(event_name="pe1_x")
