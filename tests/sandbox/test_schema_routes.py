"""Properties v3, owners, associations v4 and lists v3 over plain HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

C = "/crm/v3/objects/contacts"
P = "/crm/v3/properties/contacts"


def _contact(http: httpx.Client, email: str) -> str:
    resp = http.post(C, json={"properties": {"email": email}})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _company(http: httpx.Client, name: str) -> str:
    resp = http.post("/crm/v3/objects/companies", json={"properties": {"name": name}})
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


class TestProperties:
    def test_builtin_definitions(self, http: httpx.Client) -> None:
        email = http.get(f"{P}/email").json()
        assert email["type"] == "string"
        assert email["hasUniqueValue"] is True
        assert email["hubspotDefined"] is True
        created = http.get(f"{P}/createdate").json()
        assert created["modificationMetadata"]["readOnlyValue"] is True

    def test_create_validates_and_conflicts(self, http: httpx.Client) -> None:
        body: dict[str, Any] = {
            "name": "plan",
            "label": "Plan",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
        }
        assert http.post(P, json=body).status_code == 201
        assert http.post(P, json=body).status_code == 409
        bad_type = http.post(P, json={**body, "name": "plan2", "type": "varchar"})
        assert bad_type.status_code == 400
        missing = http.post(P, json={"name": "plan3"})
        assert missing.json()["context"]["missingFields"] == [
            "label",
            "type",
            "fieldType",
            "groupName",
        ]
        no_group = http.post(P, json={**body, "name": "plan4", "groupName": "ghosts"})
        assert no_group.status_code == 400

    def test_archive_custom_but_not_builtin(self, http: httpx.Client) -> None:
        body = {
            "name": "temp",
            "label": "T",
            "type": "number",
            "fieldType": "number",
            "groupName": "contactinformation",
        }
        http.post(P, json=body)
        assert http.post(C, json={"properties": {"temp": "abc"}}).status_code == 400  # not a number
        assert http.delete(f"{P}/temp").status_code == 204
        assert http.get(f"{P}/temp").status_code == 404
        assert http.get(f"{P}/temp", params={"archived": "true"}).json()["archived"] is True
        assert http.post(C, json={"properties": {"temp": "1"}}).status_code == 400  # gone
        assert http.delete(f"{P}/email").status_code == 400

    def test_unique_custom_property_becomes_an_id_property(self, http: httpx.Client) -> None:
        body = {
            "name": "external_id",
            "label": "External id",
            "type": "string",
            "fieldType": "text",
            "groupName": "contactinformation",
            "hasUniqueValue": True,
        }
        assert http.post(P, json=body).status_code == 201
        inputs = [{"id": "ext-1", "idProperty": "external_id", "properties": {"firstname": "E"}}]
        created = http.post(f"{C}/batch/upsert", json={"inputs": inputs}).json()["results"][0]
        assert created["new"] is True
        got = http.get(f"{C}/ext-1", params={"idProperty": "external_id"})
        assert got.json()["id"] == created["id"]
        assert http.patch(f"{P}/external_id", json={"hasUniqueValue": False}).status_code == 400
        clash = http.post(C, json={"properties": {"external_id": "ext-1"}})
        assert clash.status_code == 409

    def test_groups(self, http: httpx.Client) -> None:
        assert (
            http.post(f"{P}/groups", json={"name": "billing", "label": "Billing"}).status_code
            == 201
        )
        names = [g["name"] for g in http.get(f"{P}/groups").json()["results"]]
        assert names == ["contactinformation", "billing"]
        assert http.patch(f"{P}/groups/billing", json={"label": "Money"}).json()["label"] == "Money"
        assert http.delete(f"{P}/groups/billing").status_code == 204
        assert http.get(f"{P}/groups/billing").status_code == 404

    def test_owners(self, http: httpx.Client) -> None:
        owners = http.get("/crm/v3/owners").json()["results"]
        assert len(owners) == 3
        one = http.get(f"/crm/v3/owners/{owners[0]['id']}").json()
        assert one["email"] == owners[0]["email"]
        by_email = http.get("/crm/v3/owners", params={"email": owners[1]["email"]}).json()
        assert [o["id"] for o in by_email["results"]] == [owners[1]["id"]]
        # Owner ids are the options of hubspot_owner_id.
        assert (
            http.post(C, json={"properties": {"hubspot_owner_id": owners[0]["id"]}}).status_code
            == 201
        )
        assert http.post(C, json={"properties": {"hubspot_owner_id": "1"}}).status_code == 400


class TestAssociations:
    def test_labels_and_primary(self, http: httpx.Client) -> None:
        contact, company = _contact(http, "a@example.com"), _company(http, "Acme")
        labels = http.get("/crm/v4/associations/contacts/companies/labels").json()["results"]
        assert {(label["typeId"], label["label"]) for label in labels} == {
            (279, None),
            (1, "Primary"),
        }
        spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]
        pair = http.put(
            f"/crm/v4/objects/contacts/{contact}/associations/companies/{company}", json=spec
        )
        assert pair.status_code == 201
        assert pair.json()["labels"] == ["Primary"]
        listed = http.get(f"/crm/v4/objects/contacts/{contact}/associations/companies").json()
        types = {t["typeId"] for t in listed["results"][0]["associationTypes"]}
        assert types == {1, 279}  # primary implies the unlabeled default
        back = http.get(f"/crm/v4/objects/companies/{company}/associations/contacts").json()
        assert {t["typeId"] for t in back["results"][0]["associationTypes"]} == {2, 280}

    def test_user_defined_label(self, http: httpx.Client) -> None:
        contact, company = _contact(http, "u@example.com"), _company(http, "U")
        created = http.post(
            "/crm/v4/associations/contacts/companies/labels",
            json={
                "label": "Billing contact",
                "name": "billing_contact",
                "inverseLabel": "Billed company",
            },
        ).json()["results"]
        type_id = created[0]["typeId"]
        spec = [{"associationCategory": "USER_DEFINED", "associationTypeId": type_id}]
        pair = http.put(
            f"/crm/v4/objects/contacts/{contact}/associations/companies/{company}", json=spec
        )
        assert pair.json()["labels"] == ["Billing contact"]
        back = http.get(f"/crm/v4/objects/companies/{company}/associations/contacts").json()
        assert back["results"][0]["associationTypes"][0]["label"] == "Billed company"

    def test_wrong_type_id_and_missing_record(self, http: httpx.Client) -> None:
        contact, company = _contact(http, "w@example.com"), _company(http, "W")
        spec = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}]
        url = f"/crm/v4/objects/contacts/{contact}/associations/companies/{company}"
        assert http.put(url, json=spec).status_code == 400
        assert (
            http.put(
                "/crm/v4/objects/contacts/999999/associations/default/companies/" + company
            ).status_code
            == 404
        )

    def test_batch_create_read_archive(self, http: httpx.Client) -> None:
        contacts = [_contact(http, f"b{i}@example.com") for i in range(3)]
        company = _company(http, "B")
        types = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]
        inputs = [{"from": {"id": c}, "to": {"id": company}, "types": types} for c in contacts]
        created = http.post(
            "/crm/v4/associations/contacts/companies/batch/create", json={"inputs": inputs}
        )
        assert created.status_code == 201
        assert len(created.json()["results"]) == 3
        read = http.post(
            "/crm/v4/associations/companies/contacts/batch/read", json={"inputs": [{"id": company}]}
        ).json()
        assert sorted(t["toObjectId"] for t in read["results"][0]["to"]) == sorted(
            int(c) for c in contacts
        )
        http.post(
            "/crm/v4/associations/companies/contacts/batch/archive",
            json={"inputs": [{"from": {"id": company}, "to": [{"id": contacts[0]}]}]},
        )
        listed = http.get(f"/crm/v4/objects/contacts/{contacts[0]}/associations/companies").json()
        assert listed["results"] == []
        missing = http.post(
            "/crm/v4/associations/contacts/companies/batch/read",
            json={"inputs": [{"id": contacts[0]}]},
        )
        assert missing.status_code == 207

    def test_inline_association_to_missing_record(self, http: httpx.Client) -> None:
        assoc = [
            {
                "to": {"id": "424242"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 200}],
            }
        ]
        resp = http.post(
            "/crm/v3/objects/meetings",
            json={"properties": {"hs_timestamp": "2026-01-01T00:00:00Z"}, "associations": assoc},
        )
        assert resp.status_code == 400
        assert http.get("/crm/v3/objects/meetings").json()["results"] == []


class TestLists:
    def test_list_lifecycle(self, http: httpx.Client) -> None:
        body = {"name": "Beta", "objectTypeId": "0-1", "processingType": "MANUAL"}
        created = http.post("/crm/v3/lists/", json=body).json()["list"]
        assert created["processingType"] == "MANUAL"
        assert http.post("/crm/v3/lists", json=body).status_code == 400  # duplicate name
        list_id = created["listId"]
        by_name = http.get("/crm/v3/lists/object-type-id/0-1/name/Beta").json()["list"]
        assert by_name["listId"] == list_id
        contact = _contact(http, "l@example.com")
        http.put(f"/crm/v3/lists/{list_id}/memberships/add", json=[contact])
        memberships = http.get(f"/crm/v3/lists/records/0-1/{contact}/memberships").json()
        assert [m["listId"] for m in memberships["results"]] == [list_id]
        assert http.delete(f"/crm/v3/lists/{list_id}").status_code == 204
        assert http.get(f"/crm/v3/lists/{list_id}").status_code == 404
        assert http.put(f"/crm/v3/lists/{list_id}/restore").status_code == 204
        assert http.get(f"/crm/v3/lists/{list_id}").json()["list"]["size"] == 1

    @pytest.mark.parametrize("kind", ["DYNAMIC", None])
    def test_only_manual_and_snapshot_lists(self, http: httpx.Client, kind: str | None) -> None:
        resp = http.post(
            "/crm/v3/lists", json={"name": "D", "objectTypeId": "0-1", "processingType": kind}
        )
        assert resp.status_code == 400

    def test_lists_need_list_scopes(self, portal: Any) -> None:
        token = httpx.post(portal.admin("/tokens"), json={"scopes": ["crm.objects.contacts.read"]})
        resp = httpx.get(
            f"{portal.sandbox.base_url}/crm/v3/lists/1",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert resp.status_code == 403
