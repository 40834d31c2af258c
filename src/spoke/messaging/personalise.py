"""Personalised content: `{{ first_name | default("there") }}` in a title, body or link.

Templates are Jinja2 in a sandbox (no attribute access to Python internals, no I/O). The
context is the recipient's profile (`external_id`, the standard fields, `custom`) and its
`tags`, each also reachable at the top level; a field that is empty is left out, so
`default(...)` supplies the fallback. A template that can't be parsed is refused when the
send is accepted; one that fails for a particular user fails only that user's delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from spoke.core.errors import InvalidInput

TEMPLATED_FIELDS = (
    "title",
    "body",
    "image_url",
    "link_url",
    "subject",
    "html",
    "text",
    "from_name",
)
_env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
# An email's HTML body: values are escaped, so a first name can't inject markup.
_html_env = SandboxedEnvironment(autoescape=True, keep_trailing_newline=True)
HTML_FIELDS = frozenset({"html"})


class InvalidTemplate(InvalidInput):
    code = "invalid_template"
    title = "Invalid template"


def is_template(text: object) -> bool:
    return isinstance(text, str) and ("{{" in text or "{%" in text)


def needs_rendering(content: Mapping[str, Any]) -> bool:
    return any(is_template(content.get(name)) for name in TEMPLATED_FIELDS)


def check(content: Mapping[str, Any], prefix: str = "body") -> None:
    """Raise `InvalidTemplate` naming the first field whose template does not parse."""
    for name in TEMPLATED_FIELDS:
        text = content.get(name)
        if isinstance(text, str) and is_template(text):
            try:
                _env.parse(text)
            except (TemplateError, RecursionError) as exc:  # deep nesting: refused too
                raise InvalidTemplate(
                    f"{name}: {exc}",
                    errors=[{"field": f"{prefix}.{name}", "message": str(exc), "type": "template"}],
                ) from None


@lru_cache(maxsize=512)
def _compiled(text: str, html: bool) -> Template:
    """Compiling costs about as much as rendering a thousand times; a send renders the same
    few templates for every recipient."""
    return (_html_env if html else _env).from_string(text)


def context(profile: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
    fields = {k: v for k, v in profile.items() if v not in (None, "")}
    custom = {k: v for k, v in (fields.pop("custom", None) or {}).items() if v not in (None, "")}
    return {**custom, **tags, **fields, "custom": custom, "tags": dict(tags), "user": fields}


def values_for(content: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A recipient's values with the send's own: a stored template's `defaults` fill what
    the recipient lacks, the send's `variables` win over everything (also as `vars`)."""
    defaults = content.get("defaults") or {}
    variables = content.get("variables") or {}
    if not defaults and not variables:
        return dict(values)
    return {**defaults, **values, **variables, "vars": dict(variables)}


def render(content: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`content` with every templated field rendered for one recipient.

    Raises:
        TemplateError: the template failed for this recipient (e.g. a sandbox violation).
    """
    values = values_for(content, values)
    out = dict(content)
    for name in TEMPLATED_FIELDS:
        text = content.get(name)
        if isinstance(text, str) and is_template(text):
            out[name] = _compiled(text, name in HTML_FIELDS).render(values) or None
    return out
