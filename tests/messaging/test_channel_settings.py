"""Provider settings for email and SMS (secrets never shown back), and users'
subscriptions on every channel, over the API on both databases."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from tests.conftest import Tenant
from tests.messaging.channel_support import (
    Sink,
    Sms,
    connect_sms,
    connect_smtp,
    put_user,
    unique_email,
    unique_phone,
)
from tests.messaging.support import register, token_for
from tests.users.support import problem

from spoke.core.db import session_scope
from spoke.messaging.models import ProviderConfig


def _stored_secret(tenant: Tenant, channel: str) -> str:
    with session_scope(tenant.backend.runtime.sessions) as session:
        return str(
            session.scalars(
                sa.select(ProviderConfig.secret_encrypted).where(
                    ProviderConfig.workspace_id == tenant.workspace_id,
                    ProviderConfig.channel == channel,
                )
            ).one()
        )


def test_smtp_settings_keep_their_secrets(tenant: Tenant, sink: Sink) -> None:
    shown = connect_smtp(tenant, sink, username="mailer", password="s3cret-pass")
    assert shown["channel"] == "email"
    assert shown["provider"] == "smtp"
    settings = shown["settings"]
    assert settings["host"] == "127.0.0.1"
    assert settings["username"] == "mailer"
    assert settings["ca_pem"] is True
    assert "password" not in settings
    assert "s3cret-pass" not in tenant.http.get("/v1/messaging/providers/email").text
    assert "s3cret-pass" not in _stored_secret(tenant, "email")  # encrypted at rest
    assert tenant.http.delete("/v1/messaging/providers/email").status_code == 204
    problem(tenant.http.get("/v1/messaging/providers/email"), 404, "provider_not_configured")


def test_twilio_settings_keep_their_token(tenant: Tenant, sms: Sms) -> None:
    shown = connect_sms(tenant, sms)
    assert (shown["channel"], shown["provider"]) == ("sms", "twilio")
    assert shown["settings"]["base_url"] == sms.url
    assert "auth_token" not in shown["settings"]
    token = next(iter(sms.store.accounts.values()))
    assert token not in tenant.http.get("/v1/messaging/providers/sms").text
    assert token not in _stored_secret(tenant, "sms")
    assert tenant.http.delete("/v1/messaging/providers/sms").status_code == 204
    problem(tenant.http.delete("/v1/messaging/providers/sms"), 404, "provider_not_configured")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("smtp", {"host": "h", "from_address": "a@b.example", "password": "p"}, "password"),
        ("smtp", {"host": "h", "from_address": "not an address"}, "from_address"),
        ("smtp", {"host": "h", "from_address": "a@b.example", "ca_pem": "junk"}, "ca_pem"),
        ("smtp", {"host": "h", "from_address": "a@b.example", "security": "ssl3"}, "security"),
        ("twilio", {"account_sid": "AC" + "0" * 32, "auth_token": "t" * 32}, "from_number"),
        ("twilio", {"account_sid": "AB12", "auth_token": "t" * 32, "from_number": "+1"}, "sid"),
    ],
)
def test_bad_provider_settings_are_refused(
    tenant: Tenant, path: str, body: dict[str, Any], field: str
) -> None:
    found = problem(
        tenant.http.put(f"/v1/messaging/providers/{path}", json=body), 422, "invalid_input"
    )
    assert field in str(found)


def test_members_can_not_change_providers(tenant: Tenant) -> None:
    member = tenant.http.post("/v1/members", json={"email": "dev@example.com", "role": "member"})
    assert member.status_code == 201, member.text
    key = tenant.http.post("/v1/api-keys", json={"name": "dev", "member_id": member.json()["id"]})
    assert key.status_code == 201, key.text
    headers = {"X-Api-Key": key.json()["id"], "X-Secret-Key": key.json()["secret"]}
    body = {"host": "127.0.0.1", "from_address": "a@b.example"}
    response = tenant.http.put("/v1/messaging/providers/smtp", json=body, headers=headers)
    problem(response, 403, "role_required")


def test_a_users_subscriptions_on_every_channel(tenant: Tenant) -> None:
    email, phone = unique_email("ann"), unique_phone()
    put_user(tenant, "ann", email=email, phone=phone)
    token = token_for("ann-subscriptions")
    register(tenant, "ann", token)
    listed = tenant.http.get("/v1/users/ann/subscriptions").json()
    assert [(s["channel"], s["address"], s["status"]) for s in listed] == [
        ("push", token, "subscribed"),
        ("email", email, "subscribed"),
        ("sms", phone, "subscribed"),
    ]
    changed = tenant.http.patch("/v1/users/ann/subscriptions/sms", json={"status": "unsubscribed"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["status"], changed.json()["status_reason"]) == ("unsubscribed", "api")
    statuses = {
        s["channel"]: s["status"] for s in tenant.http.get("/v1/users/ann/subscriptions").json()
    }
    assert statuses == {"push": "subscribed", "email": "subscribed", "sms": "unsubscribed"}
    back = tenant.http.patch("/v1/users/ann/subscriptions/sms", json={"status": "subscribed"})
    assert back.json()["status"] == "subscribed"


def test_subscription_changes_that_make_no_sense_are_refused(tenant: Tenant) -> None:
    put_user(tenant, "bare", first_name="No address")
    problem(
        tenant.http.patch("/v1/users/bare/subscriptions/email", json={"status": "unsubscribed"}),
        404,
        "subscription_not_found",
    )
    problem(
        tenant.http.patch("/v1/users/bare/subscriptions/push", json={"status": "unsubscribed"}),
        422,
        "invalid_input",
    )
    problem(
        tenant.http.patch("/v1/users/bare/subscriptions/email", json={"status": "bounced"}),
        422,
        "invalid_input",
    )
    problem(
        tenant.http.patch("/v1/users/ghost/subscriptions/email", json={"status": "subscribed"}),
        404,
        "user_not_found",
    )
    assert tenant.http.get("/v1/users/bare/subscriptions").json() == []


def test_another_workspace_sees_none_of_it(tenant: Tenant, other_tenant: Tenant) -> None:
    put_user(tenant, "ann", email=unique_email("ann"))
    problem(other_tenant.http.get("/v1/users/ann/subscriptions"), 404, "user_not_found")
