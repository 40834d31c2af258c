"""Lists of users over HTTP: `/v1/lists` and bulk membership."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import Db
from spoke.users import lists, schemas
from spoke.users.changes import request_origin
from spoke.workspaces.auth import Idempotent, ServerCaller
from spoke.workspaces.service import Caller

router = APIRouter(prefix="/v1", tags=["lists"], route_class=TransactionalRoute)


# -- lists --------------------------------------------------------------------------------

ListIdPath = Annotated[str, Path(min_length=1, max_length=40)]


@router.get("/lists", response_model=list[schemas.UserList], tags=["lists"], responses=responses())
def list_lists(caller: ServerCaller, session: Db) -> object:
    """All lists with their member counts and what uses them."""
    return lists.render(session, lists.list_lists(session, caller.workspace_id))


@router.post(
    "/lists",
    response_model=schemas.UserList,
    status_code=status.HTTP_201_CREATED,
    tags=["lists"],
    responses=responses(lists.ListNameTaken),
    dependencies=[Idempotent],
)
def create_list(body: schemas.UserListCreate, caller: ServerCaller, session: Db) -> object:
    """Create an empty list."""
    created = lists.create_list(
        session, caller.workspace_id, name=body.name, description=body.description
    )
    return lists.render(session, [created])[0]


@router.get(
    "/lists/{list_id}",
    response_model=schemas.UserList,
    tags=["lists"],
    responses=responses(lists.ListNotFound),
)
def get_list(list_id: ListIdPath, caller: ServerCaller, session: Db) -> object:
    """One list. Its members: `GET /v1/users?list={list_id}`."""
    return lists.render(session, [lists.get_list(session, caller.workspace_id, list_id)])[0]


@router.patch(
    "/lists/{list_id}",
    response_model=schemas.UserList,
    tags=["lists"],
    responses=responses(lists.ListNotFound, lists.ListNameTaken),
    dependencies=[Idempotent],
)
def update_list(
    list_id: ListIdPath, body: schemas.UserListUpdate, caller: ServerCaller, session: Db
) -> object:
    """Rename a list or change its description."""
    found = lists.get_list(session, caller.workspace_id, list_id)
    return lists.render(
        session, [lists.update_list(session, found, name=body.name, description=body.description)]
    )[0]


@router.delete(
    "/lists/{list_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["lists"],
    responses=responses(lists.ListNotFound, lists.ListInUse),
    dependencies=[Idempotent],
)
def delete_list(list_id: ListIdPath, caller: ServerCaller, session: Db, request: Request) -> None:
    """Delete a list (its users stay). Refused while something, e.g. a sync, uses it."""
    lists.delete_list(
        session,
        request_origin(request, caller),
        lists.get_list(session, caller.workspace_id, list_id),
    )


@router.post(
    "/lists/{list_id}/members",
    response_model=schemas.MembershipResult,
    tags=["lists"],
    responses=responses(lists.ListNotFound),
    dependencies=[Idempotent],
)
def add_members(
    list_id: ListIdPath,
    body: schemas.MembershipAdd,
    caller: ServerCaller,
    session: Db,
    request: Request,
) -> object:
    """Add up to 1,000 users to the list by external id (`by_hand`: a person did it, see
    the contact sync's list selection)."""
    return _change_membership(
        session,
        request,
        caller,
        list_id,
        body,
        add=True,
        origin="manual" if body.by_hand else "api",
    )


@router.post(
    "/lists/{list_id}/members/remove",
    response_model=schemas.MembershipResult,
    tags=["lists"],
    responses=responses(lists.ListNotFound),
    dependencies=[Idempotent],
)
def remove_members(
    list_id: ListIdPath,
    body: schemas.MembershipChange,
    caller: ServerCaller,
    session: Db,
    request: Request,
) -> object:
    """Remove up to 1,000 users from the list by external id."""
    return _change_membership(session, request, caller, list_id, body, add=False)


def _change_membership(
    session: Db,
    request: Request,
    caller: Caller,
    list_id: str,
    body: schemas.MembershipChange,
    *,
    add: bool,
    origin: str = "api",
) -> dict[str, object]:
    found = lists.get_list(session, caller.workspace_id, list_id)
    changed, unchanged, missing = lists.change_membership(
        session, request_origin(request, caller, origin), found, body.external_ids, add=add
    )
    return {"changed": changed, "unchanged": unchanged, "not_found": missing}
