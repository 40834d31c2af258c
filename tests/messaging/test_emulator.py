"""The FCM emulator speaks the wire contract: a JWT-bearer token exchange that checks the
RS256 signature, FCM's error bodies, injected latency and faults, and the admin read API."""

from __future__ import annotations

import time
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from tests.messaging.support import Fcm

from spoke.messaging.providers.fcm import SCOPE as SCOPE_CHECK
from spoke.messaging.providers.oauth import JWT_BEARER

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


def _assertion(
    fcm: Fcm,
    *,
    forge: bool = False,
    scope: str = SCOPE_CHECK,
    audience: str = GOOGLE_TOKEN_AUDIENCE,
) -> str:
    """The JWT google-auth signs for a service account (its claims, its RS256 signer)."""
    key = fcm.service_account()
    pem = key["private_key"]
    if forge:  # same account name and key id, different private key
        pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            .decode()
        )
    signer = crypt.RSASigner.from_string(pem, key["private_key_id"])
    now = int(time.time())
    claims = {
        "iss": key["client_email"],
        "scope": scope,
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(signer, claims).decode()


def _bearer(fcm: Fcm) -> dict[str, str]:
    """The header of a send authorised with a freshly issued access token."""
    token = fcm.http.post(
        "/token", data={"grant_type": JWT_BEARER, "assertion": _assertion(fcm)}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_token_endpoint_issues_a_token_for_a_correctly_signed_assertion(fcm: Fcm) -> None:
    response = fcm.http.post(
        "/token", data={"grant_type": JWT_BEARER, "assertion": _assertion(fcm)}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["access_token"].startswith("ya29.")


def test_token_endpoint_takes_googles_audience_whatever_the_token_uri(fcm: Fcm) -> None:
    # google-auth always signs `aud` = Google's endpoint, even when `token_uri` points here.
    google = fcm.http.post("/token", data={"grant_type": JWT_BEARER, "assertion": _assertion(fcm)})
    assert google.status_code == 200
    elsewhere = fcm.http.post(
        "/token",
        data={
            "grant_type": JWT_BEARER,
            "assertion": _assertion(fcm, audience="https://elsewhere.example/token"),
        },
    )
    assert elsewhere.status_code == 400
    assert elsewhere.json()["error"] == "invalid_grant"


def test_token_endpoint_refuses_a_forged_signature_and_wrong_grants(fcm: Fcm) -> None:
    forged = fcm.http.post(
        "/token", data={"grant_type": JWT_BEARER, "assertion": _assertion(fcm, forge=True)}
    )
    assert forged.status_code == 400
    assert forged.json()["error"] == "invalid_grant"
    wrong_grant = fcm.http.post("/token", data={"grant_type": "password", "assertion": "x"})
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    junk = fcm.http.post("/token", data={"grant_type": JWT_BEARER, "assertion": "a.b.c"})
    assert junk.json()["error"] == "invalid_grant"
    no_scope = fcm.http.post(
        "/token",
        data={"grant_type": JWT_BEARER, "assertion": _assertion(fcm, scope="openid")},
    )
    assert no_scope.json()["error"] == "invalid_scope"


def test_send_needs_a_bearer_token_of_the_same_project(fcm: Fcm) -> None:
    message = {"message": {"token": "abcdefgh", "notification": {"title": "x"}}}
    anonymous = fcm.http.post("/v1/projects/demo-project/messages:send", json=message)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["status"] == "UNAUTHENTICATED"
    headers = _bearer(fcm)
    other = fcm.http.post("/v1/projects/elsewhere/messages:send", json=message, headers=headers)
    assert other.status_code == 403
    no_target = fcm.http.post(
        "/v1/projects/demo-project/messages:send", json={"message": {}}, headers=headers
    )
    assert no_target.status_code == 400
    details = no_target.json()["error"]["details"]
    assert details[0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    ok = fcm.http.post("/v1/projects/demo-project/messages:send", json=message, headers=headers)
    assert ok.status_code == 200
    assert ok.json()["name"].startswith("projects/demo-project/messages/")


def test_latency_and_faults_are_injected_and_messages_are_readable(fcm: Fcm) -> None:
    headers = _bearer(fcm)
    device = f"d-{uuid.uuid4().hex}"
    message = {"message": {"token": device, "data": {"n": "1"}}}
    assert fcm.http.put("/_fcm/config", json={"latency_ms": 150}).json()["latency_ms"] == 150
    fcm.fault(429, retry_after=3, token=device)
    started = time.monotonic()
    limited = fcm.http.post(
        "/v1/projects/demo-project/messages:send", json=message, headers=headers
    )
    assert time.monotonic() - started >= 0.15
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["details"][0]["errorCode"] == "QUOTA_EXCEEDED"
    fcm.http.put("/_fcm/config", json={"latency_ms": 0})
    sent = fcm.http.post("/v1/projects/demo-project/messages:send", json=message, headers=headers)
    assert sent.status_code == 200
    received = fcm.messages(device)
    assert [m["data"] for m in received] == [{"n": "1"}]
    assert received[0]["name"] == sent.json()["name"]
    fcm.set_state(device, "unregistered")
    gone = fcm.http.post("/v1/projects/demo-project/messages:send", json=message, headers=headers)
    assert gone.status_code == 404
    assert gone.json()["error"]["details"][0]["errorCode"] == "UNREGISTERED"
    assert fcm.http.put(f"/_fcm/tokens/{device}", json={"state": "odd"}).status_code == 400


def test_a_device_shows_one_notification_per_tag_or_collapse_id(fcm: Fcm) -> None:
    headers = _bearer(fcm)
    device = f"d-{uuid.uuid4().hex}"

    def send(title: str, **platforms: object) -> None:
        message = {"token": device, "notification": {"title": title}, **platforms}
        response = fcm.http.post(
            "/v1/projects/demo-project/messages:send", json={"message": message}, headers=headers
        )
        assert response.status_code == 200, response.text

    send("first", android={"notification": {"tag": "t1"}})
    send("untagged")
    send("again", android={"notification": {"tag": "t1"}})  # replaces "first"
    send("ios", apns={"headers": {"apns-collapse-id": "c1"}})
    send("ios again", apns={"headers": {"apns-collapse-id": "c1"}})
    send("web", webpush={"notification": {"tag": "w1"}})
    fcm.http.post(  # data only: the app's to show
        "/v1/projects/demo-project/messages:send",
        json={"message": {"token": device, "data": {"k": "v"}}},
        headers=headers,
    )
    tray = fcm.http.get(f"/_fcm/tokens/{device}/shown").json()
    assert tray["count"] == 4
    assert [n["notification"]["title"] for n in tray["notifications"]] == [
        "untagged",
        "again",
        "ios again",
        "web",
    ]
    assert len(fcm.messages(device)) == 7  # every message was received
