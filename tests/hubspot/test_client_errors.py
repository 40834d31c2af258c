"""HubSpot error bodies map onto the documented exception tree (hubspot-contract.md §1.1, §8).

These build `httpx.Response`s with the exact bodies from the contract; the sandbox tests check
the same mapping over the wire.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from spoke.hubspot import (
    BadRequest,
    Conflict,
    ContactExists,
    Forbidden,
    HubSpotResponseError,
    Locked,
    MissingScopes,
    OAuthError,
    ObjectNotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    ValidationFailed,
)
from spoke.hubspot.errors import error_from_response, parse_retry_after


def response(
    status: int, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    if isinstance(body, str):
        return httpx.Response(status, text=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


class TestErrorFromResponse:
    def test_duplicate_contact_gives_existing_id(self) -> None:
        error = error_from_response(
            response(
                409,
                {
                    "status": "error",
                    "message": "Contact already exists. Existing ID: 12345",
                    "correlationId": "c-1",
                    "category": "CONFLICT",
                },
            )
        )
        assert isinstance(error, ContactExists)
        assert isinstance(error, Conflict)
        assert error.existing_id == "12345"
        assert error.correlation_id == "c-1"
        assert error.category == "CONFLICT"

    def test_other_conflicts_are_plain(self) -> None:
        error = error_from_response(response(409, {"message": "Property exists", "category": "X"}))
        assert type(error) is Conflict

    def test_not_found(self) -> None:
        error = error_from_response(
            response(
                404,
                {
                    "status": "error",
                    "message": "Object not found.  objectId are usually numeric.",
                    "correlationId": "c-2",
                    "context": {"id": ["abc"]},
                    "category": "OBJECT_NOT_FOUND",
                },
            )
        )
        assert isinstance(error, ObjectNotFound)
        assert error.context == {"id": ["abc"]}
        assert error.status_code == 404

    def test_validation_error_keeps_details(self) -> None:
        details = [
            {
                "message": "Property values were not valid",
                "code": "INVALID_INTEGER",
                "context": {"propertyName": ["discount"]},
            }
        ]
        error = error_from_response(
            response(
                400,
                {
                    "status": "error",
                    "message": "Property values were not valid",
                    "correlationId": "c-3",
                    "category": "VALIDATION_ERROR",
                    "errors": details,
                },
            )
        )
        assert isinstance(error, ValidationFailed)
        assert isinstance(error, BadRequest)
        assert error.errors == details

    def test_bad_request_without_validation_category(self) -> None:
        assert type(error_from_response(response(400, {"message": "bad"}))) is BadRequest

    def test_unauthorized(self) -> None:
        error = error_from_response(
            response(
                401,
                {
                    "status": "error",
                    "message": "Authentication credentials not found.",
                    "category": "INVALID_AUTHENTICATION",
                },
            )
        )
        assert isinstance(error, Unauthorized)

    def test_missing_scopes_lists_them(self) -> None:
        error = error_from_response(
            response(
                403,
                {
                    "status": "error",
                    "message": "This app hasn't been granted all required scopes.",
                    "correlationId": "c-4",
                    "category": "MISSING_SCOPES",
                    "errors": [
                        {
                            "message": "One or more of the following scopes are required.",
                            "context": {
                                "requiredGranularScopes": [
                                    "crm.objects.contacts.read",
                                    "crm.objects.contacts.write",
                                ]
                            },
                        }
                    ],
                },
            )
        )
        assert isinstance(error, MissingScopes)
        assert isinstance(error, Forbidden)
        assert error.scopes == ["crm.objects.contacts.read", "crm.objects.contacts.write"]

    def test_forbidden_without_scope_category(self) -> None:
        assert type(error_from_response(response(403, {"message": "no"}))) is Forbidden

    def test_rate_limited_reads_policy_and_retry_after(self) -> None:
        error = error_from_response(
            response(
                429,
                {
                    "status": "error",
                    "message": "You have reached your ten_secondly_rolling limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": "c-5",
                    "policyName": "TEN_SECONDLY_ROLLING",
                    "requestId": "r-1",
                },
                headers={"Retry-After": "2"},
            )
        )
        assert isinstance(error, RateLimited)
        assert error.policy == "TEN_SECONDLY_ROLLING"
        assert error.retry_after == 2.0
        assert error.category == "RATE_LIMIT"

    def test_rate_limited_without_retry_after(self) -> None:
        error = error_from_response(
            response(429, {"message": "You have reached your daily limit.", "policyName": "DAILY"})
        )
        assert isinstance(error, RateLimited)
        assert error.retry_after is None
        assert error.policy == "DAILY"

    def test_locked_and_server_errors(self) -> None:
        assert isinstance(error_from_response(response(423, {"message": "locked"})), Locked)
        for status in (500, 502, 503, 504, 524):
            assert isinstance(
                error_from_response(response(status, "<html>oops</html>")), ServerError
            )

    def test_non_json_body_becomes_the_message(self) -> None:
        error = error_from_response(response(502, "Bad gateway"))
        assert error.message == "Bad gateway"
        assert error.body == "Bad gateway"
        assert error.category is None

    def test_empty_body_still_has_a_message(self) -> None:
        error = error_from_response(httpx.Response(503))
        assert "503" in error.message

    def test_unlisted_status_is_the_base_class(self) -> None:
        error = error_from_response(response(414, {"message": "URI too long"}))
        assert type(error) is HubSpotResponseError

    def test_oauth_token_errors(self) -> None:
        error = error_from_response(
            response(
                400,
                {
                    "status": "BAD_REFRESH_TOKEN",
                    "message": "missing or unknown refresh token",
                    "correlationId": "c-6",
                },
            ),
            oauth=True,
        )
        assert isinstance(error, OAuthError)
        assert error.error == "BAD_REFRESH_TOKEN"

    def test_oauth_rfc6749_errors(self) -> None:
        error = error_from_response(
            response(400, {"error": "invalid_grant", "error_description": "bad code"}), oauth=True
        )
        assert isinstance(error, OAuthError)
        assert error.error == "invalid_grant"

    def test_str_carries_status_category_and_correlation(self) -> None:
        error = error_from_response(
            response(404, {"message": "gone", "category": "OBJECT_NOT_FOUND", "correlationId": "c"})
        )
        assert str(error) == "404 OBJECT_NOT_FOUND gone (correlationId c)"


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [(None, None), ("3", 3.0), ("0.5", 0.5), ("-4", 0.0), ("soon", None)],
    )
    def test_values(self, value: str | None, expected: float | None) -> None:
        assert parse_retry_after(value) == expected

    def test_http_date_in_the_past_is_zero(self) -> None:
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
