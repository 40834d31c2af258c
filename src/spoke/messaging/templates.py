"""Stored templates (`/v1/templates`): content for one channel, checked when saved.

Every text field is a Jinja2 template rendered in a sandbox, with the recipient's fields,
`custom` values and tags (see `personalise`), the template's fallbacks for whatever a
recipient lacks, and the send's own `variables`. A template that does not compile (syntax,
unknown filter) is refused when saved, with the line of each error.

Versioning: a change of content or fallbacks bumps `version`. A send made with a template
copies that version's content into the notification when it is accepted, so a scheduled
send goes out as it was when it was made, and the history shows what was sent (the
notification's content names the template id and version). Nothing here commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from jinja2 import TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import ValidationError
from sqlalchemy.orm import Session

from spoke.core.clock import utcnow
from spoke.core.errors import Conflict, InvalidInput, NotFound, validation_errors
from spoke.core.ids import new_id
from spoke.messaging import personalise
from spoke.messaging.template_models import MessageTemplate
from spoke.messaging.template_schemas import CONTENT_MODELS
from spoke.users.models import STANDARD_FIELDS, User, UserTag

# The text fields of each channel that are templates (push `data` is sent as it is).
TEMPLATED = {
    "push": ("title", "body", "image_url", "link_url"),
    "email": ("subject", "html", "text"),
    "sms": ("body",),
}
_text_env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
# HTML gets autoescaping: a user's name must not become markup in someone's inbox.
_html_env = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)
# Always in the context, whoever the recipient is.
_ALWAYS = frozenset({"custom", "tags", "user", "vars", "external_id"})


class TemplateNotFound(NotFound):
    code = "template_not_found"


class TemplateNameTaken(Conflict):
    code = "template_name_taken"


class TemplateChannelMismatch(InvalidInput):
    code = "template_channel_mismatch"
    title = "Template for another channel"


class TemplateRenderFailed(InvalidInput):
    code = "template_render_failed"
    title = "Template failed to render"


def _env(field: str) -> SandboxedEnvironment:
    return _html_env if field == "html" else _text_env


# -- checking --------------------------------------------------------------------------------


def check_content(channel: str, content: Mapping[str, Any]) -> dict[str, Any]:
    """The content without empty fields, after checking its shape and compiling every
    template field.

    Raises:
        InvalidInput: a field is unknown, too long or of the wrong type.
        personalise.InvalidTemplate: a template does not compile; one error per field,
            each with its line (`errors[].message` starts with `line N:`).
    """
    try:
        model = CONTENT_MODELS[channel].model_validate(dict(content))
    except ValidationError as exc:
        raise InvalidInput(
            "The content does not fit the channel.",
            errors=validation_errors(exc.errors(), prefix="body.content.", root="body.content"),
        ) from None
    checked = model.model_dump(exclude_none=True)
    if channel == "push" and not (checked.get("title") or checked.get("body")):
        raise InvalidInput(
            "A push template needs a title or a body.",
            errors=[{"field": "body.content", "message": "title or body", "type": "missing"}],
        )
    errors = []
    for field in TEMPLATED[channel]:
        text = checked.get(field)
        if not isinstance(text, str):
            continue
        try:
            _env(field).from_string(text)
        except TemplateSyntaxError as exc:
            errors.append(
                {
                    "field": f"body.content.{field}",
                    "message": f"line {exc.lineno}: {exc.message}",
                    "type": "template_syntax",
                }
            )
        except RecursionError:
            errors.append(
                {
                    "field": f"body.content.{field}",
                    "message": "nested too deeply",
                    "type": "template_syntax",
                }
            )
    if errors:
        raise personalise.InvalidTemplate(
            f"The template does not compile: {errors[0]['field']}, {errors[0]['message']}.",
            errors=errors,
        )
    return checked


def variables(channel: str, content: Mapping[str, Any]) -> list[str]:
    """The top-level names the content reads, sorted."""
    names: set[str] = set()
    for field in TEMPLATED.get(channel, ()):
        text = content.get(field)
        if isinstance(text, str):
            try:
                names |= meta.find_undeclared_variables(_env(field).parse(text))
            except (TemplateSyntaxError, RecursionError):
                continue
    return sorted(names - set(_text_env.globals))


# -- storing ---------------------------------------------------------------------------------


def get(session: Session, workspace_id: str, template_id: str) -> MessageTemplate:
    found = session.get(MessageTemplate, template_id)
    if found is None or found.workspace_id != workspace_id:
        raise TemplateNotFound(f"No template with id {template_id!r}.")
    return found


def _check_name(session: Session, workspace_id: str, name: str, except_id: str | None) -> None:
    stmt = sa.select(MessageTemplate.id).where(
        MessageTemplate.workspace_id == workspace_id, MessageTemplate.name == name
    )
    if except_id is not None:
        stmt = stmt.where(MessageTemplate.id != except_id)
    if session.scalar(stmt) is not None:
        raise TemplateNameTaken(f"A template named {name!r} already exists.")


def create(
    session: Session,
    workspace_id: str,
    *,
    name: str,
    channel: str,
    content: Mapping[str, Any],
    defaults: Mapping[str, Any] | None,
) -> MessageTemplate:
    checked = check_content(channel, content)
    _check_name(session, workspace_id, name, None)
    now = utcnow()
    created = MessageTemplate(
        id=new_id("tpl"),
        workspace_id=workspace_id,
        name=name,
        channel=channel,
        content=checked,
        defaults=dict(defaults or {}),
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(created)
    session.flush()
    return created


def update(
    session: Session,
    found: MessageTemplate,
    *,
    name: str | None,
    content: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None,
) -> MessageTemplate:
    changed = False
    if content is not None:
        checked = check_content(found.channel, content)
        changed = changed or checked != found.content
        found.content = checked
    if defaults is not None:
        changed = changed or dict(defaults) != found.defaults
        found.defaults = dict(defaults)
    if name is not None and name != found.name:
        _check_name(session, found.workspace_id, name, found.id)
        found.name = name
    if changed:
        found.version += 1
    found.updated_at = utcnow()
    session.flush()
    return found


def delete(session: Session, found: MessageTemplate) -> None:
    """Sends made with it keep their copy of its content."""
    session.delete(found)
    session.flush()


def list_page(
    session: Session, workspace_id: str, *, channel: str | None, after: str | None, limit: int
) -> tuple[Sequence[MessageTemplate], str | None]:
    """By id (ids sort by creation time)."""
    stmt = sa.select(MessageTemplate).where(MessageTemplate.workspace_id == workspace_id)
    if channel is not None:
        stmt = stmt.where(MessageTemplate.channel == channel)
    if after is not None:
        stmt = stmt.where(MessageTemplate.id > after)
    rows = session.scalars(stmt.order_by(MessageTemplate.id).limit(limit + 1)).all()
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def render(found: MessageTemplate) -> dict[str, Any]:
    return {
        "id": found.id,
        "name": found.name,
        "channel": found.channel,
        "content": found.content,
        "defaults": found.defaults,
        "variables": variables(found.channel, found.content),
        "version": found.version,
        "created_at": found.created_at,
        "updated_at": found.updated_at,
    }


# -- sending and previewing ------------------------------------------------------------------


def content_for_send(
    session: Session, workspace_id: str, template_id: str, channel: str
) -> dict[str, Any]:
    """The notification content of a send made with the template: this version's content,
    its fallbacks, and which template and version it was.

    Raises:
        TemplateNotFound: no such template in the workspace.
        TemplateChannelMismatch: the template is for another channel than the send.
    """
    found = get(session, workspace_id, template_id)
    if found.channel != channel:
        raise TemplateChannelMismatch(
            f"The template is for {found.channel}, the send is {channel}.",
            errors=[
                {
                    "field": "body.template_id",
                    "message": f"a {found.channel} template",
                    "type": "channel",
                }
            ],
        )
    content = dict(found.content)
    content["template"] = {"id": found.id, "name": found.name, "version": found.version}
    if found.defaults:
        content["defaults"] = dict(found.defaults)
    return content


def recipient_values(session: Session, user: User) -> dict[str, Any]:
    """What a template sees for one user (the fan-out builds the same per batch)."""
    profile: dict[str, Any] = {"external_id": user.external_id, "custom": user.custom}
    profile.update({name: getattr(user, name) for name in STANDARD_FIELDS})
    tags = dict(
        session.execute(
            sa.select(UserTag.key, UserTag.value).where(UserTag.user_id == user.id)
        ).all()
    )
    return personalise.context(profile, tags)


def render_fields(
    channel: str, content: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, Any]:
    """`content` (a template's, or a notification's copy of one, with its `defaults` and
    `variables`) rendered for one recipient; `values` from `recipient_values` or
    `personalise.context`. HTML is autoescaped. For every channel's fan-out and the preview.

    Raises:
        TemplateError: the template failed for this recipient (e.g. a sandbox violation).
    """
    scope = personalise.values_for(content, values)
    rendered = dict(content)
    for field in TEMPLATED[channel]:
        text = content.get(field)
        if isinstance(text, str):
            rendered[field] = _env(field).from_string(text).render(scope) or None
    return rendered


def preview(
    found: MessageTemplate, values: Mapping[str, Any], send_variables: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The template rendered as one recipient would get it.

    Raises:
        TemplateRenderFailed: the template fails for these values (e.g. the sandbox refused
            an attribute).
    """
    content = dict(found.content)
    if found.defaults:
        content["defaults"] = dict(found.defaults)
    if send_variables:
        content["variables"] = dict(send_variables)
    try:
        rendered = render_fields(found.channel, content, values)
    except (TemplateError, RecursionError) as exc:
        raise TemplateRenderFailed(f"The template failed for this user: {exc}") from None
    known = set(personalise.values_for(content, values)) | _ALWAYS
    return {
        "template_id": found.id,
        "version": found.version,
        "channel": found.channel,
        "content": {k: v for k, v in rendered.items() if k in found.content and v is not None},
        "missing": [name for name in variables(found.channel, found.content) if name not in known],
    }
