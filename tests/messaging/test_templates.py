"""Stored templates: CRUD, checks at save time, preview, and sends made with a template
going out through the FCM emulator personalised per user."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.conftest import Tenant
from tests.messaging.support import Fcm, connect_fcm, register, run_fanout, token_for
from tests.users.support import problem

from spoke.core.db import session_scope
from spoke.messaging.models import Notification

WELCOME = {
    "title": 'Hi {{ first_name | default("there") }}',
    "body": "{% if tier %}Your {{ tier }} perks await{% else %}Join {{ plan }}{% endif %}",
    "link_url": "app://welcome/{{ external_id }}",
    "data": {"screen": "welcome"},
}


@pytest.fixture
def prefix() -> str:
    return uuid.uuid4().hex[:8]


def _create(tenant: Tenant, **body: Any) -> dict[str, Any]:
    body.setdefault("channel", "push")
    response = tenant.http.post("/v1/templates", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_templates_are_created_read_listed_updated_and_deleted(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    push = _create(tenant, name="welcome", content=WELCOME, defaults={"plan": "Pro"})
    assert push["version"] == 1
    assert push["variables"] == ["external_id", "first_name", "plan", "tier"]
    assert push["content"] == WELCOME
    email = _create(
        tenant,
        name="receipt",
        channel="email",
        content={"subject": "Order {{ order_id }}", "html": "<p>Hi {{ first_name }}</p>"},
    )
    sms = _create(tenant, name="code", channel="sms", content={"body": "Code {{ code }}"})
    assert tenant.http.get(f"/v1/templates/{email['id']}").json() == email

    first = tenant.http.get("/v1/templates", params={"limit": 2}).json()
    assert [t["name"] for t in first["data"]] == ["welcome", "receipt"]
    second = tenant.http.get("/v1/templates", params={"cursor": first["next_cursor"]}).json()
    assert ([t["name"] for t in second["data"]], second["next_cursor"]) == (["code"], None)
    only_sms = tenant.http.get("/v1/templates", params={"channel": "sms"}).json()["data"]
    assert [t["id"] for t in only_sms] == [sms["id"]]

    renamed = tenant.http.patch(f"/v1/templates/{push['id']}", json={"name": "hello"}).json()
    assert (renamed["name"], renamed["version"]) == ("hello", 1)  # a name is not content
    edited = tenant.http.patch(
        f"/v1/templates/{push['id']}", json={"content": {"title": "Hey {{ first_name }}"}}
    ).json()
    assert (edited["version"], edited["content"]) == (2, {"title": "Hey {{ first_name }}"})
    same = tenant.http.patch(f"/v1/templates/{push['id']}", json={"defaults": {"plan": "Pro"}})
    assert same.json()["version"] == 2  # unchanged fallbacks: no new version

    problem(tenant.http.post("/v1/templates", json={**push, "id": None}), 422, "invalid_input")
    taken = tenant.http.post(
        "/v1/templates", json={"name": "hello", "channel": "sms", "content": {"body": "x"}}
    )
    problem(taken, 409, "template_name_taken")
    problem(other_tenant.http.get(f"/v1/templates/{push['id']}"), 404, "template_not_found")
    assert tenant.http.delete(f"/v1/templates/{sms['id']}").status_code == 204
    problem(tenant.http.get(f"/v1/templates/{sms['id']}"), 404, "template_not_found")
    problem(tenant.http.delete(f"/v1/templates/{sms['id']}"), 404, "template_not_found")
    problem(tenant.http.get("/v1/templates", params={"cursor": "%%%"}), 400, "invalid_cursor")


def test_templates_are_checked_when_saved(tenant: Tenant) -> None:
    broken = tenant.http.post(
        "/v1/templates",
        json={
            "name": "broken",
            "channel": "push",
            "content": {"title": "Hi {{ name ", "body": "line one\n{% if x %}never closed"},
        },
    )
    body = problem(broken, 422, "invalid_template")
    assert [(e["field"], e["message"].split(":")[0]) for e in body["errors"]] == [
        ("body.content.title", "line 1"),
        ("body.content.body", "line 2"),
    ]
    unknown_filter = tenant.http.post(
        "/v1/templates",
        json={"name": "f", "channel": "push", "content": {"title": "{{ x | nope }}"}},
    )
    assert "nope" in problem(unknown_filter, 422, "invalid_template")["errors"][0]["message"]
    wrong_field = tenant.http.post(
        "/v1/templates", json={"name": "w", "channel": "sms", "content": {"title": "x"}}
    )
    fields = {e["field"] for e in problem(wrong_field, 422, "invalid_input")["errors"]}
    assert fields == {"body.content.title", "body.content.body"}
    empty_push = tenant.http.post(
        "/v1/templates", json={"name": "e", "channel": "push", "content": {"data": {"a": "b"}}}
    )
    problem(empty_push, 422, "invalid_input")
    bad_default = tenant.http.post(
        "/v1/templates",
        json={
            "name": "d",
            "channel": "sms",
            "content": {"body": "x"},
            "defaults": {"not a name": "x"},
        },
    )
    problem(bad_default, 422, "invalid_input")
    created = _create(tenant, name="ok", channel="sms", content={"body": "fine"})
    broken_edit = tenant.http.patch(
        f"/v1/templates/{created['id']}", json={"content": {"body": "{% endfor %}"}}
    )
    problem(broken_edit, 422, "invalid_template")
    assert tenant.http.get(f"/v1/templates/{created['id']}").json()["content"] == {"body": "fine"}
    assert tenant.http.get("/v1/templates").json()["data"] == [created]  # nothing else stored


def test_preview_renders_for_a_user_with_fallbacks_and_variables(tenant: Tenant) -> None:
    assert tenant.http.post("/v1/fields", json={"name": "points", "type": "number"}).is_success
    tenant.http.put(
        "/v1/users/ann",
        json={"first_name": "Ann", "custom": {"points": 120}, "tags": {"tier": "gold"}},
    )
    tenant.http.put("/v1/users/anon", json={})
    template = _create(
        tenant,
        name="points",
        content={
            "title": "{{ first_name }}, you have {{ points }} points",
            "body": "{{ greeting }} {{ vars.promo }}",
        },
        defaults={"first_name": "Friend", "points": 0, "greeting": "Hello"},
    )
    url = f"/v1/templates/{template['id']}/preview"
    ann = tenant.http.post(url, json={"user_id": "ann", "variables": {"promo": "X1"}}).json()
    assert ann["content"]["title"] == "Ann, you have 120 points"
    assert ann["content"]["body"] == "Hello X1"
    assert ann["missing"] == []
    anon = tenant.http.post(url, json={"user_id": "anon"}).json()
    assert anon["content"]["title"] == "Friend, you have 0 points"
    assert anon["version"] == 1
    # Send variables win over the user's own values.
    forced = tenant.http.post(url, json={"user_id": "ann", "variables": {"points": 5}}).json()
    assert forced["content"]["title"] == "Ann, you have 5 points"
    html = _create(
        tenant,
        name="mail",
        channel="email",
        content={"subject": "For {{ first_name }}", "html": "<b>{{ first_name }}</b> {{ x }}"},
    )
    tenant.http.put("/v1/users/mallory", json={"first_name": "<script>"})
    mail = tenant.http.post(
        f"/v1/templates/{html['id']}/preview", json={"user_id": "mallory"}
    ).json()
    assert mail["content"] == {
        "subject": "For <script>",
        "html": "<b>&lt;script&gt;</b> ",
    }
    assert mail["missing"] == ["x"]
    problem(tenant.http.post(url, json={"user_id": "ghost"}), 404, "user_not_found")
    problem(tenant.http.post("/v1/templates/tpl_nope/preview", json={}), 404, "template_not_found")
    evil = _create(
        tenant, name="evil", content={"title": "{{ ''.__class__.__mro__[1].__subclasses__() }}"}
    )
    failed = tenant.http.post(f"/v1/templates/{evil['id']}/preview", json={})
    problem(failed, 422, "template_render_failed")


def test_a_send_with_a_template_is_personalised_per_user(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    tenant.http.put("/v1/users/ann", json={"first_name": "Ann", "tags": {"tier": "gold"}})
    tenant.http.put("/v1/users/bob", json={})
    for name in ("ann", "bob"):
        register(tenant, name, token_for(f"{prefix}-{name}"))
    template = _create(tenant, name="welcome", content=WELCOME, defaults={"plan": "Pro"})
    response = tenant.http.post(
        "/v1/notifications",
        json={
            "channel": "push",
            "audience": {"user_ids": ["ann", "bob"]},
            "template_id": template["id"],
        },
    )
    assert response.status_code == 202, response.text
    result = run_fanout(tenant, response.json()["id"])
    assert result["counts"]["sent"] == 2
    assert result["content"]["template"] == {
        "id": template["id"],
        "name": "welcome",
        "version": 1,
    }
    (to_ann,) = fcm.messages(token_for(f"{prefix}-ann"))
    (to_bob,) = fcm.messages(token_for(f"{prefix}-bob"))
    assert to_ann["notification"] == {"title": "Hi Ann", "body": "Your gold perks await"}
    assert to_ann["data"]["link"] == "app://welcome/ann"
    assert to_ann["data"]["screen"] == "welcome"
    assert to_bob["notification"] == {"title": "Hi there", "body": "Join Pro"}


def test_a_scheduled_send_keeps_the_template_version_it_was_made_with(
    tenant: Tenant, fcm: Fcm, prefix: str
) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{prefix}-ann")
    register(tenant, "ann", token)
    template = _create(tenant, name="sale", content={"title": "Sale: {{ vars.pct }}% off"})
    later = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    response = tenant.http.post(
        "/v1/notifications",
        json={
            "channel": "push",
            "audience": {"user_ids": ["ann"]},
            "template_id": template["id"],
            "variables": {"pct": 30},
            "send_at": later,
        },
    )
    assert response.status_code == 202, response.text
    edited = tenant.http.patch(
        f"/v1/templates/{template['id']}", json={"content": {"title": "Changed"}}
    )
    assert edited.json()["version"] == 2
    with session_scope(tenant.backend.runtime.sessions) as session:
        notification = session.get(Notification, response.json()["id"])
        assert notification is not None
        notification.send_at = datetime.now(UTC) - timedelta(seconds=1)
    result = run_fanout(tenant, response.json()["id"])
    assert result["content"]["template"]["version"] == 1
    assert fcm.messages(token)[0]["notification"] == {"title": "Sale: 30% off"}


def test_a_template_send_is_refused_when_it_does_not_fit(tenant: Tenant, fcm: Fcm) -> None:
    connect_fcm(tenant, fcm)
    sms = _create(tenant, name="sms", channel="sms", content={"body": "x"})
    push = _create(tenant, name="push", content={"title": "x"})
    base = {"channel": "push", "audience": {"everyone": True}}
    mismatch = tenant.http.post("/v1/notifications", json={**base, "template_id": sms["id"]})
    assert problem(mismatch, 422, "template_channel_mismatch")["errors"][0]["field"] == (
        "body.template_id"
    )
    both = tenant.http.post(
        "/v1/notifications", json={**base, "template_id": push["id"], "title": "inline"}
    )
    problem(both, 422, "invalid_input")
    missing = tenant.http.post("/v1/notifications", json={**base, "template_id": "tpl_gone"})
    problem(missing, 404, "template_not_found")
    assert tenant.http.get("/v1/notifications").json()["data"] == []


def test_inline_content_takes_send_variables_too(tenant: Tenant, fcm: Fcm, prefix: str) -> None:
    connect_fcm(tenant, fcm)
    token = token_for(f"{prefix}-ann")
    register(tenant, "ann", token)
    response = tenant.http.post(
        "/v1/notifications",
        json={
            "channel": "push",
            "audience": {"user_ids": ["ann"]},
            "title": "Order {{ order_id }} for {{ external_id }}",
            "variables": {"order_id": "A-7"},
        },
    )
    assert response.status_code == 202, response.text
    run_fanout(tenant, response.json()["id"])
    assert fcm.messages(token)[0]["notification"] == {"title": "Order A-7 for ann"}
