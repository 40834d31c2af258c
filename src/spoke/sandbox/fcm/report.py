"""Delivery and click reports sent back to Spoke, the way an app's SDK would send them.

Messages that carry Spoke's ids (`data.spoke_notification_id`, `data.spoke_user_id`) are
reported to `POST {spoke_url}/v1/client/notifications/{id}/events` with the client key
(and `X-Identity-Token` when a secret is configured), from a background queue so sends are
never slowed down. Whether a device "clicks" is decided by a hash of its token, so a run is
repeatable.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import httpx

from spoke.sandbox.fcm.store import FcmStore, Report

_WORKERS = 8


def _share(token: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}:{token}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


class Reporter:
    def __init__(self, store: FcmStore) -> None:
        self._store = store
        self._queue: asyncio.Queue[tuple[Report, str, str, str]] | None = None
        self._workers: list[asyncio.Task[None]] = []

    def submit(self, message: dict[str, Any]) -> None:
        report = self._store.report
        data = message.get("data") or {}
        notification_id, user = data.get("spoke_notification_id"), data.get("spoke_user_id")
        token = message.get("token")
        if report is None or not notification_id or not user or not isinstance(token, str):
            return
        if _share(token, "delivered") >= report.delivered:
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._workers = [asyncio.create_task(self._work()) for _ in range(_WORKERS)]
        self._queue.put_nowait((report, notification_id, user, "delivered"))
        if _share(token, "clicked") < report.clicked:
            self._queue.put_nowait((report, notification_id, user, "clicked"))

    async def _work(self) -> None:
        assert self._queue is not None
        async with httpx.AsyncClient(timeout=10) as client:
            while True:
                report, notification_id, user, event = await self._queue.get()
                headers = {"X-Client-Key": report.client_key}
                if report.identity_secret:
                    headers["X-Identity-Token"] = hmac.new(
                        report.identity_secret.encode(), user.encode(), hashlib.sha256
                    ).hexdigest()
                base = report.spoke_url.rstrip("/")
                url = f"{base}/v1/client/notifications/{notification_id}/events"
                try:
                    response = await client.post(
                        url, json={"external_id": user, "event": event}, headers=headers
                    )
                    ok = response.status_code < 300
                except httpx.HTTPError:
                    ok = False
                self._store.count(f"reports_{'ok' if ok else 'failed'}")
                self._queue.task_done()

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        self._queue = None
