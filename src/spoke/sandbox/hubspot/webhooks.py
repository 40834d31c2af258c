"""Webhook deliveries (contract §5): signed, batched and retried. The management API that creates
subscriptions is in `webhook_api`.

CRM writes in a portal where some app has an active subscription append *changes* to
`portal.changes`. The `WebhookHub` worker thread turns them into events for every app installed in
that portal (the portal's own app, and any app holding a refresh token for it) whose
subscriptions match, and POSTs them to the app's `targetUrl` in batches of at most 100, signed
with `X-HubSpot-Signature-v3` plus a v1 or v2 `X-HubSpot-Signature`. Failed batches (connection
error, more than 5 s, any 4xx/5xx) are retried on HubSpot's 24-hour schedule, compressed by
`SandboxConfig.webhook_time_scale`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from spoke.sandbox.hubspot.store import OAuthApp, Portal, SandboxStore
from spoke.sandbox.hubspot.timefmt import iso_ms

JSONDict = dict[str, Any]
MAX_SUBSCRIPTIONS = 1000
MAX_BATCH = 100
DELIVERY_TIMEOUT_S = 5.0
# "Up to 10 times ... spread out over the next 24 hours" (contract §5); ~23.9 h in total.
RETRY_DELAYS_S = (60, 300, 900, 1800, 3600, 7200, 14400, 21600, 21600, 14400)
OBJECTS = {"contacts": "contact", "companies": "company"}
EVENT_TYPES = frozenset(
    f"{obj}.{kind}"
    for obj in OBJECTS.values()
    for kind in (
        "creation",
        "deletion",
        "merge",
        "associationChange",
        "restore",
        "privacyDeletion",
        "propertyChange",
    )
)
UNSUBSCRIBABLE = frozenset({"hs_lastmodifieddate", "num_unique_conversion_events"})


@dataclass(slots=True)
class Subscription:
    id: int
    event_type: str
    property_name: str | None
    active: bool
    created_ms: int
    updated_ms: int

    def to_json(self) -> JSONDict:
        out: JSONDict = {
            "id": str(self.id),
            "eventType": self.event_type,
            "active": self.active,
            "createdAt": iso_ms(self.created_ms),
            "updatedAt": iso_ms(self.updated_ms),
        }
        if self.property_name:
            out["propertyName"] = self.property_name
        return out


@dataclass(slots=True)
class AppWebhooks:
    target_url: str | None = None
    max_concurrent: int = 10
    signature_version: str = "v1"  # sandbox extension: v1 or v2 next to v3
    created_ms: int = 0
    updated_ms: int = 0
    subscriptions: dict[int, Subscription] = field(default_factory=dict)


@dataclass(slots=True)
class Delivery:
    app_id: int
    portal_id: int
    events: list[JSONDict]
    attempt: int = 0
    due: float = 0.0


class WebhookHub:
    """Subscriptions per app, and the worker that delivers events."""

    def __init__(self, store: SandboxStore) -> None:
        self.store = store
        self.lock = threading.RLock()
        self.apps: dict[int, AppWebhooks] = {}
        self.queue: list[Delivery] = []
        self.log: deque[JSONDict] = deque(maxlen=2000)
        self.event_ids = itertools.count(1)
        self.subscription_ids = itertools.count(1)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()

    # -- subscriptions ---------------------------------------------------------------------------

    def app(self, app_id: int) -> AppWebhooks:
        with self.lock:
            return self.apps.setdefault(app_id, AppWebhooks())

    def refresh_listening(self) -> None:
        """Tell portals whether CRM writes need to record changes (any active subscription)."""
        with self.lock:
            active = any(
                s.active
                for a in self.apps.values()
                if a.target_url
                for s in a.subscriptions.values()
            )
        self.store.listening = active
        for portal in list(self.store.portals.values()):
            portal.listening = active

    # -- worker ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        with httpx.Client(timeout=DELIVERY_TIMEOUT_S) as client:
            while not self._stop.is_set():
                self.collect()
                self.deliver_due(client)
                self._wake.wait(0.02)
                self._wake.clear()

    def collect(self) -> None:
        """Turn pending portal changes into queued deliveries."""
        for portal in list(self.store.portals.values()):
            if not portal.changes:
                continue
            with portal.lock:
                changes, portal.changes = portal.changes, []
            self._fan_out(portal, changes)

    def _installed_apps(self, portal: Portal) -> list[OAuthApp]:
        ids = {portal.oauth_app_id}
        ids.update(
            r.app_id for r in list(self.store.refresh_tokens.values()) if r.portal_id == portal.id
        )
        return [self.store.apps[i] for i in sorted(ids) if i in self.store.apps]

    def _fan_out(self, portal: Portal, changes: list[JSONDict]) -> None:
        faults = portal.settings.faults
        now = time.monotonic()
        for app in self._installed_apps(portal):
            hooks = self.apps.get(app.app_id)
            if hooks is None or not hooks.target_url:
                continue
            with self.lock:
                subs = [s for s in hooks.subscriptions.values() if s.active]
            events: list[JSONDict] = []
            for change in changes:
                events.extend(self._events_for(portal, app, subs, change))
            if faults.webhook_duplicate_rate:
                events = [
                    e
                    for e in events
                    for _ in range(2 if self._rng.random() < faults.webhook_duplicate_rate else 1)
                ]
            if faults.webhook_reorder:
                self._rng.shuffle(events)
            delay = faults.webhook_delay_ms / 1000
            with self.lock:
                for i in range(0, len(events), MAX_BATCH):
                    self.queue.append(
                        Delivery(app.app_id, portal.id, events[i : i + MAX_BATCH], due=now + delay)
                    )

    def _events_for(
        self, portal: Portal, app: OAuthApp, subs: list[Subscription], change: JSONDict
    ) -> list[JSONDict]:
        obj = OBJECTS.get(change["type"])
        if obj is None:
            return []
        stype, sid = change["source"]
        base = {
            "portalId": portal.id,
            "appId": app.app_id,
            "occurredAt": change["at"] or self.store.now_ms(),
            "attemptNumber": 0,
            "objectId": int(change["id"]),
            "changeSource": stype if stype != "INTEGRATION" else "INTEGRATION",
        }
        if sid is not None:
            base["sourceId"] = sid
        kind = change["kind"]
        out: list[JSONDict] = []
        for sub in subs:
            prefix, _, sub_kind = sub.event_type.partition(".")
            if prefix != obj:
                continue
            if sub_kind == "propertyChange" and kind in ("propertyChange", "creation"):
                if sub.property_name in change["changed"]:
                    self._add(
                        out,
                        sub,
                        {
                            **base,
                            "subscriptionType": sub.event_type,
                            "propertyName": sub.property_name,
                            "propertyValue": change["changed"][sub.property_name],
                        },
                    )
            elif sub_kind == kind == "creation":
                self._add(
                    out, sub, {**base, "subscriptionType": sub.event_type, "changeFlag": "NEW"}
                )
            elif sub_kind == kind and kind in ("deletion", "privacyDeletion", "restore"):
                self._add(out, sub, {**base, "subscriptionType": sub.event_type})
            elif sub_kind == kind == "merge":
                self._add(
                    out,
                    sub,
                    {
                        **base,
                        "subscriptionType": sub.event_type,
                        "primaryObjectId": int(change["id"]),
                        "mergedObjectIds": [int(i) for i in change["merged"]],
                        "newObjectId": int(change["id"]),
                        "numberOfPropertiesMoved": 0,
                    },
                )
            elif sub_kind == kind == "associationChange":
                to_obj = OBJECTS.get(change["toType"], change["toType"].rstrip("s"))
                self._add(
                    out,
                    sub,
                    {
                        **base,
                        "subscriptionType": sub.event_type,
                        "associationType": f"{obj.upper()}_TO_{to_obj.upper()}",
                        "fromObjectId": int(change["id"]),
                        "toObjectId": int(change["toId"]),
                        "associationRemoved": change["removed"],
                        "isPrimaryAssociation": change["typeId"] in (1, 2),
                    },
                )
        return out

    def _add(self, out: list[JSONDict], sub: Subscription, event: JSONDict) -> None:
        event["eventId"] = next(self.event_ids)
        event["subscriptionId"] = sub.id
        out.append(event)

    def deliver_due(self, client: httpx.Client) -> None:
        now = time.monotonic()
        with self.lock:
            due = [d for d in self.queue if d.due <= now]
            self.queue = [d for d in self.queue if d.due > now]
        for delivery in due:
            self._attempt(client, delivery)

    def pending(self) -> int:
        with self.lock:
            return len(self.queue)

    def _attempt(self, client: httpx.Client, delivery: Delivery) -> None:
        app = self.store.apps.get(delivery.app_id)
        hooks = self.apps.get(delivery.app_id)
        portal = self.store.portals.get(delivery.portal_id)
        if app is None or hooks is None or not hooks.target_url or portal is None:
            return
        events = [{**e, "attemptNumber": delivery.attempt} for e in delivery.events]
        body = orjson.dumps(events)
        headers = sign(
            app.client_secret,
            "POST",
            hooks.target_url,
            body,
            hooks.signature_version,
            int(time.time() * 1000),  # real time: receivers compare it with their clock
        )
        headers["Content-Type"] = "application/json"
        status: int | None = None
        error: str | None = None
        try:
            resp = client.post(hooks.target_url, content=body, headers=headers)
            status = resp.status_code
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        ok = status is not None and 200 <= status < 300
        with portal.lock:
            portal.webhook_counters["delivered" if ok else "failed"] += 1
            if ok:
                portal.webhook_counters["events_delivered"] += len(events)
        self.log.append(
            {
                "at": iso_ms(self.store.now_ms()),
                "app_id": app.app_id,
                "portal_id": portal.id,
                "url": hooks.target_url,
                "attempt": delivery.attempt,
                "events": len(events),
                "status": status,
                "error": error,
            }
        )
        if ok:
            return
        if delivery.attempt >= len(RETRY_DELAYS_S):
            with portal.lock:
                portal.webhook_counters["given_up"] += 1
            return
        base = RETRY_DELAYS_S[delivery.attempt] * self.store.config.webhook_time_scale
        delay = base * (0.8 + 0.4 * self._rng.random())  # randomised per notification
        delivery.attempt += 1
        delivery.due = time.monotonic() + delay
        with self.lock:
            self.queue.append(delivery)


# v3 signs the URI with only these escapes decoded (HubSpot's documented list), not a
# full percent-decode: "%20" stays "%20" in the signed string.
_V3_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_ESCAPE = re.compile("|".join(_V3_DECODED), re.IGNORECASE)


def _v3_uri(url: str) -> str:
    return _V3_ESCAPE.sub(lambda m: _V3_DECODED[m.group(0).upper()], url)


def sign(
    secret: str, method: str, url: str, body: bytes, version: str, timestamp_ms: int
) -> dict[str, str]:
    """HubSpot's request signatures: always v3, plus v1 or v2 in `X-HubSpot-Signature`."""
    text = body.decode()
    v3_message = f"{method}{_v3_uri(url)}{text}{timestamp_ms}".encode()
    v3 = base64.b64encode(hmac.new(secret.encode(), v3_message, hashlib.sha256).digest())
    if version == "v2":
        legacy = hashlib.sha256(f"{secret}{method}{url}{text}".encode()).hexdigest()
    else:
        legacy = hashlib.sha256(f"{secret}{text}".encode()).hexdigest()
    return {
        "X-HubSpot-Signature-v3": v3.decode(),
        "X-HubSpot-Request-Timestamp": str(timestamp_ms),
        "X-HubSpot-Signature": legacy,
        "X-HubSpot-Signature-Version": "v2" if version == "v2" else "v1",
    }
