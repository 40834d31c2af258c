"""Webhooks v3 management API (contract §5): app settings and subscriptions, authenticated with
the app's developer API key (`?hapikey=`). Deliveries are `webhooks.WebhookHub`'s job."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot.errors import correlation_id
from spoke.sandbox.hubspot.http import JSON
from spoke.sandbox.hubspot.store import OAuthApp, SandboxStore
from spoke.sandbox.hubspot.timefmt import iso_ms
from spoke.sandbox.hubspot.webhooks import (
    EVENT_TYPES,
    MAX_SUBSCRIPTIONS,
    UNSUBSCRIBABLE,
    AppWebhooks,
    Subscription,
    WebhookHub,
)

JSONDict = dict[str, Any]


def _error(status: int, message: str, category: str) -> Response:
    return JSON(
        {
            "status": "error",
            "message": message,
            "correlationId": correlation_id(),
            "category": category,
            "requestId": correlation_id(),
        },
        status_code=status,
    )


def _auth(request: Request) -> tuple[WebhookHub, OAuthApp] | Response:
    store: SandboxStore = request.app.state.store
    hub: WebhookHub = request.app.state.webhooks
    try:
        app = store.apps.get(int(request.path_params["appId"]))
    except ValueError:
        app = None
    key = request.query_params.get("hapikey")
    if app is None or not key or key != app.developer_api_key:
        return _error(
            401,
            "The developer API key used to make this call is invalid for this app.",
            "INVALID_AUTHENTICATION",
        )
    return hub, app


async def _json(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return None


def _settings_json(hooks: AppWebhooks) -> JSONDict:
    return {
        "targetUrl": hooks.target_url,
        "throttling": {"maxConcurrentRequests": hooks.max_concurrent, "period": "SECONDLY"},
        "createdAt": iso_ms(hooks.created_ms),
        "updatedAt": iso_ms(hooks.updated_ms),
        "signatureVersion": hooks.signature_version,
    }


async def settings_endpoint(request: Request) -> Response:
    auth = _auth(request)
    if isinstance(auth, Response):
        return auth
    hub, app = auth
    hooks = hub.app(app.app_id)
    now = hub.store.now_ms()
    if request.method == "GET":
        if not hooks.target_url:
            return _error(404, "No webhook settings for this app", "OBJECT_NOT_FOUND")
        return JSON(_settings_json(hooks))
    if request.method == "DELETE":
        hooks.target_url = None
        hub.refresh_listening()
        return Response(status_code=204)
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("targetUrl"), str):
        return _error(400, "targetUrl is required", "VALIDATION_ERROR")
    throttling = body.get("throttling") or {}
    concurrency = throttling.get("maxConcurrentRequests", 10)
    if not isinstance(concurrency, int) or concurrency <= 5:
        return _error(400, "maxConcurrentRequests must be greater than 5", "VALIDATION_ERROR")
    version = body.get("signatureVersion", hooks.signature_version)
    if version not in ("v1", "v2"):
        return _error(400, "signatureVersion must be v1 or v2", "VALIDATION_ERROR")
    with hub.lock:
        if not hooks.created_ms:
            hooks.created_ms = now
        hooks.updated_ms = now
        hooks.target_url = body["targetUrl"]
        hooks.max_concurrent = concurrency
        hooks.signature_version = version
    hub.refresh_listening()
    return JSON(_settings_json(hooks))


async def subscriptions_endpoint(request: Request) -> Response:
    auth = _auth(request)
    if isinstance(auth, Response):
        return auth
    hub, app = auth
    hooks = hub.app(app.app_id)
    if request.method == "GET":
        with hub.lock:
            subs = [s.to_json() for s in hooks.subscriptions.values()]
        return JSON({"results": subs})
    body = await _json(request)
    if not isinstance(body, dict):
        return _error(400, "Invalid input JSON", "VALIDATION_ERROR")
    event_type, prop = body.get("eventType"), body.get("propertyName")
    if event_type not in EVENT_TYPES:
        return _error(400, f"Unsupported eventType {event_type!r}", "VALIDATION_ERROR")
    if event_type.endswith(".propertyChange") and not prop:
        return _error(400, "propertyName is required for propertyChange", "VALIDATION_ERROR")
    if prop in UNSUBSCRIBABLE:
        return _error(400, f"{prop} cannot be subscribed to", "VALIDATION_ERROR")
    with hub.lock:
        if len(hooks.subscriptions) >= MAX_SUBSCRIPTIONS:
            return _error(
                400,
                "Couldn't create another subscription. You've reached the maximum number "
                f"allowed per application ({MAX_SUBSCRIPTIONS}).",
                "VALIDATION_ERROR",
            )
        now = hub.store.now_ms()
        sub = Subscription(
            next(hub.subscription_ids),
            event_type,
            prop or None,
            bool(body.get("active", False)),
            now,
            now,
        )
        hooks.subscriptions[sub.id] = sub
    hub.refresh_listening()
    return JSON(sub.to_json(), status_code=201)


async def subscription_endpoint(request: Request) -> Response:
    auth = _auth(request)
    if isinstance(auth, Response):
        return auth
    hub, app = auth
    hooks = hub.app(app.app_id)
    try:
        sub_id = int(request.path_params["subscriptionId"])
    except ValueError:
        sub_id = -1
    sub = hooks.subscriptions.get(sub_id)
    if sub is None:
        return _error(404, f"Subscription {sub_id} not found", "OBJECT_NOT_FOUND")
    if request.method == "GET":
        return JSON(sub.to_json())
    if request.method == "DELETE":
        with hub.lock:
            del hooks.subscriptions[sub_id]
        hub.refresh_listening()
        return Response(status_code=204)
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
        return _error(400, "active (boolean) is required", "VALIDATION_ERROR")
    with hub.lock:
        sub.active = body["active"]
        sub.updated_ms = hub.store.now_ms()
    hub.refresh_listening()
    return JSON(sub.to_json())


async def batch_update_endpoint(request: Request) -> Response:
    auth = _auth(request)
    if isinstance(auth, Response):
        return auth
    hub, app = auth
    hooks = hub.app(app.app_id)
    body = await _json(request)
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list):
        return _error(400, "inputs must be an array", "VALIDATION_ERROR")
    results = []
    with hub.lock:
        for item in inputs:
            sub = hooks.subscriptions.get(int(item.get("id", -1)))
            if sub is not None and isinstance(item.get("active"), bool):
                sub.active = item["active"]
                sub.updated_ms = hub.store.now_ms()
                results.append(sub.to_json())
    hub.refresh_listening()
    stamp = iso_ms(hub.store.now_ms())
    return JSON(
        {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
    )


W = "/webhooks/v3/{appId}"
routes: list[Route] = [
    Route(W + "/settings", settings_endpoint, methods=["GET", "PUT", "DELETE"]),
    Route(W + "/subscriptions", subscriptions_endpoint, methods=["GET", "POST"]),
    Route(W + "/subscriptions/batch/update", batch_update_endpoint, methods=["POST"]),
    Route(
        W + "/subscriptions/{subscriptionId}",
        subscription_endpoint,
        methods=["GET", "PATCH", "DELETE"],
    ),
]
