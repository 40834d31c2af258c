"""Product events over HTTP: ingest from servers and apps, read back, known events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from pydantic import WithJsonSchema

from spoke.core.errors import InvalidInput, responses
from spoke.core.http import TransactionalRoute
from spoke.core.pagination import Page
from spoke.deps import AppServices, Db
from spoke.events import schemas, service
from spoke.events.schemas import EventIn
from spoke.users import activity
from spoke.users.validation import normalise_email
from spoke.workspaces.auth import (
    ClientIdempotent,
    ClientWorkspace,
    Idempotent,
    ServerCaller,
    verify_identity,
)

router = APIRouter(prefix="/v1/events", tags=["events"], route_class=TransactionalRoute)
client_router = APIRouter(prefix="/v1/client", tags=["client"], route_class=TransactionalRoute)

MAX_EVENTS = 1000
_EVENT_SCHEMA = EventIn.model_json_schema()
_BATCH_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["events"],
    "properties": {
        "events": {"type": "array", "minItems": 1, "maxItems": MAX_EVENTS, "items": _EVENT_SCHEMA}
    },
}
EventsBody = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "oneOf": [_BATCH_SCHEMA, _EVENT_SCHEMA],
            "description": 'One event, or `{"events": [...]}` with up to 1,000.',
        }
    ),
]


def _events_of(body: dict[str, Any]) -> list[Any]:
    if "events" not in body:
        return [body]
    events = body["events"]
    if len(body) != 1 or not isinstance(events, list) or not 1 <= len(events) <= MAX_EVENTS:
        raise InvalidInput(
            f'Send one event, or {{"events": [...]}} with 1 to {MAX_EVENTS}.',
            errors=[
                {
                    "field": "body.events",
                    "message": f"1 to {MAX_EVENTS} events",
                    "type": "batch_size",
                }
            ],
        )
    return events


def _result(ingested: service.Ingested, errors: list[schemas.EventResult]) -> dict[str, Any]:
    # Only the events that were not stored are listed: a 1,000-event batch that went in
    # whole answers with three counts, not a thousand "accepted" lines.
    return {
        "accepted": ingested.accepted,
        "duplicates": len(ingested.duplicates),
        "failed": len(errors),
        "results": sorted([*ingested.duplicates, *errors], key=lambda r: r.index),
    }


@router.post(
    "", response_model=schemas.IngestResult, responses=responses(), dependencies=[Idempotent]
)
def ingest(body: EventsBody, caller: ServerCaller, session: Db) -> object:
    """Record one event or up to 1,000. Each is checked on its own: bad ones are reported
    per item and the rest are kept. An event whose `id` was seen before is a duplicate."""
    valid, errors = service.parse(_events_of(body))
    return _result(service.ingest(session, caller.workspace_id, valid), errors)


IdentityToken = Annotated[
    str | None,
    Header(
        alias="X-Identity-Token",
        max_length=128,
        description="Hex HMAC-SHA256 of the user id with the workspace's identity secret; "
        "required when identity verification is on (then every event must be that user's).",
    ),
]


@client_router.post(
    "/events",
    response_model=schemas.IngestResult,
    responses=responses(),
    dependencies=[ClientIdempotent],
)
def client_ingest(
    body: EventsBody,
    workspace: ClientWorkspace,
    session: Db,
    services: AppServices,
    identity_token: IdentityToken = None,
) -> object:
    """From the app: record events of the signed-in user."""
    valid, errors = service.parse(_events_of(body))
    if workspace.identity_verification:
        users = {event.user_id for _, event in valid}
        if len(users) != 1 or None in users:
            raise InvalidInput(
                "With identity verification on, a batch carries the events of "
                "one user, identified by `user_id`."
            )
        verify_identity(services, workspace, next(iter(users)) or "", identity_token)
    activity.touch(session, workspace.id, [event.user_id for _, event in valid])
    return _result(service.ingest(session, workspace.id, valid), errors)


@router.get("", response_model=Page[schemas.Event], responses=responses())
def list_events(
    caller: ServerCaller,
    session: Db,
    user_id: Annotated[str | None, Query(max_length=255)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    type: Annotated[schemas.EventType | None, Query()] = None,
    since: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> object:
    """Stored events in order of arrival; filter by user, name, type and time."""
    if since is not None and since.tzinfo is None:
        raise InvalidInput(
            "`since` needs a time zone.",
            errors=[{"field": "query.since", "message": "needs a time zone", "type": "timezone"}],
        )
    if email is not None:
        try:
            email = normalise_email(email)
        except ValueError as exc:
            raise InvalidInput(
                str(exc),
                errors=[{"field": "query.email", "message": str(exc), "type": "invalid_email"}],
            ) from None
    flt = service.EventFilter(user_id=user_id, email=email, name=name, type=type, since=since)
    rows, next_cursor = service.list_events(
        session, caller.workspace_id, flt, limit=limit, cursor=cursor
    )
    return {"data": [schemas.Event.model_validate(r) for r in rows], "next_cursor": next_cursor}


@router.get("/known", response_model=list[schemas.KnownEvent], responses=responses())
def known_events(caller: ServerCaller, session: Db) -> object:
    """Every event name received, with its volume and first/last time seen."""
    return service.known_events(session, caller.workspace_id)


@router.patch(
    "/known/{type}/{name}",
    response_model=schemas.KnownEvent,
    responses=responses(service.KnownEventNotFound),
    dependencies=[Idempotent],
)
def update_known_event(
    type: schemas.EventType,
    name: Annotated[str, Path(min_length=1, max_length=200)],
    body: schemas.KnownEventUpdate,
    caller: ServerCaller,
    session: Db,
) -> object:
    """Mark an event as core (or not): core events are exported to HubSpot by default."""
    return service.set_core(session, caller.workspace_id, type, name, body.core)
