"""The official `hubspot-api-client` (12.0.0) against the sandbox over real HTTP, through the flows
Spoke uses. Only `host=` differs from talking to HubSpot."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import ApiException, NotFoundException
from hubspot.crm.lists import ListCreateRequest
from hubspot.crm.objects.meetings import SimplePublicObjectInputForCreate as MeetingCreate
from hubspot.crm.properties import PropertyCreate, PropertyUpdate
from tests.sandbox.harness import PortalHandle

from hubspot import HubSpot


def _create(api: HubSpot, **props: str) -> str:
    created = api.crm.contacts.basic_api.create(
        simple_public_object_input_for_create=SimplePublicObjectInputForCreate(properties=props)
    )
    return str(created.id)


class TestContactLifecycle:
    def test_create_read_update_archive(self, api: HubSpot) -> None:
        contacts = api.crm.contacts.basic_api
        created = contacts.create(
            simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
                properties={"email": "Ann@Example.com", "firstname": "Ann"}
            )
        )
        assert created.properties["email"] == "ann@example.com"
        assert created.properties["hs_object_id"] == created.id
        assert created.created_at is not None

        by_email = contacts.get_by_id("ann@example.com", id_property="email")
        assert by_email.id == created.id
        assert by_email.properties["lastname"] is None  # requested by default, unset

        updated = contacts.update(
            created.id,
            simple_public_object_input=SimplePublicObjectInput(properties={"firstname": "Anna"}),
        )
        assert updated.properties["firstname"] == "Anna"

        history = contacts.get_by_id(created.id, properties_with_history=["firstname"])
        values = [v.value for v in history.properties_with_history["firstname"]]
        assert values == ["Anna", "Ann"]  # newest first
        assert history.properties_with_history["firstname"][0].source_type == "INTEGRATION"

        contacts.archive(created.id)
        with pytest.raises(NotFoundException) as exc:
            contacts.get_by_id(created.id)
        assert json.loads(exc.value.body)["category"] == "OBJECT_NOT_FOUND"
        archived = contacts.get_by_id(created.id, archived=True)
        assert archived.archived is True

    def test_paging_through_list(self, api: HubSpot) -> None:
        ids = {_create(api, email=f"p{i}@example.com") for i in range(25)}
        seen: list[str] = []
        after = None
        while True:
            page = api.crm.contacts.basic_api.get_page(limit=10, after=after)
            seen.extend(r.id for r in page.results)
            if page.paging is None:
                break
            after = page.paging.next.after
        assert sorted(seen) == sorted(ids)

    def test_duplicate_email_is_a_409_api_exception(self, api: HubSpot) -> None:
        existing = _create(api, email="dup@example.com")
        with pytest.raises(ApiException) as exc:
            _create(api, email="DUP@example.com")
        assert exc.value.status == 409
        body = json.loads(exc.value.body)
        assert body["message"] == f"Contact already exists. Existing ID: {existing}"
        assert body["category"] == "CONFLICT"
        assert body["correlationId"]

    def test_merge(self, api: HubSpot) -> None:
        primary = _create(api, email="keep@example.com", firstname="Keep")
        other = _create(api, email="gone@example.com", lastname="Merged")
        merged = api.crm.contacts.basic_api.merge(
            public_merge_input=PublicMergeInput(primary_object_id=primary, object_id_to_merge=other)
        )
        assert merged.id == primary
        # The merged-away id and email now resolve to the primary.
        assert api.crm.contacts.basic_api.get_by_id(other).id == primary
        found = api.crm.contacts.basic_api.get_by_id("gone@example.com", id_property="email")
        assert found.id == primary
        assert found.properties["lastname"] == "Merged"
        merged_ids = api.crm.contacts.basic_api.get_by_id(
            primary, properties=["hs_merged_object_ids", "hs_additional_emails"]
        ).properties
        assert merged_ids["hs_merged_object_ids"] == other
        assert merged_ids["hs_additional_emails"] == "gone@example.com"


class TestBatch:
    def test_upsert_by_email_creates_then_updates(self, api: HubSpot) -> None:
        existing = _create(api, email="old@example.com", firstname="Old")
        batch = BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id="old@example.com", id_property="email", properties={"firstname": "Older"}
                ),
                SimplePublicObjectBatchInputUpsert(
                    id="new@example.com", id_property="email", properties={"firstname": "New"}
                ),
            ]
        )
        result = api.crm.contacts.batch_api.upsert(
            batch_input_simple_public_object_batch_input_upsert=batch
        )
        assert result.status == "COMPLETE"
        by_email = {r.properties.get("email") or r.id: r for r in result.results}
        old = next(r for r in result.results if r.id == existing)
        assert old.new is False
        assert old.properties["firstname"] == "Older"
        new = [r for r in result.results if r.id != existing]
        assert len(new) == 1
        assert new[0].new is True
        assert by_email
        fetched = api.crm.contacts.basic_api.get_by_id("new@example.com", id_property="email")
        assert fetched.properties["firstname"] == "New"

    def test_batch_read_with_missing_ids_is_multi_status(self, api: HubSpot) -> None:
        one = _create(api, email="one@example.com")
        result = api.crm.contacts.batch_api.read(
            batch_read_input_simple_public_object_id=BatchReadInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id=one), SimplePublicObjectId(id="999999")],
                properties=["email"],
                properties_with_history=[],
            )
        )
        assert [r.id for r in result.results] == [one]
        assert result.num_errors == 1
        assert result.errors[0].category == "OBJECT_NOT_FOUND"

    def test_batch_archive(self, api: HubSpot) -> None:
        ids = [_create(api, email=f"a{i}@example.com") for i in range(3)]
        api.crm.contacts.batch_api.archive(
            batch_input_simple_public_object_id=BatchInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id=i) for i in ids]
            )
        )
        assert api.crm.contacts.basic_api.get_page().results == []


class TestSearch:
    def test_filters_sorts_and_paging(self, api: HubSpot) -> None:
        for i in range(12):
            _create(api, email=f"s{i}@example.com", firstname="Match" if i % 2 else "Other")
        request = PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(
                    filters=[Filter(property_name="firstname", operator="EQ", value="match")]
                )
            ],
            sorts=[{"propertyName": "email", "direction": "DESCENDING"}],
            properties=["email", "firstname"],
            limit=4,
            after="0",
        )
        first = api.crm.contacts.search_api.do_search(public_object_search_request=request)
        assert first.total == 6
        assert [r.properties["email"] for r in first.results] == [
            "s9@example.com",
            "s7@example.com",
            "s5@example.com",
            "s3@example.com",
        ]
        request.after = first.paging.next.after
        second = api.crm.contacts.search_api.do_search(public_object_search_request=request)
        assert [r.properties["email"] for r in second.results] == [
            "s1@example.com",  # "@" sorts after "1"
            "s11@example.com",
        ]
        assert second.paging is None


class TestProperties:
    def test_create_update_and_list(self, api: HubSpot) -> None:
        core = api.crm.properties.core_api
        created = core.create(
            object_type="contacts",
            property_create=PropertyCreate(
                name="favourite_colour",
                label="Favourite colour",
                type="enumeration",
                field_type="select",
                group_name="contactinformation",
                options=[{"label": "Red", "value": "red", "hidden": False, "displayOrder": 0}],
            ),
        )
        assert created.name == "favourite_colour"
        assert created.hubspot_defined is False
        updated = core.update(
            object_type="contacts",
            property_name="favourite_colour",
            property_update=PropertyUpdate(label="Colour"),
        )
        assert updated.label == "Colour"
        names = {p.name for p in core.get_all(object_type="contacts").results}
        assert {"email", "favourite_colour"} <= names
        assert _create(api, email="c@example.com", favourite_colour="red")


class TestAssociations:
    def test_meeting_to_contact(self, api: HubSpot) -> None:
        contact = _create(api, email="m@example.com")
        meeting = api.crm.objects.meetings.basic_api.create(
            simple_public_object_input_for_create=MeetingCreate(
                properties={
                    "hs_timestamp": "2026-10-05T13:00:00Z",
                    "hs_meeting_title": "Intro",
                    "hs_meeting_outcome": "SCHEDULED",
                }
            )
        )
        v4 = api.crm.associations.v4.basic_api
        pair = v4.create(
            object_type="meetings",
            object_id=meeting.id,
            to_object_type="contacts",
            to_object_id=contact,
            association_spec=[
                AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=200)
            ],
        )
        assert pair.to_object_id == contact
        page = v4.get_page(object_type="contacts", object_id=contact, to_object_type="meetings")
        assert [r.to_object_id for r in page.results] == [meeting.id]
        assert page.results[0].association_types[0].type_id == 199
        got = api.crm.contacts.basic_api.get_by_id(contact, associations=["meetings"])
        assert got.associations["meetings"].results[0].type == "contact_to_meeting_event"

    def test_default_association(self, api: HubSpot) -> None:
        contact = _create(api, email="d@example.com")
        company = api.crm.companies.basic_api.create(
            simple_public_object_input_for_create={"properties": {"name": "Acme"}}
        )
        api.crm.associations.v4.basic_api.create_default(
            from_object_type="contacts",
            from_object_id=contact,
            to_object_type="companies",
            to_object_id=company.id,
        )
        page = api.crm.associations.v4.basic_api.get_page(
            object_type="companies", object_id=company.id, to_object_type="contacts"
        )
        assert page.results[0].association_types[0].type_id == 280


class TestLists:
    def test_manual_list_membership(self, api: HubSpot) -> None:
        ids = [_create(api, email=f"l{i}@example.com") for i in range(3)]
        created = api.crm.lists.lists_api.create(
            list_create_request=ListCreateRequest(
                name="VIPs", object_type_id="0-1", processing_type="MANUAL"
            )
        )
        list_id = created.list.list_id
        added = api.crm.lists.memberships_api.add(list_id=list_id, request_body=[*ids, "424242"])
        assert sorted(added.records_ids_added) == sorted(ids)
        assert added.record_ids_missing == ["424242"]
        api.crm.lists.memberships_api.remove(list_id=list_id, request_body=[ids[0]])
        page = api.crm.lists.memberships_api.get_page(list_id=list_id)
        assert sorted(m.record_id for m in page.results) == sorted(ids[1:])
        assert api.crm.lists.lists_api.get_by_id(list_id=list_id).list.size == 2


class TestOAuth:
    def test_code_exchange_refresh_and_token_info(self, portal: PortalHandle) -> None:
        base = portal.sandbox.base_url
        redirect = "http://127.0.0.1:1/callback"
        resp = httpx.get(
            f"{base}/oauth/authorize",
            params={
                "client_id": portal.client_id,
                "redirect_uri": redirect,
                "scope": "oauth crm.objects.contacts.read",
                "state": "xyz",
            },
        )
        assert resp.status_code == 302
        query = parse_qs(urlsplit(resp.headers["location"]).query)
        assert query["state"] == ["xyz"]

        sdk = HubSpot(host=base)
        tokens = sdk.oauth.tokens_api.create(
            grant_type="authorization_code",
            code=query["code"][0],
            redirect_uri=redirect,
            client_id=portal.client_id,
            client_secret=portal.client_secret,
        )
        assert tokens.expires_in == 1800
        info = sdk.oauth.access_tokens_api.get(token=tokens.access_token)
        assert info.hub_id == portal.id
        assert "crm.objects.contacts.read" in info.scopes

        refreshed = sdk.oauth.tokens_api.create(
            grant_type="refresh_token",
            refresh_token=tokens.refresh_token,
            client_id=portal.client_id,
            client_secret=portal.client_secret,
        )
        assert refreshed.access_token != tokens.access_token
        reader = HubSpot(access_token=refreshed.access_token, host=base)
        assert reader.crm.contacts.basic_api.get_page().results == []

        # Granted read only: a write is refused with MISSING_SCOPES.
        with pytest.raises(ApiException) as exc:
            reader.crm.contacts.basic_api.create(
                simple_public_object_input_for_create=SimplePublicObjectInputForCreate(
                    properties={"email": "x@example.com"}
                )
            )
        assert exc.value.status == 403
        assert json.loads(exc.value.body)["category"] == "MISSING_SCOPES"


class TestRateLimit:
    def test_429_surfaces_with_policy_and_headers(self, api: HubSpot, portal: PortalHandle) -> None:
        limits = portal.portal.settings.rate_limits
        limits.enabled, limits.private_app_burst = True, 3
        contacts = api.crm.contacts.basic_api
        for _ in range(3):
            contacts.get_page()
        with pytest.raises(ApiException) as exc:
            contacts.get_page()
        assert exc.value.status == 429
        assert json.loads(exc.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"
        assert exc.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
        assert exc.value.headers["X-HubSpot-RateLimit-Max"] == "3"
