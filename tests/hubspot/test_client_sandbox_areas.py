"""Properties, owners, associations, lists, engagements and rate limits through Spoke's client,
against the sandbox over HTTP."""

from __future__ import annotations

import httpx
import pytest
from tests.hubspot.conftest import create_portal
from tests.hubspot.support import SandboxPortal

from spoke.hubspot import (
    ASSOCIATION_TYPES,
    AssociationCategory,
    AssociationCreate,
    AssociationInput,
    AssociationSpec,
    Conflict,
    HubSpotClient,
    ObjectNotFound,
    PropertyCreate,
    PropertyOption,
    RateLimited,
    RateLimiter,
    RetryPolicy,
    SearchRequest,
)
from spoke.hubspot.models import ObjectId
from spoke.hubspot.ratelimit import InMemoryBucketStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class TestProperties:
    async def test_list_get_create(self, client: HubSpotClient) -> None:
        names = {p.name for p in await client.properties.list("contacts")}
        assert {"email", "firstname", "lastname", "hs_object_id"} <= names

        email = await client.properties.get("contacts", "email")
        assert email.type == "string"

        definition = PropertyCreate(
            name="spoke_plan",
            label="Plan",
            type="enumeration",
            field_type="select",
            group_name="contactinformation",
            options=[
                PropertyOption(label="Free", value="free", display_order=1),
                PropertyOption(label="Pro", value="pro", display_order=2),
            ],
        )
        created = await client.properties.create("contacts", definition)
        assert created.name == "spoke_plan"
        assert [o.value for o in created.options] == ["free", "pro"]
        with pytest.raises(Conflict):
            await client.properties.create("contacts", definition)

        contact = await client.contacts.create({"email": "plan@example.com", "spoke_plan": "pro"})
        assert contact.properties["spoke_plan"] == "pro"

    async def test_unknown_property(self, client: HubSpotClient) -> None:
        with pytest.raises(ObjectNotFound):
            await client.properties.get("contacts", "no_such_property")


class TestOwners:
    async def test_list_and_get(self, client: HubSpotClient) -> None:
        owners = [o async for o in client.owners.iter_all()]
        assert owners
        first = owners[0]
        assert (await client.owners.get(first.id)).email == first.email
        assert first.email is not None
        page = await client.owners.list(email=first.email)
        assert [o.id for o in page.results] == [first.id]


class TestAssociations:
    async def test_meeting_with_inline_contact_association(self, client: HubSpotClient) -> None:
        contact = await client.contacts.create({"email": "meet@example.com"})
        meeting = await client.meetings.create(
            {
                "hs_timestamp": "2026-10-05T13:00:00Z",
                "hs_meeting_title": "Intro",
                "hs_meeting_start_time": "2026-10-05T13:00:00Z",
                "hs_meeting_end_time": "2026-10-05T13:30:00Z",
                "hs_meeting_outcome": "SCHEDULED",
            },
            associations=[
                AssociationInput.to_id(contact.id, ASSOCIATION_TYPES[("meetings", "contacts")])
            ],
        )
        page = await client.associations.list("contacts", contact.id, "meetings")
        assert [a.to_object_id for a in page.results] == [meeting.id]
        assert page.results[0].association_types[0].type_id == 199

        read = await client.contacts.get(contact.id, associations=["meetings"])
        assert read.associations is not None
        assert [a.id for a in read.associations["meetings"].results] == [meeting.id]

    async def test_note_with_contact(self, client: HubSpotClient) -> None:
        contact = await client.contacts.create({"email": "note@example.com"})
        note = await client.notes.create(
            {"hs_timestamp": "2026-10-05T13:00:00Z", "hs_note_body": "Called"},
            associations=[AssociationInput.to_id(contact.id, 202)],
        )
        page = await client.associations.list("notes", note.id, "contacts")
        assert [a.to_object_id for a in page.results] == [contact.id]

    async def test_default_labelled_batch_and_remove(self, client: HubSpotClient) -> None:
        contacts = [await client.contacts.create({"email": f"as{i}@example.com"}) for i in range(3)]
        company = await client.companies.create({"name": "Assoc Co"})

        default = await client.associations.create_default(
            "contacts", contacts[0].id, "companies", company.id
        )
        assert default.results
        assert default.results[0].association_spec.association_type_id in (279, 280)

        primary = AssociationSpec(
            association_category=AssociationCategory.HUBSPOT_DEFINED, association_type_id=1
        )
        labelled = await client.associations.create(
            "contacts", contacts[1].id, "companies", company.id, [primary]
        )
        assert labelled.to_object_id == company.id

        batch = await client.associations.batch_create(
            "contacts",
            "companies",
            [
                AssociationCreate(
                    from_=ObjectId(id=contacts[2].id),
                    to=ObjectId(id=company.id),
                    types=[AssociationSpec(association_type_id=279)],
                )
            ],
        )
        assert batch.ok

        read = await client.associations.batch_read("companies", "contacts", [company.id])
        linked = {a.to_object_id for a in read.results[0].to}
        assert linked == {c.id for c in contacts}

        await client.associations.remove("contacts", contacts[0].id, "companies", company.id)
        await client.associations.batch_archive(
            "companies", "contacts", [(company.id, [contacts[1].id])]
        )
        after = await client.associations.list("companies", company.id, "contacts")
        assert [a.to_object_id for a in after.results] == [contacts[2].id]

    async def test_batch_default_and_labels(self, client: HubSpotClient) -> None:
        contact = await client.contacts.create({"email": "bd@example.com"})
        companies = [await client.companies.create({"name": f"C{i}"}) for i in range(2)]
        result = await client.associations.batch_create_default(
            "contacts", "companies", [(contact.id, c.id) for c in companies] * 2
        )
        assert result.ok
        labels = await client.associations.labels("contacts", "companies")
        assert 279 in {label.type_id for label in labels}


class TestLists:
    async def test_manual_list_membership(self, client: HubSpotClient) -> None:
        members = [await client.contacts.create({"email": f"l{i}@example.com"}) for i in range(3)]
        created = await client.lists.create("Spoke users")
        assert created.processing_type == "MANUAL"
        assert (await client.lists.get(created.list_id)).name == "Spoke users"
        assert (await client.lists.get_by_name("Spoke users")).list_id == created.list_id

        added = await client.lists.add_members(
            created.list_id, [m.id for m in members] + ["99999999"]
        )
        assert sorted(added.record_ids_added) == sorted(m.id for m in members)
        assert added.record_ids_missing == ["99999999"]

        page = await client.lists.members(created.list_id)
        assert sorted(m.record_id for m in page.results) == sorted(m.id for m in members)
        everyone = [m.record_id async for m in client.lists.iter_members(created.list_id)]
        assert len(everyone) == 3

        memberships = await client.lists.record_memberships(members[0].id)
        assert [m.list_id for m in memberships] == [created.list_id]

        removed = await client.lists.remove_members(created.list_id, [members[0].id])
        assert removed.record_ids_removed == [members[0].id]
        await client.lists.delete(created.list_id)
        with pytest.raises(ObjectNotFound):
            await client.lists.get(created.list_id)


class TestRateLimits:
    async def test_429_is_retried_after_retry_after(
        self, http: httpx.AsyncClient, sandbox_url: str
    ) -> None:
        portal = create_portal(
            sandbox_url,
            settings={
                "rate_limits": {
                    "enabled": True,
                    "private_app_burst": 3,
                    "window_ms": 1000,
                    "retry_after_seconds": 1,
                }
            },
        )
        client = HubSpotClient(http, auth=portal.token, base_url=portal.base_url)
        contact = await client.contacts.create({"email": "rl@example.com"})
        for _ in range(4):  # the third or fourth call meets the 429 and waits it out
            assert (await client.contacts.get(contact.id)).id == contact.id
        counters = portal.admin_call("GET", "/counters")
        assert "429" in str(counters)

    async def test_429_without_retries_surfaces(
        self, http: httpx.AsyncClient, sandbox_url: str
    ) -> None:
        portal = create_portal(
            sandbox_url,
            settings={"rate_limits": {"enabled": True, "private_app_burst": 1, "window_ms": 5000}},
        )
        client = HubSpotClient(
            http, auth=portal.token, base_url=portal.base_url, retry=RetryPolicy(max_attempts=1)
        )
        await client.contacts.list(limit=1)
        with pytest.raises(RateLimited) as caught:
            await client.contacts.list(limit=1)
        assert caught.value.policy == "TEN_SECONDLY_ROLLING"
        assert caught.value.correlation_id

    async def test_limiter_keeps_a_tight_loop_under_the_limit(
        self, http: httpx.AsyncClient, sandbox_url: str
    ) -> None:
        portal = create_portal(
            sandbox_url,
            settings={"rate_limits": {"enabled": True, "private_app_burst": 10, "window_ms": 1000}},
        )
        limiter = RateLimiter(portal.id, store=InMemoryBucketStore(), limit=10, window=1.0)
        client = HubSpotClient(
            http,
            auth=portal.token,
            base_url=portal.base_url,
            limiter=limiter,
            retry=RetryPolicy(max_attempts=1),  # a 429 would fail the test
        )
        for _ in range(20):
            await client.contacts.list(limit=1)


def test_sandbox_portal_handle(portal: SandboxPortal) -> None:
    assert portal.token.startswith("pat-")


class TestInjectedFaults:
    async def test_idempotent_calls_ride_out_5xx_and_spurious_429s(
        self, http: httpx.AsyncClient, portal: SandboxPortal
    ) -> None:
        client = HubSpotClient(
            http,
            auth=portal.token,
            base_url=portal.base_url,
            retry=RetryPolicy(max_attempts=12, backoff_base=0.001, backoff_max=0.005),
        )
        contact = await client.contacts.create({"email": "faulty@example.com"})
        portal.admin_call(
            "PUT",
            "/faults",
            {"error_rate": 0.3, "spurious_429_rate": 0.0, "seed": 11},
        )
        for _ in range(15):
            assert (await client.contacts.get(contact.id)).id == contact.id
        upserted = await client.contacts.batch_upsert_by_email(
            [(f"f{i}@example.com", {}) for i in range(5)]
        )
        assert len(upserted.results) == 5
        counters = portal.admin_call("GET", "/counters")
        served_5xx = sum(
            n for status, n in counters["responses_by_status"].items() if status.startswith("5")
        )
        assert served_5xx > 0


class TestSearchLimit:
    async def test_search_bucket_keeps_under_five_per_second(
        self, http: httpx.AsyncClient, sandbox_url: str
    ) -> None:
        portal = create_portal(sandbox_url, settings={"rate_limits": {"enabled": True}})
        client = HubSpotClient(
            http,
            auth=portal.token,
            base_url=portal.base_url,
            limiter=RateLimiter(portal.id, store=InMemoryBucketStore()),
            retry=RetryPolicy(max_attempts=1),  # a 429 would fail the test
        )
        request = SearchRequest(query="nobody")
        for _ in range(9):
            assert (await client.contacts.search(request)).total == 0
        counters = portal.admin_call("GET", "/counters")
        assert counters["rate_limited_served"] == 0
