"""Schemathesis over the whole OpenAPI document, against a live server on each backend.

Every operation gets generated requests (hypothesis, derandomized so a run is repeatable),
authenticated as a real workspace that has a user, a list and a custom field to hit. The
checks: no 5xx, ever; every status code and content type answered is documented; every
response body matches its documented schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from tests.conftest import Backend, Tenant, create_tenant

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def fuzz_tenant(backend: Backend) -> Iterator[Tenant]:
    t = create_tenant(backend)
    t.http.put("/v1/users/fuzz-user", json={"email": "fuzz@example.com", "tags": {"k": "v"}})
    t.http.post("/v1/fields", json={"name": "plan", "type": "string"})
    t.http.post("/v1/lists", json={"name": "fuzz list"})
    yield t
    t.http.close()


def test_no_operation_answers_5xx_or_off_contract(backend: Backend, fuzz_tenant: Tenant) -> None:
    schema = schemathesis.openapi.from_url(f"{backend.url}/openapi.json")
    headers = {
        "X-Api-Key": fuzz_tenant.key_id,
        "X-Secret-Key": fuzz_tenant.secret,
        "X-Client-Key": fuzz_tenant.client_key,
    }
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def exercise(case: Any) -> None:
            response = case.call(base_url=backend.url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)

        try:
            exercise()
        except (Exception, BaseExceptionGroup) as exc:  # collect every failing operation
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 25, "the schema lost operations"
    assert not failures, "\n\n".join(failures)
