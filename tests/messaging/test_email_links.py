"""The links Spoke puts in emails, followed over real HTTP: the per-recipient unsubscribe
link (confirmation page, button, RFC 8058 one-click) and click tracking (signed redirect
that records `clicked`), and the refusal of tokens Spoke did not sign."""

from __future__ import annotations

import base64
import re
from typing import Any

import httpx
import orjson
from tests.conftest import Tenant
from tests.messaging.channel_support import Sink, connect_smtp, put_user, send, unique_email
from tests.messaging.support import run_fanout
from tests.users.support import problem

from spoke.messaging.tracking import LinkSigner

_HREF = re.compile(r'href="([^"]+)"')


def _header(message: dict[str, Any], name: str) -> str:
    return next(value for key, value in message["headers"] if key.lower() == name.lower())


def _path(url: str, base: str) -> str:
    assert url.startswith(base), url
    return url[len(base) :]


def _sent_to(tenant: Tenant, sink: Sink, user: str, **content: Any) -> tuple[str, dict[str, Any]]:
    address = unique_email(user)
    put_user(tenant, user, email=address)
    accepted = send(tenant, "email", [user], subject="News", **content)
    run_fanout(tenant, accepted["id"])
    (message,) = sink.messages(address)
    return accepted["id"], message


def _status(tenant: Tenant, user: str) -> str:
    (email,) = tenant.http.get(f"/v1/users/{user}/subscriptions").json()
    return str(email["status"])


def test_the_unsubscribe_link_asks_then_unsubscribes(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    _, message = _sent_to(
        tenant, sink, "ann", html='<p>Hi</p><p><a href="[unsubscribe_url]">Stop these</a></p>'
    )
    base = tenant.backend.url
    links = _HREF.findall(message["html"])
    assert len(links) == 1  # the placeholder became the link; no footer added
    unsubscribe = links[0].replace("&amp;", "&")
    assert unsubscribe == _header(message, "List-Unsubscribe")[1:-1]
    assert message["text"] is None  # an HTML-only email stays HTML-only
    with httpx.Client(base_url=base, timeout=30) as browser:
        page = browser.get(_path(unsubscribe, base))
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<form method=post" in page.text
        assert "a***@mail.example" in page.text
        assert _status(tenant, "ann") == "subscribed"  # looking changes nothing
        done = browser.post(_path(unsubscribe, base))
        assert done.status_code == 200
        assert "Unsubscribed" in done.text
        assert browser.post(_path(unsubscribe, base)).status_code == 200  # harmless again
    (email,) = tenant.http.get("/v1/users/ann/subscriptions").json()
    assert (email["status"], email["status_reason"]) == ("unsubscribed", "unsubscribe_link")
    again = run_fanout(tenant, send(tenant, "email", ["ann"], subject="More", text="x")["id"])
    assert again["unavailable"]["no_subscription"] == ["ann"]


def test_one_click_unsubscribe_from_the_header(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    _, message = _sent_to(tenant, sink, "bob", text="Plain text only")
    assert "Unsubscribe: " in message["text"]  # footer appended to a body without the link
    url = _header(message, "List-Unsubscribe")[1:-1]
    # What a mail client does on its own unsubscribe button (RFC 8058 §3.2).
    response = httpx.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert response.status_code == 200
    assert _status(tenant, "bob") == "unsubscribed"


def test_clicks_are_recorded_and_redirected(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    target = "https://shop.example/sale?id=7&utm=mail"
    notification_id, message = _sent_to(
        tenant,
        sink,
        "cat",
        html=(
            f'<a href="{target.replace("&", "&amp;")}">Sale</a> '
            "<a href=\"mailto:help@shop.example\">Mail us</a> <a href='#top'>Top</a>"
        ),
    )
    base = tenant.backend.url
    links = [link.replace("&amp;", "&") for link in _HREF.findall(message["html"])]
    tracked = [link for link in links if link.startswith(f"{base}/c/")]
    assert len(tracked) == 1  # the sale link; mailto, anchors and unsubscribe stay as they are
    assert "mailto:help@shop.example" in links
    assert "#top" in message["html"]
    assert sum(1 for link in links if link.startswith(f"{base}/u/")) == 1
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as browser:
        first = browser.get(_path(tracked[0], base))
        assert first.status_code == 302
        assert first.headers["location"] == target
        assert browser.get(_path(tracked[0], base)).status_code == 302  # a second click
    result = tenant.http.get(f"/v1/notifications/{notification_id}").json()
    assert (result["counts"]["clicked"], result["counts"]["click_rate"]) == (1, 1.0)
    assert result["counts"]["delivered"] == 1  # a click implies the email arrived
    (delivery,) = tenant.http.get(f"/v1/notifications/{notification_id}/deliveries").json()["data"]
    assert delivery["status"] == "clicked"


def test_tracking_can_be_turned_off(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    _, message = _sent_to(
        tenant, sink, "dan", html='<a href="https://shop.example/">Shop</a>', track_clicks=False
    )
    assert 'href="https://shop.example/"' in message["html"]


def _forge(token: str, payload: list[Any]) -> str:
    """The same signature on another payload."""
    _, _, mac = token.partition(".")
    body = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    return f"{body}.{mac}"


def test_links_spoke_did_not_sign_are_refused(tenant: Tenant, sink: Sink) -> None:
    connect_smtp(tenant, sink)
    _, message = _sent_to(tenant, sink, "eve", html='<a href="https://shop.example/a">A</a>')
    base = tenant.backend.url
    click_token = next(
        link for link in _HREF.findall(message["html"]) if link.startswith(f"{base}/c/")
    ).rsplit("/", 1)[1]
    unsubscribe_token = _header(message, "List-Unsubscribe")[1:-1].rsplit("/", 1)[1]
    payload = orjson.loads(base64.urlsafe_b64decode(click_token.split(".")[0] + "=="))
    delivery_id = payload[1]
    with httpx.Client(base_url=base, timeout=30, follow_redirects=False) as browser:
        # Another target under the same signature: an open redirect, were it accepted.
        forged = _forge(click_token, ["c", delivery_id, "https://evil.example/"])
        problem(browser.get(f"/c/{forged}"), 404, "link_not_found")
        # A token signed with another key.
        stranger = LinkSigner(["not-this-instance-key"]).sign(["c", delivery_id, "https://x.y/"])
        problem(browser.get(f"/c/{stranger}"), 404, "link_not_found")
        # An unsubscribe token is not a click token, and the other way round.
        problem(browser.get(f"/c/{unsubscribe_token}"), 404, "link_not_found")
        problem(browser.post(f"/u/{click_token}"), 404, "link_not_found")
        problem(
            browser.get(f"/u/{_forge(unsubscribe_token, ['u', delivery_id, 'x@y.z'])}"),
            404,
            "link_not_found",
        )
        problem(browser.get("/c/not-a-token"), 422, "invalid_input")
        problem(browser.get("/u/abc.def"), 404, "link_not_found")
    assert _status(tenant, "eve") == "subscribed"
    result = tenant.http.get("/v1/notifications").json()["data"][0]
    counts = tenant.http.get(f"/v1/notifications/{result['id']}").json()["counts"]
    assert counts["clicked"] == 0


def test_a_signed_link_to_a_non_http_target_is_never_followed(tenant: Tenant) -> None:
    """Even a validly signed token can't redirect to `javascript:` or a scheme-relative URL
    (Spoke never signs one; this guards the redirect itself)."""
    signer = LinkSigner(tenant.backend.runtime.settings.secret_keys())
    with httpx.Client(base_url=tenant.backend.url, timeout=30, follow_redirects=False) as b:
        for target in ("javascript:alert(1)", "//evil.example/", "https:/nohost", "data:,x"):
            token = signer.sign(["c", 1, target])
            problem(b.get(f"/c/{token}"), 404, "link_not_found")
