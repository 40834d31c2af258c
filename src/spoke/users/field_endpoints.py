"""Custom user fields over HTTP: `/v1/fields`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.deps import Db
from spoke.users import fields, schemas
from spoke.users.changes import request_origin
from spoke.workspaces.auth import Idempotent, ServerCaller

router = APIRouter(prefix="/v1", tags=["fields"], route_class=TransactionalRoute)


# -- custom fields ----------------------------------------------------------------------


FieldNamePath = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


@router.get(
    "/fields", response_model=list[schemas.CustomField], tags=["fields"], responses=responses()
)
def list_fields(caller: ServerCaller, session: Db) -> object:
    """The workspace's custom user fields."""
    return fields.list_fields(session, caller.workspace_id)


@router.post(
    "/fields",
    response_model=schemas.CustomField,
    status_code=status.HTTP_201_CREATED,
    tags=["fields"],
    responses=responses(fields.FieldExists),
    dependencies=[Idempotent],
)
def create_field(body: schemas.CustomFieldCreate, caller: ServerCaller, session: Db) -> object:
    """Declare a custom field; user values are then checked against its type."""
    return fields.create_field(
        session,
        caller.workspace_id,
        name=body.name,
        label=body.label,
        type_=body.type,
        options=body.options,
    )


@router.get(
    "/fields/{name}",
    response_model=schemas.CustomField,
    tags=["fields"],
    responses=responses(fields.FieldNotFound),
)
def get_field(name: FieldNamePath, caller: ServerCaller, session: Db) -> object:
    """One custom field."""
    return fields.get_field(session, caller.workspace_id, name)


@router.patch(
    "/fields/{name}",
    response_model=schemas.CustomField,
    tags=["fields"],
    responses=responses(fields.FieldNotFound, fields.OptionInUse),
    dependencies=[Idempotent],
)
def update_field(
    name: FieldNamePath, body: schemas.CustomFieldUpdate, caller: ServerCaller, session: Db
) -> object:
    """Relabel a field or change an enumeration's options (options in use stay)."""
    found = fields.get_field(session, caller.workspace_id, name)
    return fields.update_field(session, found, label=body.label, options=body.options)


@router.delete(
    "/fields/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["fields"],
    responses=responses(fields.FieldNotFound),
    dependencies=[Idempotent],
)
def delete_field(name: FieldNamePath, caller: ServerCaller, session: Db, request: Request) -> None:
    """Delete a field and its values on every user (each such user gets a change row)."""
    fields.delete_field(
        session,
        request_origin(request, caller),
        fields.get_field(session, caller.workspace_id, name),
    )
