"""Firebase Cloud Messaging, HTTP v1: `POST {base}/v1/projects/{id}/messages:send`.

One request per message (the batch API is gone), many in flight. What each answer means
follows shared/reference/messaging.md §2.2:

- `UNREGISTERED` (404), `SENDER_ID_MISMATCH` (403) and an `INVALID_ARGUMENT` about the
  registration token → `token_gone`: the caller stops using that token.
- `INVALID_ARGUMENT` with a `google.rpc.BadRequest` detail is our payload's fault → failed.
- 429 `QUOTA_EXCEEDED`, 503 `UNAVAILABLE`, 500 `INTERNAL` and transport errors → retried
  with exponential backoff and jitter, waiting at least `Retry-After` when the answer has
  one; failed with the last reason once the attempts run out.
- 401 for our access token → the token is fetched again once; anything else → failed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
import orjson

from spoke.messaging.providers.base import PushMessage, SendGate, SendResult
from spoke.messaging.providers.http1 import Http1Pool, Response, TransportError
from spoke.messaging.providers.oauth import AccessTokens, ServiceAccount

FCM_BASE_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"
_RETRIABLE = frozenset({429, 500, 503})
_TOKEN_GONE = frozenset({"UNREGISTERED", "SENDER_ID_MISMATCH"})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before attempt `attempt + 1` (attempts count from 1)."""
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        backoff *= random.uniform(0.5, 1.0)  # per-message jitter: no synchronized retry wave
        if retry_after is not None:
            return float(max(min(retry_after, self.max_retry_after), backoff))
        return float(backoff)


def encode(message: PushMessage, *, validate_only: bool = False) -> bytes:
    """The `SendMessageRequest` body for one message."""
    fcm: dict[str, Any] = {"token": message.token}
    notification = {
        key: value
        for key, value in (
            ("title", message.title),
            ("body", message.body),
            ("image", message.image_url),
        )
        if value
    }
    if notification:
        fcm["notification"] = notification
    data = dict(message.data)
    if message.link_url:
        data.setdefault("link", message.link_url)
    if data:
        fcm["data"] = data
    if message.collapse_key:
        # Android and web show one notification per tag, iOS one per collapse id: a second
        # copy of a message (re-sent after a crash) replaces the first instead of adding one.
        fcm["android"] = {"collapse_key": message.collapse_key}
        fcm["apns"] = {"headers": {"apns-collapse-id": message.collapse_key[:64]}}
        if notification:
            fcm["android"]["notification"] = {"tag": message.collapse_key}
            fcm["webpush"] = {"notification": {"tag": message.collapse_key}}
    request: dict[str, Any] = {"message": fcm}
    if validate_only:
        request["validate_only"] = True
    return orjson.dumps(request)


@dataclass(frozen=True)
class _Verdict:
    kind: Literal["sent", "token_gone", "failed", "retry", "reauth"]
    reason: str | None = None
    message_id: str | None = None
    retry_after: float | None = None


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def classify(status: int, headers: dict[str, str], body: bytes) -> _Verdict:
    """Turn one FCM answer into what to do next."""
    if status == 200:
        try:
            name = orjson.loads(body).get("name")
        except (orjson.JSONDecodeError, AttributeError):
            name = None
        return _Verdict("sent", message_id=name if isinstance(name, str) else None)
    error: dict[str, Any] = {}
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
    except orjson.JSONDecodeError:
        pass
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    fcm_code = next((d.get("errorCode") for d in details if d.get("@type") == _FCM_ERROR), None)
    code = str(fcm_code or error.get("status") or f"HTTP_{status}")
    message = str(error.get("message", ""))[:250]
    reason = f"{code}: {message}" if message else code
    if status in _RETRIABLE:
        return _Verdict("retry", reason, retry_after=_retry_after(headers))
    if code in _TOKEN_GONE or status == 404:
        return _Verdict("token_gone", reason)
    if code == "INVALID_ARGUMENT":
        payload_fault = any(d.get("@type") == _BAD_REQUEST for d in details)
        if not payload_fault and "token" in message.lower():
            return _Verdict("token_gone", reason)
        return _Verdict("failed", reason)
    if status == 401 and code in ("UNAUTHENTICATED", "HTTP_401"):
        return _Verdict("reauth", reason)
    return _Verdict("failed", reason)


WARM_CONNECTIONS = 32


class _HttpxPool:
    """The same interface as `Http1Pool` over httpx (HTTP/2 when `h2` is installed)."""

    def __init__(self, base_url: str, *, size: int, timeout: float) -> None:
        http2 = importlib.util.find_spec("h2") is not None
        self._client = httpx.AsyncClient(
            base_url=base_url,
            http2=http2,
            timeout=timeout,
            limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: bytes = b"",
        gate: SendGate | None = None,
    ) -> Response:
        if gate is not None:  # httpx writes for us: the recorded window is a little wider
            await gate.write(lambda: None)
        try:
            answer = await self._client.request(method, path, headers=headers, content=body)
        except httpx.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return Response(
            answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content
        )

    async def warm(self, count: int) -> None:
        """httpx opens its connections as requests need them."""

    async def aclose(self) -> None:
        await self._client.aclose()


class FcmProvider:
    """Sends through one Firebase project with one service account."""

    def __init__(
        self,
        account: ServiceAccount,
        *,
        base_url: str = FCM_BASE_URL,
        concurrency: int = 64,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: Literal["http1", "httpx"] = "http1",
        warm: int = WARM_CONNECTIONS,
    ) -> None:
        self._account = account
        self._warm = warm  # connections `connect()` opens ahead (no more than sends expected)
        self._tokens = AccessTokens(account, SCOPE)
        self._retry = retry or RetryPolicy()
        self._path = f"/v1/projects/{account.project_id}/messages:send"
        pool_type = Http1Pool if transport == "http1" else _HttpxPool
        self._pool: Http1Pool | _HttpxPool = pool_type(
            base_url.rstrip("/"), size=concurrency, timeout=timeout
        )

    async def connect(self) -> None:
        """Fetch the access token now, so the first send doesn't wait for it.

        Raises:
            ProviderConfigError: the token endpoint refused the key or never answered.
        """
        # Connections open meanwhile: the first batch then goes out on warm ones.
        await asyncio.gather(self._tokens.get(), self._pool.warm(self._warm))

    async def send_many(
        self, messages: Sequence[PushMessage], gate: SendGate | None = None
    ) -> list[SendResult]:
        # Fetch the token once up front: a bad key fails the batch before any send.
        await self._tokens.get()
        if len(messages) == 1:
            return [await self.send(messages[0], gate)]
        return list(await asyncio.gather(*(self.send(m, gate) for m in messages)))

    async def send(self, message: PushMessage, gate: SendGate | None = None) -> SendResult:
        """One message, retried as the module docstring says; see `PushProvider.send_many`."""
        body = encode(message)
        reauthorised = False
        attempt = 0
        while True:
            attempt += 1
            token = await self._tokens.get()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            try:
                answer = await self._pool.request(
                    "POST", self._path, headers=headers, body=body, gate=gate
                )
                verdict = classify(answer.status, answer.headers, answer.body)
                if gate is not None and verdict.kind in ("retry", "reauth"):
                    gate.refused()  # FCM answered and did not take it: nothing to duplicate
            except TransportError as exc:
                # No answer: FCM may have taken it. Retried all the same (FCM's advice),
                # the one case where a device can get a message twice without a crash.
                verdict = _Verdict("retry", f"TRANSPORT: {exc}"[:300])
            if verdict.kind == "reauth" and not reauthorised:
                reauthorised = True
                self._tokens.invalidate(token)
                attempt -= 1
                continue
            if verdict.kind == "retry" and attempt < self._retry.attempts:
                await asyncio.sleep(self._retry.delay(attempt, verdict.retry_after))
                continue
            if verdict.kind in ("retry", "reauth"):
                return SendResult("failed", reason=verdict.reason, attempts=attempt)
            outcome: Literal["sent", "token_gone", "failed"] = verdict.kind  # type: ignore[assignment]
            return SendResult(outcome, verdict.message_id, verdict.reason, attempt)

    async def aclose(self) -> None:
        await self._pool.aclose()
