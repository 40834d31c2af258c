"""CRM objects through Spoke's client against the sandbox over HTTP: CRUD, batches, search."""

from __future__ import annotations

import pytest

from spoke.hubspot import (
    ContactExists,
    Filter,
    FilterGroup,
    FilterOperator,
    HubSpotClient,
    ObjectCreate,
    ObjectNotFound,
    ObjectUpdate,
    SearchRequest,
    Sort,
    SortDirection,
    ValidationFailed,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


class TestContactCrud:
    async def test_create_read_update_archive(self, client: HubSpotClient) -> None:
        created = await client.contacts.create(
            {"email": "ada@example.com", "firstname": "Ada", "lastname": "Lovelace"}
        )
        assert created.id.isdigit()
        assert created.properties["email"] == "ada@example.com"
        assert created.created_at is not None

        read = await client.contacts.get(created.id, properties=["email", "firstname", "phone"])
        assert read.properties["firstname"] == "Ada"
        assert read.properties["phone"] is None

        by_email = await client.contacts.get("ada@example.com", id_property="email")
        assert by_email.id == created.id

        updated = await client.contacts.update(created.id, {"firstname": "Augusta"})
        assert updated.properties["firstname"] == "Augusta"

        history = await client.contacts.get(created.id, properties_with_history=["firstname"])
        assert history.properties_with_history is not None
        values = [h.value for h in history.properties_with_history["firstname"]]
        assert values[:2] == ["Augusta", "Ada"]

        await client.contacts.archive(created.id)
        with pytest.raises(ObjectNotFound) as caught:
            await client.contacts.get(created.id)
        assert caught.value.category == "OBJECT_NOT_FOUND"
        archived = await client.contacts.get(created.id, archived=True)
        assert archived.archived is True

    async def test_duplicate_email_raises_contact_exists(self, client: HubSpotClient) -> None:
        first = await client.contacts.create({"email": "dup@example.com"})
        with pytest.raises(ContactExists) as caught:
            await client.contacts.create({"email": "dup@example.com"})
        assert caught.value.existing_id == first.id
        assert caught.value.status_code == 409
        assert caught.value.correlation_id

    async def test_unknown_property_is_a_validation_error(self, client: HubSpotClient) -> None:
        with pytest.raises(ValidationFailed):
            await client.contacts.create({"email": "x@example.com", "no_such_prop": "1"})

    async def test_list_pages_through_everything(self, client: HubSpotClient) -> None:
        for i in range(7):
            await client.contacts.create({"email": f"p{i}@example.com"})
        first = await client.contacts.list(limit=3)
        assert len(first.results) == 3
        assert first.next_after is not None
        emails = [str(c.properties["email"]) async for c in client.contacts.iter_all(page_size=3)]
        assert sorted(emails) == sorted(f"p{i}@example.com" for i in range(7))

    async def test_companies_and_merge(self, client: HubSpotClient) -> None:
        a = await client.companies.create({"name": "Acme", "domain": "acme.test"})
        b = await client.companies.create({"name": "Acme Inc", "domain": "acme-inc.test"})
        merged = await client.companies.merge(a.id, b.id)
        assert merged.id
        primary = await client.contacts.create({"email": "keep@example.com"})
        other = await client.contacts.create({"email": "gone@example.com", "firstname": "G"})
        result = await client.contacts.merge(primary.id, other.id)
        assert result.id


class TestBatches:
    async def test_upsert_by_email_creates_then_updates_and_dedupes(
        self, client: HubSpotClient
    ) -> None:
        first = await client.contacts.batch_upsert_by_email(
            [
                ("one@example.com", {"firstname": "One"}),
                ("two@example.com", {"firstname": "Two"}),
                ("ONE@example.com ", {"lastname": "Uno"}),  # same contact, merged
            ]
        )
        assert first.ok
        assert len(first.results) == 2
        assert all(r.new for r in first.results)
        by_email = {r.properties["email"]: r for r in first.results}
        assert by_email["one@example.com"].properties["lastname"] == "Uno"

        second = await client.contacts.batch_upsert_by_email(
            [("one@example.com", {"firstname": "Uno"}), ("three@example.com", {})]
        )
        news = {r.properties["email"]: r.new for r in second.results}
        assert news == {"one@example.com": False, "three@example.com": True}

    async def test_upsert_more_than_one_batch(self, client: HubSpotClient) -> None:
        rows = [(f"bulk{i}@example.com", {"firstname": f"N{i}"}) for i in range(230)]
        result = await client.contacts.batch_upsert_by_email(rows)
        assert result.ok
        assert len(result.results) == 230
        page = await client.contacts.list(limit=1)
        assert page.results

    async def test_read_reports_missing_ids_per_item(self, client: HubSpotClient) -> None:
        a = await client.contacts.create({"email": "r1@example.com"})
        b = await client.contacts.create({"email": "r2@example.com"})
        result = await client.contacts.batch_read(
            [a.id, b.id, a.id, "999999999"], properties=["email"]
        )
        assert sorted(r.id for r in result.results) == sorted([a.id, b.id])
        assert not result.ok
        assert result.errors[0].category == "OBJECT_NOT_FOUND"
        assert "999999999" in result.errors[0].ids

    async def test_read_by_email(self, client: HubSpotClient) -> None:
        await client.contacts.create({"email": "byemail@example.com"})
        result = await client.contacts.batch_read(["byemail@example.com"], id_property="email")
        assert [r.properties["email"] for r in result.results] == ["byemail@example.com"]

    async def test_create_update_archive(self, client: HubSpotClient) -> None:
        created = await client.contacts.batch_create(
            [ObjectCreate(properties={"email": f"bc{i}@example.com"}) for i in range(3)]
        )
        assert len(created.results) == 3
        ids = [r.id for r in created.results]
        updated = await client.contacts.batch_update(
            [
                ObjectUpdate(id=ids[0], properties={"firstname": "A"}),
                ObjectUpdate(id=ids[1], properties={"firstname": "B"}),
                ObjectUpdate(id=ids[0], properties={"lastname": "Z"}),
            ]
        )
        assert len(updated.results) == 2
        first = next(r for r in updated.results if r.id == ids[0])
        assert first.properties["firstname"] == "A"
        assert first.properties["lastname"] == "Z"
        await client.contacts.batch_archive(ids)
        after = await client.contacts.batch_read(ids)
        assert after.results == []


class TestSearch:
    async def test_filters_sorts_and_pages(self, client: HubSpotClient) -> None:
        await client.contacts.batch_upsert_by_email(
            [
                (f"s{i:02}@example.com", {"lastname": "Search", "firstname": f"F{i:02}"})
                for i in range(25)
            ]
            + [("other@example.com", {"lastname": "Other"})]
        )
        request = SearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(property_name="lastname", operator=FilterOperator.EQ, value="search")
                    ]
                )
            ],
            sorts=[Sort(property_name="firstname", direction=SortDirection.DESCENDING)],
            properties=["firstname"],
            limit=10,
        )
        first = await client.contacts.search(request)
        assert first.total == 25
        assert len(first.results) == 10
        assert first.results[0].properties["firstname"] == "F24"
        pages = [page async for page in client.contacts.search_pages(request)]
        assert [len(p.results) for p in pages] == [10, 10, 5]
        assert pages[-1].next_after is None

    async def test_search_all_windows_past_the_result_cap(
        self, client: HubSpotClient, portal: object
    ) -> None:
        from tests.hubspot.support import SandboxPortal

        assert isinstance(portal, SandboxPortal)
        # Make the cap small so windowing is exercised without 10,000 records.
        portal.admin_call("PATCH", "/settings", {"search_result_cap": 20})
        await client.contacts.batch_upsert_by_email(
            [(f"w{i:03}@example.com", {"lastname": "Window"}) for i in range(65)]
        )
        request = SearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[
                        Filter(property_name="lastname", operator=FilterOperator.EQ, value="Window")
                    ]
                )
            ],
            limit=10,
        )
        # Paging by `after` alone stops at the cap...
        paged = [r async for page in client.contacts.search_pages(request) for r in page.results]
        assert len(paged) <= 20
        # ...windowing by hs_object_id gets everything, once, in id order.
        found = [r.id async for r in client.contacts.search_all(request)]
        assert len(found) == 65
        assert len(set(found)) == 65
        assert [int(i) for i in found] == sorted(int(i) for i in found)

    async def test_search_all_refuses_other_sorts(self, client: HubSpotClient) -> None:
        request = SearchRequest(sorts=[Sort(property_name="email")])
        with pytest.raises(ValueError, match="hs_object_id"):
            _ = [r async for r in client.contacts.search_all(request)]

    async def test_request_limits_checked_before_sending(self) -> None:
        too_many = FilterGroup(
            filters=[Filter(property_name="email", operator=FilterOperator.HAS_PROPERTY)] * 7
        )
        with pytest.raises(ValueError, match="per group"):
            SearchRequest(filter_groups=[too_many])
        with pytest.raises(ValueError):  # noqa: PT011
            SearchRequest(limit=201)
