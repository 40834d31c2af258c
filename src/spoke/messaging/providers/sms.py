"""SMS through a Twilio-compatible Messages API:
`POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `From`
(or `MessagingServiceSid`) and `Body`, HTTP Basic auth `AccountSid:AuthToken`.

What each answer means (Twilio's error codes, https://www.twilio.com/docs/api/errors):

- 201 → `sent`, with the message `sid`.
- 21211 (`To` is not a valid number), 21614 (not a mobile number) → `token_gone`,
  `address_status="invalid"`: the number can't receive SMS.
- 21610 (the recipient texted STOP to this sender) → `token_gone`,
  `address_status="unsubscribed"`: sending again is refused until they text START.
- 429 (20429) and 5xx, and transport errors → retried with exponential backoff and jitter,
  waiting at least `Retry-After`; failed with the last reason once the attempts run out.
- anything else (e.g. 21617 body too long, 21408 region not enabled) → failed.

After a crash, `find_sent` asks Twilio whether a message went out: the account's messages
are listed newest first, filtered by `To` (and `From`), back to when the send started.

Before the first message, the account is fetched once (`GET /Accounts/{sid}.json`), so
wrong credentials fail the whole send before any message leaves (`ProviderConfigError`).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

import orjson

from spoke.messaging.providers.base import ProviderConfigError, SendGate, SendResult
from spoke.messaging.providers.fcm import RetryPolicy
from spoke.messaging.providers.http1 import Http1Pool, TransportError

TWILIO_BASE_URL = "https://api.twilio.com"
INVALID_NUMBER_CODES = frozenset({21211, 21614})
# A lookup reads at most this many messages to one number (newest first) before giving up.
_LOOKUP_PAGE = 50
_LOOKUP_PAGES = 10
UNSUBSCRIBED_CODE = 21610


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth_token: str
    # One of the two: a sending number (E.164) or a Messaging Service that picks one.
    from_number: str | None = None
    messaging_service_sid: str | None = None
    base_url: str = TWILIO_BASE_URL


@dataclass(frozen=True)
class SmsMessage:
    to: str
    body: str
    status_callback: str | None = None


class LookupFailed(Exception):
    """Twilio could not be asked whether it took a message."""


@dataclass(frozen=True)
class _Verdict:
    kind: Literal["sent", "gone", "failed", "retry"]
    reason: str | None = None
    message_id: str | None = None
    address_status: str | None = None
    retry_after: float | None = None


def retry_after_seconds(headers: dict[str, str]) -> float | None:
    """`Retry-After` as seconds (delta-seconds or an HTTP date), or None."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _created(message: dict[str, Any]) -> datetime | None:
    """A listed message's `date_created` (RFC 2822, whole seconds)."""
    try:
        when = parsedate_to_datetime(str(message.get("date_created") or ""))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _error(body: bytes) -> tuple[int | None, str]:
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, body[:200].decode("utf-8", "replace")
    if not isinstance(parsed, dict):
        return None, ""
    code = parsed.get("code")
    return (code if isinstance(code, int) else None), str(parsed.get("message", ""))[:250]


def classify(status: int, headers: dict[str, str], body: bytes) -> _Verdict:
    """One Messages API answer as what to do next."""
    if status in (200, 201):
        try:
            sid = orjson.loads(body).get("sid")
        except (orjson.JSONDecodeError, AttributeError):
            sid = None
        return _Verdict("sent", message_id=sid if isinstance(sid, str) else None)
    code, message = _error(body)
    reason = f"{code or f'HTTP_{status}'}: {message}" if message else str(code or f"HTTP_{status}")
    if status == 429 or status >= 500:
        return _Verdict("retry", reason, retry_after=retry_after_seconds(headers))
    if code in INVALID_NUMBER_CODES:
        return _Verdict("gone", reason, address_status="invalid")
    if code == UNSUBSCRIBED_CODE:
        return _Verdict("gone", reason, address_status="unsubscribed")
    return _Verdict("failed", reason)


class TwilioProvider:
    """Sends through one account, many requests in flight on keep-alive connections."""

    def __init__(
        self,
        account: TwilioAccount,
        *,
        concurrency: int = 16,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not account.from_number and not account.messaging_service_sid:
            raise ProviderConfigError("an SMS sender needs a From number or a Messaging Service")
        self._account = account
        self._retry = retry or RetryPolicy()
        sid = quote(account.account_sid, safe="")
        self._account_path = f"/2010-04-01/Accounts/{sid}.json"
        self._messages_path = f"/2010-04-01/Accounts/{sid}/Messages.json"
        credentials = f"{account.account_sid}:{account.auth_token}".encode()
        self._auth = "Basic " + base64.b64encode(credentials).decode()
        self._pool = Http1Pool(account.base_url.rstrip("/"), size=concurrency, timeout=timeout)
        self._checked = False

    async def check_credentials(self) -> None:
        """Fetch the account once; raise if the credentials are refused.

        An unreachable API is not a configuration problem: messages retry on their own."""
        try:
            answer = await self._pool.request(
                "GET", self._account_path, headers={"Authorization": self._auth}
            )
        except TransportError:
            return
        if answer.status in (401, 403, 404):
            code, message = _error(answer.body)
            raise ProviderConfigError(
                f"the SMS provider refused the account credentials ({code or answer.status}: "
                f"{message or 'unauthorized'})"
            )

    async def send_many(
        self, messages: Sequence[SmsMessage], gates: Sequence[SendGate | None] | None = None
    ) -> list[SendResult]:
        """One result per message; every attempt of `messages[i]` passes through `gates[i]`."""
        if not self._checked:
            await self.check_credentials()
            self._checked = True
        each = gates if gates is not None else [None] * len(messages)
        return list(
            await asyncio.gather(*(self.send(m, g) for m, g in zip(messages, each, strict=True)))
        )

    def _form(self, message: SmsMessage) -> bytes:
        fields = {"To": message.to, "Body": message.body}
        if self._account.messaging_service_sid:
            fields["MessagingServiceSid"] = self._account.messaging_service_sid
        if self._account.from_number:
            fields["From"] = self._account.from_number
        if message.status_callback:
            fields["StatusCallback"] = message.status_callback
        return urlencode(fields).encode()

    async def send(self, message: SmsMessage, gate: SendGate | None = None) -> SendResult:
        body = self._form(message)
        headers = {
            "Authorization": self._auth,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._pool.request(
                    "POST", self._messages_path, headers=headers, body=body, gate=gate
                )
                verdict = classify(answer.status, answer.headers, answer.body)
                if gate is not None and verdict.kind == "retry":
                    gate.refused()  # Twilio answered and did not take it: nothing to duplicate
            except TransportError as exc:
                verdict = _Verdict("retry", f"TRANSPORT: {exc}"[:300])
            if verdict.kind == "retry" and attempt < self._retry.attempts:
                await asyncio.sleep(self._retry.delay(attempt, verdict.retry_after))
                continue
            if verdict.kind == "sent":
                return SendResult("sent", verdict.message_id, None, attempt)
            if verdict.kind == "gone":
                return SendResult(
                    "token_gone",
                    reason=verdict.reason,
                    attempts=attempt,
                    address_status=verdict.address_status,
                )
            return SendResult("failed", reason=verdict.reason, attempts=attempt)

    async def find_sent(
        self, message: SmsMessage, since: datetime, skip: Collection[str] = ()
    ) -> str | None:
        """The sid of a message Twilio took from this sender to `message.to` with the body
        of `message` at or after `since` (and not in `skip`); None if it took none.

        Raises:
            LookupFailed: Twilio couldn't be asked, or the list is too long to read back.
        """
        query = {"To": message.to, "PageSize": str(_LOOKUP_PAGE)}
        if self._account.from_number:
            query["From"] = self._account.from_number
        # `date_created` has whole seconds: a message of the first second must still count.
        since = since.replace(microsecond=0)
        path: str = f"{self._messages_path}?{urlencode(query)}"
        for _ in range(_LOOKUP_PAGES):
            page = await self._list(path)
            for item in page.get("messages") or []:
                created = _created(item)
                if created is None:
                    raise LookupFailed(f"a listed message has no date: {item.get('sid')!r}")
                if created < since:
                    return None  # newest first: the rest are older still
                sid = item.get("sid")
                if (
                    isinstance(sid, str)
                    and sid not in skip
                    and item.get("body") == message.body
                    and self._sent_by_us(item)
                ):
                    return sid
            next_page = page.get("next_page_uri")
            if not isinstance(next_page, str) or not next_page:
                return None
            path = next_page
        raise LookupFailed(f"more than {_LOOKUP_PAGE * _LOOKUP_PAGES} messages to that number")

    def _sent_by_us(self, item: dict[str, Any]) -> bool:
        if self._account.messaging_service_sid:
            return bool(item.get("messaging_service_sid") == self._account.messaging_service_sid)
        return bool(item.get("from") == self._account.from_number)

    async def _list(self, path: str) -> dict[str, Any]:
        """One page of the message list, retried like a send."""
        headers = {"Authorization": self._auth, "Accept": "application/json"}
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._pool.request("GET", path, headers=headers)
            except TransportError as exc:
                reason, retry_after = f"TRANSPORT: {exc}", None
            else:
                if answer.status == 200:
                    try:
                        page = orjson.loads(answer.body)
                    except orjson.JSONDecodeError:
                        page = None
                    if not isinstance(page, dict):
                        raise LookupFailed("the message list is not a JSON object")
                    return page
                code, message = _error(answer.body)
                reason = f"{code or f'HTTP_{answer.status}'}: {message}"
                if answer.status != 429 and answer.status < 500:
                    raise LookupFailed(reason)
                retry_after = retry_after_seconds(answer.headers)
            if attempt >= self._retry.attempts:
                raise LookupFailed(reason)
            await asyncio.sleep(self._retry.delay(attempt, retry_after))

    async def aclose(self) -> None:
        await self._pool.aclose()
