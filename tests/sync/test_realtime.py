"""Real-time contact sync against the sandbox over HTTP, webhooks delivered to the live
Spoke server: each change crosses once, nothing echoes back, settings are obeyed."""

from __future__ import annotations

import sqlalchemy as sa
from tests.sync.conftest import Sync

from spoke.core.db import session_scope
from spoke.sync.models import HubSpotWebhookBatch


def _create_and_settle(sync: Sync, external_id: str, **fields: object) -> None:
    answer = sync.http.put(f"/v1/users/{external_id}", json=fields)
    assert answer.status_code in (200, 201), answer.text
    sync.settle()


def test_only_changes_after_connecting_are_sent(sync: Sync) -> None:
    # `sync` connected before this user existed; a user from before the connect stays home.
    assert sync.sync_settings().cursor_seq >= 0
    _create_and_settle(sync, "new", email="new@example.com", first_name="New")
    contact = sync.contact_by_email("new@example.com", "firstname")
    assert contact["properties"]["firstname"] == "New"
    link = sync.link_of("new")
    assert link is not None
    assert link.state == "in_sync"
    assert link.hubspot_id == contact["id"]


def test_spoke_change_writes_hubspot_once_and_does_not_echo(sync: Sync) -> None:
    _create_and_settle(sync, "ada", email="ada@example.com", first_name="Ada", last_name="L")
    before_writes = sync.writes()
    before_feed = sync.feed("ada")

    patched = sync.http.patch("/v1/users/ada", json={"first_name": "Augusta"})
    assert patched.status_code == 200
    sync.settle()

    assert sync.writes() == before_writes + 1  # one batch update, nothing else
    contact = sync.contact_by_email("ada@example.com", "firstname", "lastname")
    assert contact["properties"]["firstname"] == "Augusta"
    after_feed = sync.feed("ada")
    assert len(after_feed) == len(before_feed) + 1  # only our PATCH: the webhook wrote nothing
    assert [o for o, _ in after_feed[len(before_feed) :]] == ["api"]

    sync.settle()  # and nothing more happens once settled
    assert sync.writes() == before_writes + 1
    assert len(sync.feed("ada")) == len(after_feed)


def test_hubspot_change_writes_spoke_once_and_does_not_echo(sync: Sync) -> None:
    _create_and_settle(sync, "alan", email="alan@example.com", first_name="Alan", last_name="T")
    contact = sync.contact_by_email("alan@example.com")
    feed_before = sync.feed("alan")

    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact['id']}", {"properties": {"lastname": "Turing"}}
    )
    writes_after_edit = sync.writes()
    sync.settle()

    user = sync.http.get("/v1/users/alan").json()
    assert user["last_name"] == "Turing"
    new = sync.feed("alan")[len(feed_before) :]
    assert [origin for origin, _ in new] == ["sync.hubspot"]
    assert new[0][1] == {"last_name": ["T", "Turing"]}
    assert sync.writes() == writes_after_edit  # Spoke wrote nothing back to HubSpot

    sync.settle()
    assert len(sync.feed("alan")) == len(feed_before) + 1
    assert sync.writes() == writes_after_edit


def test_contact_created_in_hubspot_becomes_a_user_in_the_receive_list(sync: Sync) -> None:
    made = sync.http.post("/v1/lists", json={"name": "From HubSpot"})
    assert made.status_code == 201, made.text
    list_id = made.json()["id"]
    saved = sync.http.put(
        "/v1/sync/contacts/settings",
        json={"receive_list_id": list_id, "constants": {"to_spoke": {"company": "From HubSpot"}}},
    )
    assert saved.status_code == 200, saved.text
    created = sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts",
        {"properties": {"email": "Grace@Example.com", "firstname": "Grace", "lastname": "H"}},
    )
    sync.settle()
    user = sync.http.get(f"/v1/users/hubspot-{created['id']}").json()
    assert user["email"] == "grace@example.com"
    assert user["first_name"] == "Grace"
    assert user["company"] == "From HubSpot"
    assert list_id in user["lists"]
    link = sync.link_of(f"hubspot-{created['id']}")
    assert link is not None
    assert link.hubspot_id == created["id"]


def test_one_way_to_hubspot_ignores_hubspot_changes(sync: Sync) -> None:
    sync.http.put("/v1/sync/contacts/settings", json={"direction": "to_hubspot"})
    _create_and_settle(sync, "ken", email="ken@example.com", first_name="Ken")
    contact = sync.contact_by_email("ken@example.com")
    sync.hubspot(
        "PATCH", f"/crm/v3/objects/contacts/{contact['id']}", {"properties": {"firstname": "K"}}
    )
    sync.settle()
    assert sync.http.get("/v1/users/ken").json()["first_name"] == "Ken"
    with session_scope(sync.runtime.sessions) as session:
        pending = session.scalar(
            sa.select(sa.func.count())
            .select_from(HubSpotWebhookBatch)
            .where(
                HubSpotWebhookBatch.workspace_id == sync.tenant.workspace_id,
                HubSpotWebhookBatch.processed_at.is_(None),
            )
        )
    assert pending == 0


def test_one_way_to_spoke_sends_nothing(sync: Sync) -> None:
    sync.http.put("/v1/sync/contacts/settings", json={"direction": "to_spoke"})
    before = sync.writes()
    _create_and_settle(sync, "radia", email="radia@example.com", first_name="Radia")
    assert sync.writes() == before
    assert sync.link_of("radia") is None


def test_constants_and_list_filter_on_the_way_out(sync: Sync) -> None:
    chosen = sync.http.post("/v1/lists", json={"name": "Leads"}).json()["id"]
    saved = sync.http.put(
        "/v1/sync/contacts/settings",
        json={
            "send_list_ids": [chosen],
            "constants": {"to_hubspot": {"jobtitle": "From Spoke"}},
        },
    )
    assert saved.status_code == 200, saved.text
    _create_and_settle(sync, "in", email="in@example.com", first_name="In")
    _create_and_settle(sync, "out", email="out@example.com", first_name="Out")
    sync.http.post(f"/v1/lists/{chosen}/members", json={"external_ids": ["in"]})
    sync.settle()
    contact = sync.contact_by_email("in@example.com", "jobtitle", "firstname")
    assert contact["properties"]["jobtitle"] == "From Spoke"
    missing = sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        {"idProperty": "email", "inputs": [{"id": "out@example.com"}], "properties": []},
    )
    assert missing["results"] == []
    excluded = sync.http.get("/v1/sync/contacts/records", params={"state": "excluded"}).json()
    assert [(r["external_id"], r["reason"]) for r in excluded["data"]] == [
        ("out", "not in a list selected for sync")
    ]


def test_paused_sync_moves_nothing_until_resumed(sync: Sync) -> None:
    sync.http.put("/v1/sync/contacts/settings", json={"state": "paused"})
    sync.http.put("/v1/users/p1", json={"email": "p1@example.com", "first_name": "P"})
    sync.settle()
    settings = sync.http.get("/v1/sync/contacts/settings").json()
    assert settings["state"] == "paused"
    assert settings["pending_changes"] >= 1
    assert sync.link_of("p1") is None
    sync.http.put("/v1/sync/contacts/settings", json={"state": "active"})
    sync.settle()
    assert sync.contact_by_email("p1@example.com", "firstname")["properties"]["firstname"] == "P"
    assert sync.http.get("/v1/sync/contacts/settings").json()["pending_changes"] == 0


def test_a_rejected_record_is_failing_with_the_reason_and_others_go_through(sync: Sync) -> None:
    saved = sync.http.put(
        "/v1/sync/contacts/settings",
        json={
            "mappings": [{"spoke": "custom.score", "hubspot": "score", "create_field": False}],
        },
    )
    assert saved.status_code == 422  # neither side has "score" yet
    sync.hubspot(
        "POST",
        "/crm/v3/properties/contacts",
        {
            "name": "score",
            "label": "Score",
            "type": "number",
            "fieldType": "number",
            "groupName": "contactinformation",
        },
    )
    # HubSpot's property list is refreshed by reconnecting, as in the seed.
    from tests.sync.conftest import connect_oauth

    assert connect_oauth(sync.tenant, sync.portal_id).status_code == 200
    saved = sync.http.put(
        "/v1/sync/contacts/settings",
        json={"mappings": [{"spoke": "custom.score", "hubspot": "score", "create_field": True}]},
    )
    assert saved.status_code == 200, saved.text
    assert any(m["spoke"] == "custom.score" for m in saved.json()["mappings"])
    # The property is archived in HubSpot behind Spoke's back: records carrying a score are
    # refused (the batch is split until the bad records are isolated), the others go through.
    sync.hubspot("DELETE", "/crm/v3/properties/contacts/score")
    batch = sync.http.post(
        "/v1/users/batch",
        json={
            "items": [
                {"external_id": "good", "email": "good@example.com", "first_name": "G"},
                {"external_id": "bad", "email": "bad@example.com", "custom": {"score": 3}},
                {"external_id": "good2", "email": "good2@example.com", "first_name": "H"},
            ]
        },
    )
    assert batch.status_code == 200, batch.text
    sync.settle()
    assert sync.contact_by_email("good@example.com", "firstname")["properties"]["firstname"] == "G"
    assert sync.contact_by_email("good2@example.com")["id"]
    failing = sync.http.get("/v1/sync/contacts/records", params={"state": "failing"}).json()
    assert [r["external_id"] for r in failing["data"]] == ["bad"]
    assert "score" in failing["data"][0]["reason"]
    assert failing["data"][0]["failures"] >= 1


def test_tags_travel_as_one_note_on_the_contact(sync: Sync) -> None:
    _create_and_settle(sync, "tagged", email="tagged@example.com", tags={"plan": "pro"})
    contact_id = sync.contact_by_email("tagged@example.com")["id"]

    def notes() -> list[str]:
        timeline = sync.sandbox.admin(
            "GET", f"/portals/{sync.portal_id}/contacts/{contact_id}/timeline"
        )
        return [i["properties"]["hs_note_body"] for i in timeline["results"] if i["type"] == "NOTE"]

    assert notes() == ["Spoke tags: plan=pro"]
    sync.http.patch("/v1/users/tagged", json={"tags": {"cohort": "b"}})
    sync.settle()
    assert notes() == ["Spoke tags: cohort=b, plan=pro"]  # the same note, updated
    before = sync.writes()
    sync.http.patch("/v1/users/tagged", json={"first_name": "T"})
    sync.settle()
    assert sync.writes() == before + 1  # the contact only; the unchanged note is left alone


def test_contacts_created_from_spoke_get_the_lead_status(sync: Sync) -> None:
    # hs_lead_status is one of HubSpot's built-in contact properties (the sandbox has it).
    existing = sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts",
        {"properties": {"email": "old@example.com", "hs_lead_status": "NEW"}},
    )
    sync.settle()
    old_user = sync.link_of(f"hubspot-{existing['id']}")
    assert old_user is not None
    _create_and_settle(sync, "fresh", email="fresh@example.com", first_name="F")
    fresh = sync.contact_by_email("fresh@example.com", "hs_lead_status")
    assert fresh["properties"]["hs_lead_status"] == "CONNECTED"
    sync.http.patch(f"/v1/users/hubspot-{existing['id']}", json={"first_name": "Old"})
    sync.settle()
    old = sync.contact_by_email("old@example.com", "hs_lead_status", "firstname")
    assert old["properties"] == {**old["properties"], "hs_lead_status": "NEW", "firstname": "Old"}
