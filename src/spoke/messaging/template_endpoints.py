"""Stored templates over HTTP: `/v1/templates` and a preview for one user."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from spoke.core.errors import responses
from spoke.core.http import TransactionalRoute
from spoke.core.pagination import InvalidCursor, Page, decode_cursor, encode_cursor
from spoke.deps import Db
from spoke.messaging import personalise, templates
from spoke.messaging.template_schemas import (
    Channel,
    Preview,
    PreviewRequest,
    Template,
    TemplateCreate,
    TemplateUpdate,
)
from spoke.users import service as users
from spoke.workspaces.auth import Idempotent, ServerCaller

router = APIRouter(prefix="/v1/templates", tags=["templates"], route_class=TransactionalRoute)
TemplateIdPath = Annotated[str, Path(min_length=1, max_length=40)]


@router.post(
    "",
    response_model=Template,
    status_code=status.HTTP_201_CREATED,
    responses=responses(personalise.InvalidTemplate, templates.TemplateNameTaken),
    dependencies=[Idempotent],
)
def create_template(body: TemplateCreate, caller: ServerCaller, session: Db) -> object:
    """Store a push, email or SMS template. Every template field must compile: a syntax
    error answers 422 `invalid_template` naming the field and line."""
    created = templates.create(
        session,
        caller.workspace_id,
        name=body.name,
        channel=body.channel,
        content=body.content,
        defaults=body.defaults,
    )
    return templates.render(created)


@router.get("", response_model=Page[Template], responses=responses(InvalidCursor))
def list_templates(
    caller: ServerCaller,
    session: Db,
    channel: Channel | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> object:
    """Templates, oldest first; filter by `channel`."""
    after = str(decode_cursor(cursor, 1)[0]) if cursor is not None else None
    rows, last = templates.list_page(
        session, caller.workspace_id, channel=channel, after=after, limit=limit
    )
    return {
        "data": [templates.render(t) for t in rows],
        "next_cursor": encode_cursor([last]) if last is not None else None,
    }


@router.get(
    "/{template_id}", response_model=Template, responses=responses(templates.TemplateNotFound)
)
def get_template(template_id: TemplateIdPath, caller: ServerCaller, session: Db) -> object:
    """One template, with the variables it reads."""
    return templates.render(templates.get(session, caller.workspace_id, template_id))


@router.patch(
    "/{template_id}",
    response_model=Template,
    responses=responses(
        templates.TemplateNotFound, templates.TemplateNameTaken, personalise.InvalidTemplate
    ),
    dependencies=[Idempotent],
)
def update_template(
    template_id: TemplateIdPath, body: TemplateUpdate, caller: ServerCaller, session: Db
) -> object:
    """Rename it, or replace its content or fallbacks (a new version; sends already
    accepted keep the version they were made with)."""
    found = templates.get(session, caller.workspace_id, template_id)
    updated = templates.update(
        session, found, name=body.name, content=body.content, defaults=body.defaults
    )
    return templates.render(updated)


@router.delete(
    "/{template_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses(templates.TemplateNotFound),
    dependencies=[Idempotent],
)
def delete_template(template_id: TemplateIdPath, caller: ServerCaller, session: Db) -> None:
    """Delete a template (sends made with it keep their copy)."""
    templates.delete(session, templates.get(session, caller.workspace_id, template_id))


@router.post(
    "/{template_id}/preview",
    response_model=Preview,
    responses=responses(
        templates.TemplateNotFound, users.UserNotFound, templates.TemplateRenderFailed
    ),
)
def preview_template(
    template_id: TemplateIdPath, body: PreviewRequest, caller: ServerCaller, session: Db
) -> object:
    """Render the template as `user_id` would receive it (their fields, custom values and
    tags, the fallbacks, and `variables`), and name the variables nothing filled."""
    found = templates.get(session, caller.workspace_id, template_id)
    values = {}
    if body.user_id is not None:
        user = users.get_user(session, caller.workspace_id, body.user_id)
        values = templates.recipient_values(session, user)
    return templates.preview(found, values, body.variables)
