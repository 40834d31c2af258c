"""The issue's "done when": a reconcile over more than 10,000 contacts that all share one
`lastmodifieddate` reads past HubSpot's 10,000-result search cap (by `hs_object_id`
windows) and applies every contact exactly once."""

from __future__ import annotations

import sqlalchemy as sa
from tests.sync.conftest import Sync

from spoke.core.db import session_scope
from spoke.sync.engine import Engine
from spoke.users.models import User, UserChange

CONTACTS = 10_250


def test_reconcile_applies_more_than_10000_same_timestamp_contacts_exactly_once(
    sync: Sync,
) -> None:
    settings = sync.sandbox.admin("GET", f"/portals/{sync.portal_id}/settings")
    assert settings["search_result_cap"] == 10_000  # HubSpot's own cap, not a lowered one
    seeded = sync.sandbox.admin(
        "POST",
        f"/portals/{sync.portal_id}/seed",
        {"contacts": CONTACTS, "seed": 11, "webhooks": False},
    )
    assert seeded["contacts"] == CONTACTS
    stamps = sync.hubspot(
        "POST",
        "/crm/v3/objects/contacts/search",
        {
            "filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}],
            "properties": ["lastmodifieddate"],
            "limit": 200,
        },
    )
    assert stamps["total"] == CONTACTS
    assert len({c["properties"]["lastmodifieddate"] for c in stamps["results"]}) == 1

    read = Engine(
        sync.runtime.sessions,
        sync.runtime.settings,
        sync.runtime.encryptor,
        sync.tenant.workspace_id,
    ).reconcile()

    assert read == CONTACTS  # each contact read once: no window overlaps another
    workspace = sync.tenant.workspace_id
    with session_scope(sync.runtime.sessions) as session:
        users, emails = session.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(User.email))).where(
                User.workspace_id == workspace
            )
        ).one()
        applied, distinct_users = session.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(UserChange.user_id))).where(
                UserChange.workspace_id == workspace, UserChange.origin == "sync.hubspot"
            )
        ).one()
    assert users == emails == CONTACTS
    assert applied == distinct_users == CONTACTS  # one write per contact, none twice
