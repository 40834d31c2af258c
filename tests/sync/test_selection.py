"""The send lists' membership rule (Snov.io, seed 003): users collected or imported into a
selected list are sent; users put there only by hand (moved from another list) are not."""

from __future__ import annotations

import sqlalchemy as sa
from tests.sync.conftest import Sync

from spoke.core.db import session_scope
from spoke.sync.models import ContactSyncSettings
from spoke.sync.selection import NOT_IN_LIST, ONLY_BY_HAND, sendable_user_ids
from spoke.sync.settings import effective
from spoke.users.models import User


def _exists_in_hubspot(sync: Sync, email: str) -> bool:
    found = sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        {"idProperty": "email", "inputs": [{"id": email}], "properties": []},
    )
    return bool(found["results"])


def _add(sync: Sync, list_id: str, *external_ids: str, by_hand: bool = False) -> None:
    answer = sync.http.post(
        f"/v1/lists/{list_id}/members",
        json={"external_ids": list(external_ids), "by_hand": by_hand},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["changed"] == len(external_ids)


def test_users_moved_into_a_selected_list_by_hand_are_not_sent(sync: Sync) -> None:
    chosen = sync.http.post("/v1/lists", json={"name": "Collected"}).json()["id"]
    other = sync.http.post("/v1/lists", json={"name": "Also collected"}).json()["id"]
    saved = sync.http.put("/v1/sync/contacts/settings", json={"send_list_ids": [chosen, other]})
    assert saved.status_code == 200, saved.text
    for name in ("collected", "moved", "both", "outside"):
        made = sync.http.put(f"/v1/users/{name}", json={"email": f"{name}@example.com"})
        assert made.status_code == 201, made.text
    _add(sync, chosen, "collected")
    _add(sync, chosen, "moved", "both", by_hand=True)
    _add(sync, other, "both")  # collected into another selected list: that one counts
    sync.settle()

    assert _exists_in_hubspot(sync, "collected@example.com")
    assert _exists_in_hubspot(sync, "both@example.com")
    assert not _exists_in_hubspot(sync, "moved@example.com")
    assert not _exists_in_hubspot(sync, "outside@example.com")
    excluded = sync.http.get("/v1/sync/contacts/records", params={"state": "excluded"}).json()
    reasons = {r["external_id"]: r["reason"] for r in excluded["data"]}
    assert reasons == {"moved": ONLY_BY_HAND, "outside": NOT_IN_LIST}
    # The membership's origin is in the change feed too.
    assert [o for o, c in sync.feed("moved") if any(k.startswith("lists.") for k in c)] == [
        "manual"
    ]

    # The rule is one function, shared with the manual sync.
    with session_scope(sync.runtime.sessions) as session:
        row = session.get(ContactSyncSettings, sync.tenant.workspace_id)
        assert row is not None
        rows = session.execute(
            sa.select(User.external_id, User.id).where(
                User.workspace_id == sync.tenant.workspace_id
            )
        ).all()
        ids: dict[str, int] = dict(rows)
        sendable = sendable_user_ids(session, effective(session, row), list(ids.values()))
    assert sendable == {ids["collected"], ids["both"]}


def test_a_user_later_collected_into_the_list_is_sent(sync: Sync) -> None:
    chosen = sync.http.post("/v1/lists", json={"name": "Leads"}).json()["id"]
    other = sync.http.post("/v1/lists", json={"name": "Imported"}).json()["id"]
    sync.http.put("/v1/sync/contacts/settings", json={"send_list_ids": [chosen, other]})
    sync.http.put("/v1/users/late", json={"email": "late@example.com", "first_name": "L"})
    _add(sync, chosen, "late", by_hand=True)
    sync.settle()
    assert not _exists_in_hubspot(sync, "late@example.com")
    _add(sync, other, "late")
    sync.settle()
    assert sync.contact_by_email("late@example.com", "firstname")["properties"]["firstname"] == "L"
    link = sync.link_of("late")
    assert link is not None
    assert (link.state, link.reason) == ("in_sync", None)


def test_without_selected_lists_every_user_is_sent(sync: Sync) -> None:
    hand = sync.http.post("/v1/lists", json={"name": "Hand-picked"}).json()["id"]
    sync.http.put("/v1/users/anyone", json={"email": "anyone@example.com"})
    _add(sync, hand, "anyone", by_hand=True)
    sync.settle()
    assert _exists_in_hubspot(sync, "anyone@example.com")
