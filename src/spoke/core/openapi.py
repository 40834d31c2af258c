"""Post-processing of the generated OpenAPI document so it tells the whole truth.

FastAPI documents error models as `application/json` and its own 422 body; Spoke answers
every error as `application/problem+json` with the `Problem` schema. This rewrites error
responses accordingly and adds the errors any route can produce (malformed JSON, too large
a body) so that the document lists every response a client can see.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from spoke.core.errors import PROBLEM_JSON, Problem

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_COMMON = {
    "400": "`invalid_json`, `bad_request`: the body or a header could not be read.",
    "413": "`payload_too_large`: the body is larger than the configured limit.",
    "422": "`invalid_input`: a value failed validation; `errors` names each field.",
}


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        for defs_name, defs in schemas["Problem"].pop("$defs", {}).items():
            schemas.setdefault(defs_name, defs)
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for path, item in doc.get("paths", {}).items():
            for method, operation in item.items():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                _fix_operation(path, method, operation)
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]


def _fix_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation["responses"]
    for status, response in list(responses.items()):
        if status.startswith(("4", "5")):
            response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
    headers = {
        p["name"].lower() for p in operation.get("parameters", []) if p.get("in") == "header"
    }
    if "idempotency-key" in headers:
        conflict = responses.setdefault(
            "409", {"description": "", "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}}}
        )
        reuse = "`idempotency_key_reused`: the key was used for a different request."
        conflict["description"] = f"{conflict['description']}; {reuse}".lstrip("; ")
    has_body = "requestBody" in operation
    has_params = bool(operation.get("parameters"))
    for status, description in _COMMON.items():
        if status == "413" and not has_body:
            continue
        if status == "422" and not (has_body or has_params):
            continue
        if status == "400" and not (has_body or path.startswith("/v1")):
            continue
        responses.setdefault(
            status,
            {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}}},
        )
