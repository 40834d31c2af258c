"""HubSpot-shaped errors.

Every non-2xx answer the sandbox gives goes through `SandboxError`, rendered as HubSpot's `Error`
body: `{status:"error", message, correlationId, category, context?, errors?, subCategory?, links?}`
(contract §1.1).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

JSONDict = dict[str, Any]


class SandboxError(Exception):
    """An API error, raised anywhere inside a handler and rendered by the request wrapper."""

    def __init__(
        self,
        status_code: int,
        message: str,
        category: str,
        *,
        context: dict[str, list[str]] | None = None,
        errors: list[JSONDict] | None = None,
        sub_category: str | None = None,
        links: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: JSONDict | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.category = category
        self.context = context
        self.errors = errors
        self.sub_category = sub_category
        self.links = links
        self.headers = headers or {}
        self._body = body

    def body(self) -> JSONDict:
        if self._body is not None:
            return self._body
        out: JSONDict = {
            "status": "error",
            "message": self.message,
            "correlationId": correlation_id(),
            "category": self.category,
        }
        if self.sub_category:
            out["subCategory"] = self.sub_category
        if self.context:
            out["context"] = self.context
        if self.errors:
            out["errors"] = self.errors
        if self.links:
            out["links"] = self.links
        return out

    def standard_error(self, **extra: Any) -> JSONDict:
        """The `StandardError` form used inside 207 multi-status bodies."""
        out: JSONDict = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": self.context or {},
            "errors": self.errors or [],
            "links": self.links or {},
        }
        if self.sub_category:
            out["subCategory"] = self.sub_category
        out.update(extra)
        return out


def correlation_id() -> str:
    return str(uuid.uuid4())


def render(err: SandboxError) -> tuple[int, bytes, dict[str, str]]:
    return err.status_code, orjson.dumps(err.body()), err.headers


# -- Constructors for the cases the contract lists ----------------------------------------------


def validation(message: str, **kw: Any) -> SandboxError:
    return SandboxError(400, message, "VALIDATION_ERROR", **kw)


def not_found(object_id: str) -> SandboxError:
    # Two spaces after "found." are HubSpot's (contract §1.1).
    return SandboxError(
        404,
        "Object not found.  objectId are usually numeric.",
        "OBJECT_NOT_FOUND",
        context={"id": [object_id]},
    )


def resource_not_found(message: str = "resource not found") -> SandboxError:
    return SandboxError(404, message, "OBJECT_NOT_FOUND")


def contact_exists(existing_id: str) -> SandboxError:
    return SandboxError(409, f"Contact already exists. Existing ID: {existing_id}", "CONFLICT")


def conflict(message: str) -> SandboxError:
    return SandboxError(409, message, "CONFLICT")


def unauthenticated() -> SandboxError:
    return SandboxError(
        401,
        "Authentication credentials not found. This API supports OAuth 2.0 authentication and "
        "you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        "INVALID_AUTHENTICATION",
    )


def missing_scopes(required: tuple[str, ...]) -> SandboxError:
    return SandboxError(
        403,
        "This app hasn't been granted all required scopes to make this call. Read more about "
        "required scopes here: https://developers.hubspot.com/scopes.",
        "MISSING_SCOPES",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": list(required)},
            }
        ],
        links={"scopes": "https://developers.hubspot.com/scopes"},
    )


def property_errors(problems: list[JSONDict]) -> SandboxError:
    """400 for invalid property values, in the `Property values were not valid: [...]` form."""
    return validation(
        "Property values were not valid: " + orjson.dumps(problems).decode(),
        errors=[
            {
                "message": p["message"],
                "code": p["error"],
                "context": {"propertyName": [p["name"]]},
            }
            for p in problems
        ],
    )


def property_problem(name: str, error: str, message: str, portal_id: int) -> JSONDict:
    return {
        "isValid": False,
        "message": message,
        "error": error,
        "name": name,
        "localizedErrorMessage": message,
        "portalId": portal_id,
    }
