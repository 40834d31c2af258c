"""Which contact an exported event lands on: the contact sync's link, else a contact with the
user's email, else one Spoke creates (only when allowed); otherwise the event waits,
visibly, and goes once the user can be matched."""

from __future__ import annotations

import sqlalchemy as sa
from tests.events.conftest import Export

from spoke.core.clock import utcnow
from spoke.core.db import session_scope
from spoke.sync.models import ContactLink
from spoke.users.models import User


def _user(export: Export, external_id: str, email: str | None) -> None:
    body = {"email": email} if email else {"first_name": "No mail"}
    answer = export.http.put(f"/v1/users/{external_id}", json=body)
    assert answer.status_code in (200, 201), answer.text


def _link(export: Export, external_id: str, hubspot_id: str) -> None:
    with session_scope(export.runtime.sessions) as session:
        user_id = session.scalar(
            sa.select(User.id).where(
                User.workspace_id == export.tenant.workspace_id, User.external_id == external_id
            )
        )
        assert user_id is not None
        session.add(
            ContactLink(
                workspace_id=export.tenant.workspace_id,
                user_id=user_id,
                hubspot_id=hubspot_id,
                matched_by="email",
                snapshot={},
                state="in_sync",
                conflicts=[],
                updated_at=utcnow(),
            )
        )


def _track(user_id: str) -> dict[str, object]:
    return {"type": "track", "name": "Logged in", "user_id": user_id}


class TestMatching:
    def test_linked_contact_wins_over_email(self, export: Export) -> None:
        _user(export, "u-1", "one@example.com")
        by_email = export.create_contact("one@example.com")
        linked = export.create_contact("one.work@example.com")
        _link(export, "u-1", linked)
        export.ingest(_track("u-1"))
        export.core("track", "Logged in")
        export.configure()
        assert export.run().sent == 1
        assert len(export.timeline(linked)) == 1
        assert export.timeline(by_email) == []

    def test_by_the_users_email(self, export: Export) -> None:
        _user(export, "u-2", "two@example.com")
        contact = export.create_contact("two@example.com")
        export.ingest(
            _track("u-2"), {"type": "track", "name": "Logged in", "email": "two@example.com"}
        )
        export.core("track", "Logged in")
        export.configure()
        assert export.run().sent == 2
        assert len(export.timeline(contact)) == 2


class TestContactCreation:
    def test_only_when_allowed(self, export: Export) -> None:
        _user(export, "u-3", "three@example.com")
        _user(export, "u-4", None)  # no email, id not an email: never creatable
        export.ingest(_track("u-3"), _track("u-4"), _track("five@example.com"))
        export.core("track", "Logged in")
        export.configure()
        run = export.run()
        assert (run.sent, run.waiting) == (0, 3)
        assert export.contact_id("three@example.com") is None
        status = export.status()
        assert status["waiting"] == {"total": 3, "by_reason": {"unmatched": 2, "no_email": 1}}
        assert status["unmatched_users"] == 3

        export.configure(create_contacts=True)
        assert export.run(recheck_minutes=0).sent == 2
        for email in ("three@example.com", "five@example.com"):
            contact = export.contact_id(email)
            assert contact is not None
            assert len(export.timeline(contact)) == 1
        status = export.status()
        assert status["waiting"] == {"total": 1, "by_reason": {"no_email": 1}}
        assert status["sent"] == 2


class TestUnmatched:
    def test_waiting_events_go_once_the_user_is_matchable(self, export: Export) -> None:
        _user(export, "u-6", "six@example.com")
        export.ingest(_track("u-6"), _track("u-6"))
        export.core("track", "Logged in")
        export.configure()
        assert export.run().waiting == 2
        assert export.status()["unmatched_users"] == 1

        contact = export.create_contact("six@example.com")
        # Looked up again only after the recheck interval...
        assert export.run().sent == 0
        # ...which has passed now.
        assert export.run(recheck_minutes=0).sent == 2
        assert len(export.timeline(contact)) == 2
        status = export.status()
        assert (status["waiting"]["total"], status["unmatched_users"], status["sent"]) == (0, 0, 2)

    def test_a_new_link_is_used_at_once(self, export: Export) -> None:
        _user(export, "u-7", "seven@example.com")
        export.ingest(_track("u-7"))
        export.core("track", "Logged in")
        export.configure()
        assert export.run().waiting == 1
        contact = export.create_contact("seven.crm@example.com")
        _link(export, "u-7", contact)
        assert export.run().sent == 1
        assert len(export.timeline(contact)) == 1
