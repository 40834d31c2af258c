"""Stored templates as the API shows them, and the `template_id` option of a send."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from spoke.users.schemas import ExternalId

VariableName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
VariableValue = (
    Annotated[str, StringConstraints(max_length=2000)]
    | Annotated[int, Field(ge=-(2**53), le=2**53)]
    | Annotated[float, Field(allow_inf_nan=False)]
    | bool
)
Variables = Annotated[dict[VariableName, VariableValue], Field(max_length=100)]
TemplateName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Channel = Literal["push", "email", "sms"]

CONTENT_HELP = (
    "Per channel — push: `title`, `body`, `image_url`, `link_url` (templates) and `data` "
    "(strings, sent as they are); email: `subject`, `html`, `text`; sms: `body`. Jinja2, "
    "rendered in a sandbox with the user's fields, `custom` values and tags."
)


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PushTemplateContent(Input):
    title: Annotated[str, StringConstraints(max_length=1000)] | None = None
    body: Annotated[str, StringConstraints(max_length=4000)] | None = None
    image_url: Annotated[str, StringConstraints(max_length=1000)] | None = None
    link_url: Annotated[str, StringConstraints(max_length=1000)] | None = None
    data: (
        dict[
            Annotated[str, StringConstraints(min_length=1, max_length=64)],
            Annotated[str, StringConstraints(max_length=1024)],
        ]
        | None
    ) = Field(None, max_length=50)


class EmailTemplateContent(Input):
    subject: Annotated[str, StringConstraints(min_length=1, max_length=1000)]
    html: Annotated[str, StringConstraints(max_length=200_000)] | None = None
    text: Annotated[str, StringConstraints(max_length=100_000)] | None = None


class SmsTemplateContent(Input):
    body: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


CONTENT_MODELS: dict[str, type[Input]] = {
    "push": PushTemplateContent,
    "email": EmailTemplateContent,
    "sms": SmsTemplateContent,
}


class TemplateCreate(Input):
    name: TemplateName
    channel: Channel
    content: dict[str, Any] = Field(description=CONTENT_HELP)
    defaults: Variables | None = Field(
        None,
        description="Fallbacks for variables a recipient has no value for, "
        'e.g. `{"first_name": "there"}`.',
    )


class TemplateUpdate(Input):
    name: TemplateName | None = None
    content: dict[str, Any] | None = Field(
        None, description="Replaces the whole content. " + CONTENT_HELP
    )
    defaults: Variables | None = Field(None, description="Replaces every fallback.")


class Template(BaseModel):
    id: str
    name: str
    channel: str
    content: dict[str, Any]
    defaults: dict[str, Any]
    variables: list[str] = Field(description="The variables the content reads.")
    version: int = Field(description="Goes up with every change of content or defaults.")
    created_at: datetime
    updated_at: datetime


class PreviewRequest(Input):
    user_id: ExternalId | None = Field(
        None, description="Render for this user; omitted: with fallbacks and variables only."
    )
    variables: Variables | None = Field(None, description="As a send's `variables`.")


class Preview(BaseModel):
    template_id: str
    version: int
    channel: str
    content: dict[str, Any] = Field(description="The content as the user would receive it.")
    missing: list[str] = Field(
        description="Variables the content reads that had no value and no fallback."
    )


_INLINE = ("title", "body", "image_url", "link_url", "data", "subject", "html", "text")


class TemplateChoice(Input):
    """A send's content from a stored template instead of inline fields."""

    template_id: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = Field(
        None, description="A stored template of the send's channel, instead of inline content."
    )
    variables: Variables | None = Field(
        None,
        description="Values for this send, for every recipient; they win over the user's "
        "fields and tags and over the template's fallbacks (also as `vars.<name>`).",
    )

    @model_validator(mode="after")
    def _template_or_inline(self) -> TemplateChoice:
        if self.template_id is not None:
            inline = [name for name in _INLINE if getattr(self, name, None) is not None]
            if inline:
                raise ValueError(
                    f"give either template_id or inline content, not both ({', '.join(inline)})"
                )
        return self
