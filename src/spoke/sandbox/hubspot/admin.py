"""The sandbox's own admin API under `/_sandbox/`: portals, seeding, reset, observability,
settings (rate limits, faults, search lag), a movable clock, and persistence.

Not part of HubSpot. No authentication: the sandbox binds to loopback. Errors are
`{"error": code, "detail": message}`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from spoke.sandbox.hubspot import crm
from spoke.sandbox.hubspot.config import apply_patch, settings_to_json
from spoke.sandbox.hubspot.errors import SandboxError
from spoke.sandbox.hubspot.http import JSON, error_response, no_content
from spoke.sandbox.hubspot.schema import OBJECT_TYPES, resolve_object_type
from spoke.sandbox.hubspot.store import ALL_SCOPES, Portal, SandboxStore
from spoke.sandbox.hubspot.timefmt import iso_ms

JSONDict = dict[str, Any]
PREFIX = "/_sandbox"


class AdminError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


AdminHandler = Callable[[Request, SandboxStore], Awaitable[Response]]


def admin(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request, request.app.state.store)
        except AdminError as err:
            return JSON({"error": err.code, "detail": err.detail}, status_code=err.status)

    return endpoint


async def _body(request: Request) -> JSONDict:
    raw = await request.body()
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AdminError(400, "invalid_json", str(exc)) from exc
    if not isinstance(data, dict):
        raise AdminError(400, "invalid_json", "expected a JSON object")
    return data


def _portal(request: Request, store: SandboxStore) -> Portal:
    raw = request.path_params["portalId"]
    portal = store.portals.get(int(raw)) if str(raw).isdigit() else None
    if portal is None:
        raise AdminError(404, "portal_not_found", f"portal {raw} does not exist")
    return portal


def portal_json(store: SandboxStore, portal: Portal) -> JSONDict:
    app = store.apps.get(portal.oauth_app_id)
    token = store.tokens.get(portal.private_token)
    return {
        "portal_id": portal.id,
        "name": portal.name,
        "hub_domain": portal.domain,
        "private_app_token": portal.private_token,
        "private_app_scopes": sorted(token.scopes) if token else [],
        "oauth_app": None
        if app is None
        else {
            "app_id": app.app_id,
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "redirect_uris": app.redirect_uris,
            "developer_api_key": app.developer_api_key,
        },
        "record_counts": {
            t: sum(1 for r in tbl.records.values() if not r.archived)
            for t, tbl in portal.tables.items()
        },
    }


async def create_portal(request: Request, store: SandboxStore) -> Response:
    body = await _body(request)
    scopes = body.get("scopes")
    if scopes is not None and (
        not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
    ):
        raise AdminError(400, "invalid_scopes", "scopes must be a list of strings")
    portal_id = body.get("portal_id")
    if portal_id is not None and not isinstance(portal_id, int):
        raise AdminError(400, "invalid_portal_id", "portal_id must be an integer")
    try:
        portal = store.create_portal(
            name=body.get("name"),
            portal_id=portal_id,
            scopes=frozenset(scopes) if scopes is not None else None,
            redirect_uris=body.get("redirect_uris"),
        )
    except ValueError as exc:
        raise AdminError(409, "portal_exists", str(exc)) from exc
    if "settings" in body:
        _patch_settings(portal, body["settings"])
    return JSON(portal_json(store, portal), status_code=201)


async def list_portals(request: Request, store: SandboxStore) -> Response:
    return JSON({"results": [portal_json(store, p) for p in list(store.portals.values())]})


async def get_portal(request: Request, store: SandboxStore) -> Response:
    portal = _portal(request, store)
    with portal.lock:
        return JSON(portal_json(store, portal))


async def delete_portal(request: Request, store: SandboxStore) -> Response:
    store.delete_portal(_portal(request, store).id)
    return no_content()


async def reset_portal(request: Request, store: SandboxStore) -> Response:
    portal = _portal(request, store)
    with portal.lock:
        portal.reset_data()
    return no_content()


async def reset_all(request: Request, store: SandboxStore) -> Response:
    store.reset()
    return no_content()


_FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
_LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
_CITIES = ["Berlin", "Lisbon", "Austin", "Nairobi", "Osaka", "Toronto", "Lyon", "Pune"]
_INDUSTRIES = ["COMPUTER_SOFTWARE", "RETAIL", "HOSPITALITY", "BANKING", "EDUCATION"]
_WORDS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]


def seed_portal(portal: Portal, contacts: int, companies: int, seed: int, now: int) -> JSONDict:
    """Create fake records. The same (counts, seed) on a fresh portal gives the same data."""
    rng = random.Random(seed)
    source = ("IMPORT", None)
    company_ids = []
    ctype, otype = OBJECT_TYPES["companies"], OBJECT_TYPES["contacts"]
    for i in range(companies):
        word = rng.choice(_WORDS)
        values: crm.Values = {
            "name": f"{word} {i}",
            "domain": f"{word.lower()}{i}-{seed}.example.com",
            "industry": rng.choice(_INDUSTRIES),
            "city": rng.choice(_CITIES),
        }
        company_ids.append(crm.create(portal, ctype, values, now, source).id)
    email_index = portal.tables["contacts"].unique["email"]
    contact_ids = []
    for i in range(contacts):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first}.{last}.{i}.{seed}@example.com".lower()
        if email in email_index:
            continue
        values = {
            "email": email,
            "firstname": first,
            "lastname": last,
            "city": rng.choice(_CITIES),
            # A real, dialable range (555 numbers fail phone validation in the apps we sync).
            "phone": f"+1650253{rng.randrange(10**4):04d}",
            "lifecyclestage": rng.choice(["subscriber", "lead", "customer"]),
        }
        rec = crm.create(portal, otype, values, now, source)
        contact_ids.append(rec.id)
        if company_ids:
            target = company_ids[i % len(company_ids)]
            crm.add_association(portal, "contacts", rec.id, "companies", target, [279])
    return {
        "contacts": len(contact_ids),
        "companies": len(company_ids),
        "contact_ids": contact_ids[:1000],
        "company_ids": company_ids[:1000],
    }


async def seed(request: Request, store: SandboxStore) -> Response:
    portal = _portal(request, store)
    body = await _body(request)
    counts = {k: body.get(k, 0) for k in ("contacts", "companies")}
    seed_value = body.get("seed", 0)
    if not all(isinstance(v, int) and 0 <= v <= 1_000_000 for v in counts.values()):
        raise AdminError(400, "invalid_count", "contacts/companies must be integers 0..1000000")
    if not isinstance(seed_value, int):
        raise AdminError(400, "invalid_seed", "seed must be an integer")
    with portal.lock:
        result = seed_portal(
            portal, counts["contacts"], counts["companies"], seed_value, store.now_ms()
        )
    return JSON(result, status_code=201)


async def request_log(request: Request, store: SandboxStore) -> Response:
    portal = _portal(request, store)
    try:
        limit = int(request.query_params.get("limit", "100"))
    except ValueError as exc:
        raise AdminError(400, "invalid_limit", "limit must be an integer") from exc
    with portal.lock:
        entries = list(portal.log)[-limit:] if limit > 0 else []
    return JSON(
        {
            "results": [
                {
                    "at": iso_ms(int(ts * 1000)),
                    "method": method,
                    "path": path,
                    "endpoint": endpoint,
                    "status": status,
                    "duration_ms": round(ms, 3),
                }
                for ts, method, path, endpoint, status, ms in entries
            ]
        }
    )


async def counters(request: Request, store: SandboxStore) -> Response:
    portal = _portal(request, store)
    with portal.lock:
        return JSON(
            {
                "requests_total": sum(portal.counters.values()),
                "requests_by_endpoint": dict(portal.counters),
                "responses_by_status": dict(portal.status_counters),
                "rate_limited_served": portal.status_counters.get("429", 0),
                "daily_count": portal.daily_count,
                "custom_events": {
                    "received": portal.event_received,
                    "duplicate_uuids": portal.event_duplicate_uuids,
                    "distinct_uuids": len(portal.event_uuids),
                    "month_count": portal.event_count,
                },
                "webhooks": {
                    "delivered": portal.webhook_counters.get("delivered", 0),
                    "failed": portal.webhook_counters.get("failed", 0),
                    "given_up": portal.webhook_counters.get("given_up", 0),
                    "events_delivered": portal.webhook_counters.get("events_delivered", 0),
                },
            }
        )


def _patch_settings(portal: Portal, patch: object) -> None:
    if not isinstance(patch, dict):
        raise AdminError(400, "invalid_settings", "settings must be an object")
    with portal.lock:
        try:
            apply_patch(portal.settings, patch)
        except ValueError as exc:
            raise AdminError(400, "invalid_settings", str(exc)) from exc
        if "faults" in patch:
            portal.rng = random.Random(portal.settings.faults.seed)
        if "rate_limits" in patch:
            portal.windows.clear()
            portal.search_window.clear()
        if "search_lag_ms" in patch and portal.settings.search_lag_ms == 0:
            for tbl in portal.tables.values():
                tbl.rebuild_index()


async def get_settings(request: Request, store: SandboxStore) -> Response:
    portal = _portal(request, store)
    return JSON(settings_to_json(portal.settings))


async def patch_settings(request: Request, store: SandboxStore) -> Response:
    portal = _portal(request, store)
    _patch_settings(portal, await _body(request))
    return JSON(settings_to_json(portal.settings))


def _section(name: str) -> tuple[AdminHandler, AdminHandler]:
    async def get(request: Request, store: SandboxStore) -> Response:
        return JSON(settings_to_json(getattr(_portal(request, store).settings, name)))

    async def put(request: Request, store: SandboxStore) -> Response:
        portal = _portal(request, store)
        _patch_settings(portal, {name: await _body(request)})
        return JSON(settings_to_json(getattr(portal.settings, name)))

    return get, put


get_faults, put_faults = _section("faults")
get_rate_limits, put_rate_limits = _section("rate_limits")


async def mint_token(request: Request, store: SandboxStore) -> Response:
    """Issue an OAuth access token for the portal's app without the browser dance."""
    portal = _portal(request, store)
    body = await _body(request)
    scopes = body.get("scopes", list(ALL_SCOPES))
    expires_in = body.get("expires_in")
    if not isinstance(scopes, list) or (expires_in is not None and not isinstance(expires_in, int)):
        raise AdminError(400, "invalid_token_request", "scopes: list, expires_in: integer")
    app = store.apps[portal.oauth_app_id]
    tok = store.issue_oauth_tokens(app, portal.id, frozenset(scopes), ttl_s=expires_in)
    assert tok.expires_ms is not None
    return JSON(
        {
            "access_token": tok.token,
            "refresh_token": tok.refresh_token,
            "expires_in": (tok.expires_ms - store.now_ms()) // 1000,
            "scopes": sorted(tok.scopes),
        },
        status_code=201,
    )


async def timeline(request: Request, store: SandboxStore) -> Response:
    """A contact's activity: associated meetings and notes, and custom events, newest first."""
    portal = _portal(request, store)
    contact_id = request.path_params["contactId"]
    with portal.lock:
        contact = crm.find(portal, OBJECT_TYPES["contacts"], contact_id)
        if contact is None:
            raise AdminError(404, "contact_not_found", f"contact {contact_id} does not exist")
        items: list[JSONDict] = []
        for kind in ("meetings", "notes"):
            otype = OBJECT_TYPES[kind]
            for rid, _ in crm.associations_of(portal, "contacts", contact.id, kind):
                rec = portal.tables[kind].records[rid]
                items.append(
                    {
                        "type": otype.singular.upper(),
                        "id": rid,
                        "timestamp": rec.props.get("hs_timestamp") or rec.props[otype.created_prop],
                        "properties": dict(rec.props),
                    }
                )
        items.extend(portal.timeline.get(contact.id, []))
    items.sort(key=lambda item: str(item["timestamp"]), reverse=True)
    return JSON({"contact_id": contact.id, "results": items})


async def restore_object(request: Request, store: SandboxStore) -> Response:
    """Restore an archived record from the recycle bin, as a user would in HubSpot's UI.

    Body (optional): `change_source` (default `CRM_UI`) and `source_id` (default `userId:1`), the
    `changeSource` and `sourceId` of the `*.restore` webhook event. Problems with the record itself
    answer in HubSpot's error shape, as the API would (404, 400, or 409 for a taken email).
    """
    portal = _portal(request, store)
    body = await _body(request)
    change_source = body.get("change_source", "CRM_UI")
    source_id = body.get("source_id", "userId:1")
    if not isinstance(change_source, str) or not change_source:
        raise AdminError(400, "invalid_source", "change_source must be a non-empty string")
    if source_id is not None and not isinstance(source_id, str):
        raise AdminError(400, "invalid_source", "source_id must be a string or null")
    segment = request.path_params["objectType"]
    otype = resolve_object_type(segment)
    try:
        if otype is None:
            raise SandboxError(
                400, f"Unable to infer object type from: {segment}", "VALIDATION_ERROR"
            )
        with portal.lock:
            rec = crm.restore(
                portal,
                otype,
                request.path_params["objectId"],
                store.now_ms(),
                (change_source, source_id),
            )
            return JSON(crm.to_json(portal, otype, rec))
    except SandboxError as err:
        return error_response(err)


async def clock(request: Request, store: SandboxStore) -> Response:
    if request.method == "POST":
        body = await _body(request)
        advance = body.get("advance_seconds", 0)
        if not isinstance(advance, int | float) or advance < 0:
            raise AdminError(400, "invalid_clock", "advance_seconds must be a number >= 0")
        store.advance_clock(float(advance))
    return JSON({"now": iso_ms(store.now_ms()), "offset_ms": store.clock_offset_ms})


async def save(request: Request, store: SandboxStore) -> Response:
    try:
        path = store.save()
    except ValueError as exc:
        raise AdminError(409, "no_state_file", str(exc)) from exc
    return JSON({"saved_to": str(path)})


async def webhook_log(request: Request, store: SandboxStore) -> Response:
    """Recent webhook delivery attempts (all apps), oldest first."""
    hub = request.app.state.webhooks
    return JSON({"results": list(hub.log), "pending": hub.pending()})


async def health(request: Request, store: SandboxStore) -> Response:
    return JSON({"status": "ok", "portals": len(store.portals)})


P = PREFIX + "/portals/{portalId}"
routes: list[Route] = [
    Route(PREFIX + "/health", admin(health), methods=["GET"]),
    Route(PREFIX + "/reset", admin(reset_all), methods=["POST"]),
    Route(PREFIX + "/save", admin(save), methods=["POST"]),
    Route(PREFIX + "/webhooks/deliveries", admin(webhook_log), methods=["GET"]),
    Route(PREFIX + "/clock", admin(clock), methods=["GET", "POST"]),
    Route(PREFIX + "/portals", admin(create_portal), methods=["POST"]),
    Route(PREFIX + "/portals", admin(list_portals), methods=["GET"]),
    Route(P, admin(get_portal), methods=["GET"]),
    Route(P, admin(delete_portal), methods=["DELETE"]),
    Route(P + "/reset", admin(reset_portal), methods=["POST"]),
    Route(P + "/seed", admin(seed), methods=["POST"]),
    Route(P + "/requests", admin(request_log), methods=["GET"]),
    Route(P + "/counters", admin(counters), methods=["GET"]),
    Route(P + "/settings", admin(get_settings), methods=["GET"]),
    Route(P + "/settings", admin(patch_settings), methods=["PATCH"]),
    Route(P + "/faults", admin(get_faults), methods=["GET"]),
    Route(P + "/faults", admin(put_faults), methods=["PUT"]),
    Route(P + "/rate-limits", admin(get_rate_limits), methods=["GET"]),
    Route(P + "/rate-limits", admin(put_rate_limits), methods=["PUT"]),
    Route(P + "/tokens", admin(mint_token), methods=["POST"]),
    Route(P + "/contacts/{contactId}/timeline", admin(timeline), methods=["GET"]),
    Route(P + "/objects/{objectType}/{objectId}/restore", admin(restore_object), methods=["POST"]),
]
