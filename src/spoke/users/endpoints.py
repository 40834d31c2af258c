"""App users over HTTP: `/v1/users`, the change feed, and the client routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from pydantic import ValidationError, WithJsonSchema

from spoke.core.errors import InvalidInput, responses, validation_errors
from spoke.core.http import TransactionalRoute
from spoke.core.pagination import Page
from spoke.deps import AppServices, Db
from spoke.users import activity, lists, schemas, service
from spoke.users import changes as feed
from spoke.users.changes import Origin, request_origin
from spoke.users.schemas import EXTERNAL_ID_PATTERN, UserBatchItem, UserFields
from spoke.users.service import Outcome, WriteItem
from spoke.users.validation import normalise_email
from spoke.workspaces.auth import (
    ClientIdempotent,
    ClientWorkspace,
    Idempotent,
    ServerCaller,
    verify_identity,
)

router = APIRouter(prefix="/v1", tags=["users"], route_class=TransactionalRoute)
client_router = APIRouter(prefix="/v1/client", tags=["client"], route_class=TransactionalRoute)

MAX_BIGINT = 2**63 - 1  # the database column limit; larger ids can only be invalid

ExternalIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        pattern=EXTERNAL_ID_PATTERN,
        description="Your id for the user.",
    ),
]


def _one(session: Db, workspace_id: str, external_id: str) -> dict[str, Any]:
    return service.render(session, [service.get_user(session, workspace_id, external_id)])[0]


def _raise_item_error(outcome: Outcome) -> None:
    if outcome.error is None:
        return
    if outcome.error.code == service.UserDeleted.code:
        raise service.UserDeleted(outcome.error.detail)
    raise InvalidInput(
        outcome.error.detail,
        errors=[
            {"field": f"body.{e['field']}", "message": e["message"], "type": e["type"]}
            for e in outcome.error.errors or []
        ],
    )


# -- users ------------------------------------------------------------------------------


@router.put(
    "/users/{external_id}",
    response_model=schemas.User,
    responses={
        201: {"model": schemas.User, "description": "Created"},
        **responses(service.UserDeleted),
    },
    dependencies=[Idempotent],
)
def put_user(
    external_id: ExternalIdPath,
    body: UserFields,
    caller: ServerCaller,
    session: Db,
    request: Request,
    response: Response,
) -> object:
    """Create the user, or replace its profile: fields left out are cleared, `custom` is
    replaced, and `tags`, when given, replace all tags."""
    outcome = service.write_users(
        session, request_origin(request, caller), [WriteItem(external_id, body, replace=True)]
    )[0]
    _raise_item_error(outcome)
    if outcome.status == "created":
        response.status_code = status.HTTP_201_CREATED
    return _one(session, caller.workspace_id, external_id)


@router.patch(
    "/users/{external_id}",
    response_model=schemas.User,
    responses=responses(service.UserNotFound, service.UserDeleted),
    dependencies=[Idempotent],
)
def patch_user(
    external_id: ExternalIdPath,
    body: UserFields,
    caller: ServerCaller,
    session: Db,
    request: Request,
) -> object:
    """Change only the fields given; `custom` and `tags` are merged key by key."""
    # 404 for a user that never existed; a deleted one answers 409 `user_deleted` like PUT.
    service.get_user(session, caller.workspace_id, external_id, include_deleted=True)
    outcome = service.write_users(
        session, request_origin(request, caller), [WriteItem(external_id, body)]
    )[0]
    _raise_item_error(outcome)
    return _one(session, caller.workspace_id, external_id)


@router.get(
    "/users/{external_id}", response_model=schemas.User, responses=responses(service.UserNotFound)
)
def get_user(
    external_id: ExternalIdPath, caller: ServerCaller, session: Db, include_deleted: bool = False
) -> object:
    """One user. Deleted users answer 404 unless `include_deleted=true`."""
    user = service.get_user(
        session, caller.workspace_id, external_id, include_deleted=include_deleted
    )
    return service.render(session, [user])[0]


@router.delete(
    "/users/{external_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(service.UserNotFound),
    dependencies=[Idempotent],
)
def delete_user(
    external_id: ExternalIdPath, caller: ServerCaller, session: Db, request: Request
) -> None:
    """Soft-delete the user: hidden from reads and sends, restorable with `/restore`."""
    service.delete_user(session, request_origin(request, caller), external_id)


@router.post(
    "/users/{external_id}/restore",
    response_model=schemas.User,
    responses=responses(service.UserNotFound),
    dependencies=[Idempotent],
)
def restore_user(
    external_id: ExternalIdPath, caller: ServerCaller, session: Db, request: Request
) -> object:
    """Bring a soft-deleted user back, with everything it had."""
    user = service.restore_user(session, request_origin(request, caller), external_id)
    return service.render(session, [user])[0]


@router.patch(
    "/users/{external_id}/tags",
    response_model=schemas.User,
    responses=responses(service.UserNotFound, service.UserDeleted),
    dependencies=[Idempotent],
)
def patch_tags(
    external_id: ExternalIdPath,
    body: schemas.TagsPatch,
    caller: ServerCaller,
    session: Db,
    request: Request,
) -> object:
    """Set tags; a value of `""` deletes that key. Other tags are kept."""
    service.patch_tags(session, request_origin(request, caller), external_id, body.tags)
    return _one(session, caller.workspace_id, external_id)


@router.get(
    "/users/{external_id}/changes",
    response_model=list[schemas.UserChange],
    responses=responses(service.UserNotFound),
)
def user_changes(
    external_id: ExternalIdPath,
    caller: ServerCaller,
    session: Db,
    after_seq: Annotated[int | None, Query(ge=0, le=MAX_BIGINT)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """The user's history: every change, who made it and where it came from."""
    user = service.get_user(session, caller.workspace_id, external_id, include_deleted=True)
    return feed.for_user(session, user.id, after_seq=after_seq, limit=limit)


@router.get("/changes", response_model=list[schemas.UserChange], responses=responses())
def workspace_changes(
    caller: ServerCaller,
    session: Db,
    after_seq: Annotated[int, Query(ge=0, le=MAX_BIGINT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> object:
    """The workspace's change feed in commit order; poll with the last `seq` you saw."""
    return feed.feed(session, caller.workspace_id, after_seq=after_seq, limit=limit)


@router.get("/users", response_model=Page[schemas.User], responses=responses(lists.ListNotFound))
def list_users(
    caller: ServerCaller,
    session: Db,
    services: AppServices,
    email: Annotated[str | None, Query(max_length=320)] = None,
    list_id: Annotated[str | None, Query(alias="list", max_length=40)] = None,
    tag: Annotated[
        str | None, Query(max_length=128, description="Users having this tag key.")
    ] = None,
    tag_value: Annotated[
        str | None, Query(max_length=1024, description="With `tag`: the value it must have.")
    ] = None,
    updated_since: datetime | None = None,
    include_deleted: bool = False,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> object:
    """Users, newest last; filter by email, list, tag and update time; page with `cursor`."""
    if email is not None:
        try:
            email = normalise_email(email)
        except ValueError as exc:
            raise InvalidInput(
                str(exc),
                errors=[{"field": "query.email", "message": str(exc), "type": "invalid_email"}],
            ) from None
    if list_id is not None:
        lists.get_list(session, caller.workspace_id, list_id)
    if tag_value is not None and tag is None:
        raise InvalidInput("`tag_value` needs `tag`.")
    if updated_since is not None:
        updated_since = _utc_query_time(updated_since)
    page_size = min(
        limit or services.settings.api.page_size_default, services.settings.api.page_size_max
    )
    flt = service.UserFilter(
        email=email,
        list_id=list_id,
        tag_key=tag,
        tag_value=tag_value,
        updated_since=updated_since,
        include_deleted=include_deleted,
    )
    users, next_cursor = service.list_users(
        session, caller.workspace_id, flt, limit=page_size, cursor=cursor
    )
    return {"data": service.render(session, users), "next_cursor": next_cursor}


def _utc_query_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        message, kind = "`updated_since` needs a time zone, e.g. 2026-01-01T00:00:00Z.", "timezone"
    else:
        try:
            # Stored times are UTC; a time whose UTC form leaves years 1-9999 can't be.
            return value.astimezone(UTC)
        except OverflowError:
            message, kind = "`updated_since` is out of range.", "datetime_range"
    raise InvalidInput(
        message, errors=[{"field": "query.updated_since", "message": message, "type": kind}]
    )


BatchItems = Annotated[
    list[Annotated[dict[str, Any], WithJsonSchema(UserBatchItem.model_json_schema())]],
    WithJsonSchema(
        {
            "type": "array",
            "minItems": 1,
            "maxItems": 1000,
            "items": UserBatchItem.model_json_schema(),
        }
    ),
]


class _BatchBody(schemas.Input):
    items: BatchItems


@router.post(
    "/users/batch",
    response_model=schemas.UserBatchResponse,
    responses=responses(),
    dependencies=[Idempotent],
)
def batch_upsert(
    body: _BatchBody, caller: ServerCaller, session: Db, services: AppServices, request: Request
) -> object:
    """Upsert up to 1,000 users. Each item creates its user or changes only the fields it
    names (like PATCH). Bad items are reported one by one; the rest are written."""
    limit = services.settings.api.max_batch_users
    if not body.items or len(body.items) > limit:
        raise InvalidInput(
            f"A batch holds 1 to {limit} items.",
            errors=[
                {"field": "body.items", "message": f"1 to {limit} items", "type": "batch_size"}
            ],
        )
    valid: list[tuple[int, WriteItem]] = []
    results: list[Outcome] = []
    for index, raw in enumerate(body.items):
        try:
            item = UserBatchItem.model_validate(raw)
        except ValidationError as exc:
            errors = [e.model_dump() for e in validation_errors(exc.errors())]
            ext = raw.get("external_id")
            results.append(
                Outcome(
                    index,
                    ext if isinstance(ext, str) else None,
                    "error",
                    error=schemas.ItemError(
                        code="invalid_input",
                        detail="; ".join(f"{e['field']}: {e['message']}" for e in errors),
                        errors=errors,
                    ),
                )
            )
            continue
        # A batch item is a UserFields plus its id; write_users only reads profile fields.
        valid.append((index, WriteItem(item.external_id, item)))
    origin = request_origin(request, caller)
    written = service.write_users(session, origin, [w for _, w in valid])
    for (index, _), outcome in zip(valid, written, strict=True):
        outcome.index = index
        results.append(outcome)
    results.sort(key=lambda r: r.index)
    counts = {"created": 0, "updated": 0, "unchanged": 0, "error": 0}
    for r in results:
        counts[r.status] += 1
    services.metrics.user_writes.labels("created").inc(counts["created"])
    services.metrics.user_writes.labels("updated").inc(counts["updated"])
    return {
        "created": counts["created"],
        "updated": counts["updated"],
        "unchanged": counts["unchanged"],
        "failed": counts["error"],
        "results": [r.__dict__ for r in results],
    }


# -- client routes (public client key) ------------------------------------------------------


class ClientUserUpdate(schemas.Input):
    language: str | None = None
    timezone: str | None = None
    country: str | None = None
    tags: dict[str, Annotated[str, schemas.StringConstraints(max_length=1024)]] | None = None


IdentityToken = Annotated[
    str | None,
    Header(
        alias="X-Identity-Token",
        max_length=128,
        description="Hex HMAC-SHA256 of the external id with the workspace's identity secret; "
        "required when the workspace turns identity verification on.",
    ),
]


@client_router.patch(
    "/users/{external_id}",
    response_model=schemas.User,
    responses=responses(service.UserDeleted),
    dependencies=[ClientIdempotent],
)
def client_update_user(
    external_id: ExternalIdPath,
    body: ClientUserUpdate,
    workspace: ClientWorkspace,
    session: Db,
    services: AppServices,
    request: Request,
    identity_token: IdentityToken = None,
) -> object:
    """From the app: create the user on first sight and set what the device knows
    (language, time zone, country, tags)."""
    verify_identity(services, workspace, external_id, identity_token)
    try:
        values = UserFields.model_validate(body.model_dump(exclude_unset=True))
    except ValidationError as exc:
        raise InvalidInput(
            "Invalid values.", errors=validation_errors(exc.errors(), prefix="body.")
        ) from None
    origin = Origin(workspace.id, "client", "client", getattr(request.state, "request_id", None))
    outcome = service.write_users(session, origin, [WriteItem(external_id, values)])[0]
    _raise_item_error(outcome)
    activity.touch(session, workspace.id, [external_id])
    return _one(session, workspace.id, external_id)
