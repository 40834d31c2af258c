"""Status callbacks, the way Twilio makes them: after a message is accepted, a signed,
form-encoded POST of `MessageSid`, `MessageStatus` (`sent`, then `delivered`, `undelivered`
or `failed`) and `ErrorCode` to the message's `StatusCallback` URL.

The signature is computed here on its own (not with Spoke's code) as Twilio documents it:
`X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + every param sorted by name as
name + value)). Callbacks leave from a background queue, a little after the message was
accepted (a carrier's report takes a moment), and a refused one is retried a few times.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from typing import Any

import httpx

from spoke.sandbox.sms.store import DELIVERY_FAILURES, SmsStore

_WORKERS = 8
_ATTEMPTS = 5


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(
        hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    ).decode()


def final_status(store: SmsStore, to: str) -> tuple[str, int | None]:
    """How the carrier settles a message to `to`: delivered, or the number's failure."""
    return DELIVERY_FAILURES.get(store.state_of(to), ("delivered", None))


def params_for(message: dict[str, Any], status: str, error_code: int | None) -> dict[str, str]:
    params = {
        "AccountSid": message["account_sid"],
        "ApiVersion": "2010-04-01",
        "From": message.get("from") or "",
        "MessageSid": message["sid"],
        "MessageStatus": status,
        "SmsSid": message["sid"],
        "SmsStatus": status,
        "To": message["to"],
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
    return params


class Callbacks:
    def __init__(self, store: SmsStore) -> None:
        self._store = store
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    def submit(self, message: dict[str, Any]) -> None:
        """Report `message`'s progress to its StatusCallback, when reports are switched on."""
        if not self._store.report_status or not message.get("status_callback"):
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._workers = [asyncio.create_task(self._work()) for _ in range(_WORKERS)]
        self._queue.put_nowait(message)

    async def post(self, message: dict[str, Any], status: str, error_code: int | None) -> int:
        """One signed callback; the HTTP status Spoke answered (0: no answer)."""
        store = self._store
        url = message["status_callback"]
        token = store.accounts.get(message["account_sid"], "")
        params = params_for(message, status, error_code)
        headers = {"X-Twilio-Signature": sign(token, url, params)}
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        try:
            answer = (await self._client.post(url, data=params, headers=headers)).status_code
        except httpx.HTTPError:
            answer = 0
        store.callbacks.append(
            {"sid": message["sid"], "status": status, "answer": answer, "at": time.time()}
        )
        store.count(f"callbacks_{'ok' if 200 <= answer < 300 else 'refused'}")
        return answer

    async def _deliver(self, message: dict[str, Any], status: str, code: int | None) -> None:
        for attempt in range(_ATTEMPTS):
            if 200 <= await self.post(message, status, code) < 300:
                return
            await asyncio.sleep(0.1 * 2**attempt)

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            message = await self._queue.get()
            try:
                await asyncio.sleep(self._store.callback_delay_ms / 1000)
                status, code = final_status(self._store, message["to"])
                message["status"] = "sent"
                await self._deliver(message, "sent", None)
                message["status"], message["error_code"] = status, code
                await self._deliver(message, status, code)
            finally:
                self._queue.task_done()

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        self._queue = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
