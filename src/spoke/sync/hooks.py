"""`POST /hooks/hubspot`: HubSpot's webhook deliveries.

The signature (v3 with its timestamp window, or v1/v2) is checked against the OAuth app's
client secret and the webhook secrets of private-app connections to that portal. A valid
delivery is stored as one batch per connected workspace of the portal and answered at once;
`sync.run` applies it. Anything unsigned or mis-signed is a 401 problem.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool

from spoke.connections.models import HubSpotConnection
from spoke.connections.service import connections_for_portal
from spoke.core.db import session_scope
from spoke.core.errors import AppError, Unauthenticated, responses
from spoke.deps import AppServices
from spoke.hubspot import InvalidSignature, verify_request
from spoke.sync.models import HubSpotWebhookBatch
from spoke.sync.tasks import RUN

log = structlog.get_logger("spoke.sync.hooks")
router = APIRouter(tags=["hooks"])
MAX_EVENTS = 1000


class InvalidWebhookSignature(Unauthenticated):
    code = "invalid_webhook_signature"
    title = "Invalid webhook signature"


class InvalidWebhookBody(AppError):
    code = "invalid_webhook_body"
    status_code = 400
    title = "Invalid webhook body"


def _public_url(request: Request, services: AppServices) -> str:
    base = services.settings.http.public_url
    if base:
        query = f"?{request.url.query}" if request.url.query else ""
        return base.rstrip("/") + request.url.path + query
    return str(request.url)


def _portal_ids(events: Any) -> set[int]:
    found: set[int] = set()
    if isinstance(events, list):
        for event in events:
            if isinstance(event, dict) and isinstance(event.get("portalId"), int):
                found.add(event["portalId"])
    return found


@router.post(
    "/hooks/hubspot",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(InvalidWebhookSignature, InvalidWebhookBody),
    response_class=Response,
)
async def hubspot_webhook(request: Request, services: AppServices) -> Response:
    """Receive a signed HubSpot webhook delivery (HubSpot calls this, not you)."""
    body = await request.body()
    headers = dict(request.headers)
    if not any(k.lower().startswith("x-hubspot-signature") for k in headers):
        raise InvalidWebhookSignature("The request carries no HubSpot signature.")
    try:
        events = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        events = None
    portals = _portal_ids(events)
    uri = _public_url(request, services)
    secrets: list[str] = []
    secret = services.settings.hubspot.client_secret
    if secret is not None:
        secrets.append(secret.get_secret_value())
    sessions = request.app.state.sessions

    def lookup() -> dict[int, list[HubSpotConnection]]:
        found: dict[int, list[HubSpotConnection]] = {}
        with session_scope(sessions) as session:
            for portal_id in portals:
                found[portal_id] = connections_for_portal(session, portal_id)
        return found

    by_portal = await run_in_threadpool(lookup)
    for conns in by_portal.values():
        for conn in conns:
            if conn.webhook_secret:
                secrets.append(services.encryptor.decrypt(conn.webhook_secret))
    max_age = services.settings.hubspot.webhook_max_age_seconds
    verified = False
    for candidate in secrets:
        try:
            verify_request(candidate, request.method, uri, body, headers, max_age=max_age)
        except InvalidSignature:
            continue
        verified = True
        break
    if not verified:
        raise InvalidWebhookSignature("The HubSpot signature does not verify.")
    if not isinstance(events, list) or len(events) > MAX_EVENTS:
        raise InvalidWebhookBody("Expected a JSON array of at most 1000 webhook events.")
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if isinstance(event, dict) and isinstance(event.get("portalId"), int):
            grouped[event["portalId"]].append(event)
    started: list[str] = []

    def store() -> None:
        with session_scope(sessions) as session:
            for portal_id, portal_events in grouped.items():
                for conn in by_portal.get(portal_id, []):
                    session.add(
                        HubSpotWebhookBatch(
                            workspace_id=conn.workspace_id,
                            portal_id=portal_id,
                            events=portal_events,
                        )
                    )
                    started.append(conn.workspace_id)

    await run_in_threadpool(store)
    for workspace_id in dict.fromkeys(started):
        try:
            services.jobs.enqueue(RUN, workspace_id=workspace_id)
        except Exception:  # stored; the tick will run it
            log.warning("sync.enqueue_failed", workspace_id=workspace_id, exc_info=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
