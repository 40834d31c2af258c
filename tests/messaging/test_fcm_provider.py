"""The FCM adapter against the emulator over loopback HTTP: OAuth, sends, and the handling
of every error class in shared/reference/messaging.md §2.2."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from tests.messaging.support import Fcm

from spoke.messaging.providers.base import ProviderConfigError, PushMessage, SendResult
from spoke.messaging.providers.fcm import FcmProvider, RetryPolicy, classify
from spoke.messaging.providers.oauth import ServiceAccount

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def _token() -> str:
    return f"t-{uuid.uuid4().hex}:APA91b"


def _send(
    fcm: Fcm,
    messages: list[PushMessage],
    *,
    retry: RetryPolicy = FAST,
    transport: Any = "http1",
    key: dict[str, Any] | None = None,
) -> list[SendResult]:
    account = ServiceAccount.from_info(key or fcm.service_account())

    async def go() -> list[SendResult]:
        provider = FcmProvider(
            account, base_url=fcm.url, concurrency=8, retry=retry, transport=transport
        )
        try:
            return await provider.send_many(messages)
        finally:
            await provider.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize("transport", ["http1", "httpx"])
def test_sends_reach_the_emulator_with_content_and_collapse_key(fcm: Fcm, transport: str) -> None:
    tokens = [_token() for _ in range(30)]
    results = _send(
        fcm,
        [
            PushMessage(t, title="Hi", body=f"n{i}", data={"k": "v"}, collapse_key=f"c{i}")
            for i, t in enumerate(tokens)
        ],
        transport=transport,
    )
    assert [r.outcome for r in results] == ["sent"] * 30
    assert all(r.message_id and r.message_id.startswith("projects/demo-project/") for r in results)
    received = fcm.messages(tokens[7])
    assert len(received) == 1
    assert received[0]["notification"] == {"title": "Hi", "body": "n7"}
    assert received[0]["data"] == {"k": "v"}
    # One notification on the device per delivery, whatever the platform.
    assert received[0]["android"] == {"collapse_key": "c7", "notification": {"tag": "c7"}}
    assert received[0]["apns"] == {"headers": {"apns-collapse-id": "c7"}}
    assert received[0]["webpush"] == {"notification": {"tag": "c7"}}


def test_unregistered_and_invalid_tokens_are_reported_gone(fcm: Fcm) -> None:
    gone, bad, good = _token(), _token(), _token()
    fcm.set_state(gone, "unregistered")
    fcm.set_state(bad, "invalid")
    results = _send(
        fcm, [PushMessage(gone, body="x"), PushMessage(bad, body="x"), PushMessage(good, body="x")]
    )
    assert [r.outcome for r in results] == ["token_gone", "token_gone", "sent"]
    assert results[0].reason is not None
    assert results[0].reason.startswith("UNREGISTERED")
    assert results[1].reason is not None
    assert results[1].reason.startswith("INVALID_ARGUMENT")
    assert fcm.messages(gone) == []
    assert fcm.messages(bad) == []


def test_429_is_retried_after_the_retry_after_it_names(fcm: Fcm) -> None:
    token = _token()
    fcm.fault(429, count=1, token=token, retry_after=1)
    started = time.monotonic()
    (result,) = _send(fcm, [PushMessage(token, body="x")])
    elapsed = time.monotonic() - started
    assert result.outcome == "sent"
    assert result.attempts == 2
    assert elapsed >= 1.0  # the backoff alone (≤ 0.05 s) would have been much shorter
    assert len(fcm.messages(token)) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_with_backoff(fcm: Fcm, status: int) -> None:
    token = _token()
    fcm.fault(status, count=2, token=token)
    (result,) = _send(fcm, [PushMessage(token, body="x")])
    assert (result.outcome, result.attempts) == ("sent", 3)
    assert len(fcm.messages(token)) == 1


def test_retries_give_up_as_failed_with_the_reason(fcm: Fcm) -> None:
    token = _token()
    fcm.fault(503, count=5, token=token)
    (result,) = _send(fcm, [PushMessage(token, body="x")])
    assert (result.outcome, result.attempts) == ("failed", 3)
    assert result.reason is not None
    assert result.reason.startswith("UNAVAILABLE")
    fcm.store.faults.clear()


def test_other_errors_fail_without_retry(fcm: Fcm) -> None:
    token = _token()
    fcm.fault(401, count=1, token=token)  # THIRD_PARTY_AUTH_ERROR: APNs credentials, not ours
    huge = PushMessage(_token(), body="x" * 5000)  # over FCM's 4 KB payload limit
    results = _send(fcm, [PushMessage(token, body="x"), huge])
    assert results[1].outcome == "failed"
    assert results[1].attempts == 1
    assert results[1].reason is not None
    assert "too big" in results[1].reason
    assert results[0].outcome == "failed"
    assert results[0].attempts == 1
    assert results[0].reason is not None
    assert results[0].reason.startswith("THIRD_PARTY_AUTH_ERROR")
    assert fcm.messages(token) == []


def test_an_expired_access_token_is_fetched_again(fcm: Fcm) -> None:
    key = fcm.service_account()
    token = _token()
    before = fcm.store.counts.get("tokens_issued", 0)
    account = ServiceAccount.from_info(key)

    async def go() -> list[SendResult]:
        provider = FcmProvider(account, base_url=fcm.url, retry=FAST)
        try:
            first = await provider.send_many([PushMessage(token, body="1")])
            fcm.store.access_tokens.clear()  # the emulator forgets every token it issued
            return first + await provider.send_many([PushMessage(token, body="2")])
        finally:
            await provider.aclose()

    results = asyncio.run(go())
    assert [r.outcome for r in results] == ["sent", "sent"]
    assert fcm.store.counts["tokens_issued"] - before == 2


def test_the_access_token_is_refreshed_before_it_expires(fcm: Fcm) -> None:
    # google-auth treats a token as stale 225 s before it expires: 226 s means after 1 s.
    fcm.store.token_lifetime = 226
    token = _token()
    account = ServiceAccount.from_info(fcm.service_account())
    before = dict(fcm.store.counts)

    async def go() -> list[SendResult]:
        provider = FcmProvider(account, base_url=fcm.url, retry=FAST)
        try:
            first = await provider.send_many([PushMessage(token, body="1")])
            await asyncio.sleep(1.2)
            return first + await provider.send_many([PushMessage(token, body="2")])
        finally:
            await provider.aclose()

    try:
        results = asyncio.run(go())
    finally:
        fcm.store.token_lifetime = 3600
    after = fcm.store.counts
    assert [r.outcome for r in results] == ["sent", "sent"]
    assert after["tokens_issued"] - before.get("tokens_issued", 0) == 2
    # Fetched ahead of expiry: FCM never saw the old token refused.
    assert after["requests"] - before.get("requests", 0) == 2
    assert after["accepted"] - before.get("accepted", 0) == 2


def test_a_key_the_emulator_does_not_know_is_a_config_error(fcm: Fcm) -> None:
    key = fcm.service_account()
    key["client_email"] = "someone-else@demo-project.iam.gserviceaccount.com"
    with pytest.raises(
        ProviderConfigError,
        match="token endpoint refused the service-account key: invalid_grant: Invalid JWT",
    ):
        _send(fcm, [PushMessage(_token(), body="x")], key=key)


def test_an_unreachable_token_endpoint_is_a_config_error(fcm: Fcm) -> None:
    key = fcm.service_account()
    key["token_uri"] = "http://127.0.0.1:9/token"  # nothing listens on the discard port
    with pytest.raises(ProviderConfigError, match="token endpoint failed"):
        _send(fcm, [PushMessage(_token(), body="x")], key=key)


def test_an_unreadable_private_key_is_refused_up_front(fcm: Fcm) -> None:
    key = fcm.service_account()
    key["private_key"] = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    with pytest.raises(ValueError, match="private_key"):
        ServiceAccount.from_info(key)


def test_a_token_for_another_project_is_refused(fcm: Fcm) -> None:
    key = fcm.service_account("other-project")
    key["project_id"] = "demo-project"  # a key of one project used for another
    (result,) = _send(fcm, [PushMessage(_token(), body="x")], key=key)
    assert result.outcome == "failed"
    assert result.reason is not None
    assert result.reason.startswith("PERMISSION_DENIED")


def test_classify_reads_fcm_error_details() -> None:
    def body(status: str, message: str, *details: dict[str, Any]) -> bytes:
        import orjson

        return orjson.dumps(
            {"error": {"status": status, "message": message, "details": list(details)}}
        )

    fcm_error = {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError"}
    assert (
        classify(
            403,
            {},
            body("PERMISSION_DENIED", "x", {**fcm_error, "errorCode": "SENDER_ID_MISMATCH"}),
        ).kind
        == "token_gone"
    )
    bad_request = {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": []}
    payload = classify(
        400, {}, body("INVALID_ARGUMENT", "Invalid registration token field", bad_request)
    )
    assert payload.kind == "failed"
    assert classify(503, {"retry-after": "7"}, b"").retry_after == 7.0
    assert classify(401, {}, body("UNAUTHENTICATED", "expired")).kind == "reauth"
    third_party = classify(
        401,
        {},
        body("UNAUTHENTICATED", "apns", {**fcm_error, "errorCode": "THIRD_PARTY_AUTH_ERROR"}),
    )
    assert third_party.kind == "failed"
