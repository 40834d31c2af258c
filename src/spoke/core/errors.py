"""Errors as RFC 9457 problem documents with a stable `code`.

Services raise `AppError` subclasses; one set of handlers (installed by `install_handlers`)
renders every failure — ours, FastAPI's validation errors, Starlette's 404/405, and anything
unexpected — as `application/problem+json`. The `code` is part of the API: clients branch on
it, so it never changes once released.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON = "application/problem+json"
log = structlog.get_logger("spoke.errors")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending input, e.g. `body.items.3.email`.")
    message: str
    type: str = Field(description="Machine-readable reason, e.g. `missing`, `invalid_email`.")


class Problem(BaseModel):
    """The body of every error response."""

    type: str = Field(description="URI reference naming the problem type.")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable, machine-readable error code.")
    request_id: str | None = None
    errors: list[FieldError] | None = Field(
        None, description="Per-field problems, for validation errors."
    )


class AppError(Exception):
    code: ClassVar[str] = "bad_request"
    status_code: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError | dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = (
            [e if isinstance(e, FieldError) else FieldError.model_validate(e) for e in errors]
            if errors
            else None
        )
        self.headers = headers or {}
        self.extra = extra

    @classmethod
    def openapi(cls) -> dict[int | str, dict[str, Any]]:
        return {cls.status_code: {"model": Problem, "description": f"`{cls.code}`: {cls.title}"}}


class NotFound(AppError):
    code = "not_found"
    status_code = 404
    title = "Not found"


class Conflict(AppError):
    code = "conflict"
    status_code = 409
    title = "Conflict"


class Unauthenticated(AppError):
    code = "unauthenticated"
    status_code = 401
    title = "Authentication required"


class Forbidden(AppError):
    code = "forbidden"
    status_code = 403
    title = "Not allowed"


class InvalidInput(AppError):
    code = "invalid_input"
    status_code = 422
    title = "Invalid input"


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status_code = 413
    title = "Payload too large"


class ServiceUnavailable(AppError):
    code = "service_unavailable"
    status_code = 503
    title = "Service unavailable"


def responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for an endpoint: every error it can answer, plus the common ones."""
    out: dict[int | str, dict[str, Any]] = {}
    every: tuple[type[AppError], ...] = (*errors, Unauthenticated, InvalidInput)
    for err in every:
        entry = out.setdefault(err.status_code, {"model": Problem, "description": ""})
        codes = entry["description"]
        entry["description"] = f"{codes}, `{err.code}`" if codes else f"`{err.code}`"
    return out


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    request: Request | None,
    errors: Sequence[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": getattr(request.state, "request_id", None) if request else None,
    }
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _field_path(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def validation_errors(raw: Sequence[Any], *, prefix: str = "", root: str = "") -> list[FieldError]:
    """pydantic's errors as field errors; `prefix` locates them (`body.`), `root` names an
    error about the whole object (no location)."""
    out = []
    for err in raw:
        message = str(err.get("msg", "invalid"))
        # pydantic prefixes messages from our validators with "Value error, "; drop it.
        message = message.removeprefix("Value error, ")
        path = _field_path(err.get("loc", ()))
        out.append(
            FieldError(
                field=prefix + path if path else root,
                message=message,
                type=str(err.get("type", "invalid")),
            )
        )
    return out


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def _app_error(request: Request, exc: AppError) -> Response:
        return problem_response(
            exc.status_code,
            exc.code,
            exc.title,
            exc.detail,
            request,
            exc.errors,
            exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = validation_errors(exc.errors())
        if any(e.type == "json_invalid" for e in errors):
            return problem_response(
                400,
                "invalid_json",
                "Malformed JSON",
                "The request body is not valid JSON.",
                request,
                errors,
            )
        fields = ", ".join(e.field for e in errors[:5])
        return problem_response(
            422,
            "invalid_input",
            "Invalid input",
            f"The request has invalid values: {fields}.",
            request,
            errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        return problem_response(
            exc.status_code, code, title, detail, request, headers=dict(exc.headers or {})
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("request.unhandled_error", path=request.url.path)
        return problem_response(
            500,
            "internal_error",
            "Internal error",
            "Something went wrong on our side; the request id identifies it.",
            request,
        )
