"""Normalising what callers send: emails, phone numbers, countries, languages, time zones,
and custom-field values checked against their declared type.

Everything here raises `ValueError` with a message fit for a person; pydantic turns it into
a field error and the batch endpoint into a per-item error.
"""

from __future__ import annotations

import math
import re
import zoneinfo
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, validate_email

_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_TAG_KEY = re.compile(r"^[^\x00-\x1f]{1,128}$")
MAX_STRING_VALUE = 2000


# The plain ASCII addresses almost every product has: checked here in microseconds.
# Anything else (Unicode, quoted local parts, odd lengths, special-use domains) goes to
# email-validator, which costs ~30 µs an address and would dominate a 1,000-user batch.
_PLAIN_EMAIL = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_SPECIAL_USE = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)


def _plain_email(value: str) -> bool:
    if len(value) > 254 or not _PLAIN_EMAIL.match(value):
        return False
    local, _, domain = value.partition("@")
    # "--" in a label is reserved for IDNA (xn--); leave such domains to the full check.
    if len(local) > 64 or "--" in domain:
        return False
    labels = domain.split(".")
    return not any(".".join(labels[i:]) in _SPECIAL_USE for i in range(len(labels)))


def normalise_email(value: str) -> str:
    value = value.strip()
    lowered = value.lower()
    if value.isascii() and _plain_email(lowered):
        return lowered
    try:
        result = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None
    # Domains are case-insensitive; local parts are in theory not, but every real provider
    # treats them so and HubSpot matches contacts case-insensitively: lower-case it all.
    return result.normalized.lower()


_PHONE_CHARACTERS = re.compile(r"^[0-9()./\- ]{3,40}$")


def check_phone_characters(value: str) -> str:
    """A national number whose country is not known yet: check only what it is made of."""
    if not _PHONE_CHARACTERS.match(value):
        raise ValueError("not a valid phone number; use international format like +14155550123")
    return value


def normalise_phone(value: str, country: str | None = None) -> str:
    value = value.strip()
    if country is None and not value.startswith("+"):
        raise ValueError(
            "a national number needs the user's country: set `country`, or use "
            "international format like +82 10-1234-5678"
        )
    normalised, problem = _parse_phone(value, None if value.startswith("+") else country)
    if problem is not None:
        raise ValueError(problem)
    return normalised


# Parsing and validating a number with `phonenumbers` costs ~100-200 µs, the largest single
# cost of writing a user; imports and syncs see the same numbers again and again (shared
# office lines, re-runs over unchanged contacts). The answer depends only on the input, so
# it is cached, refusals included. Bounded: ~16k entries is a few MB.
@lru_cache(maxsize=16384)
def _parse_phone(value: str, region: str | None) -> tuple[str, str | None]:
    """(E.164 number, None), or ("", the reason it is refused)."""
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return "", "not a valid phone number; use international format like +14155550123"
    if not phonenumbers.is_valid_number(number):
        return "", "not a valid phone number for its country"
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


@lru_cache(maxsize=1)
def _countries() -> frozenset[str]:
    return frozenset(phonenumbers.SUPPORTED_REGIONS)


def normalise_country(value: str) -> str:
    code = value.strip().upper()
    if code not in _countries():
        raise ValueError("not an ISO 3166-1 alpha-2 country code (e.g. US, KR, JP)")
    return code


def normalise_language(value: str) -> str:
    value = value.strip()
    if not _LANGUAGE.match(value):
        raise ValueError("not a BCP 47 language tag (e.g. en, ko, pt-BR)")
    head, _, tail = value.partition("-")
    return f"{head.lower()}-{tail}" if tail else head.lower()


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def normalise_timezone(value: str) -> str:
    value = value.strip()
    if value not in _timezones():
        raise ValueError("not an IANA time zone (e.g. Asia/Seoul, Europe/Berlin)")
    return value


def check_tag_key(key: str) -> str:
    if not _TAG_KEY.match(key) or key != key.strip():
        raise ValueError("tag keys are 1-128 characters, no control characters or outer spaces")
    return key


FIELD_TYPES = ("string", "number", "boolean", "date", "datetime", "enumeration")


def coerce_custom_value(field_type: str, options: list[str] | None, value: Any) -> Any:
    """Check `value` against a custom field's type; return the stored JSON form."""
    if field_type == "string":
        if not isinstance(value, str):
            raise ValueError("expected a string")
        if len(value) > MAX_STRING_VALUE:
            raise ValueError(f"at most {MAX_STRING_VALUE} characters")
        return value
    if field_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("expected a finite number")
        if isinstance(value, int) and abs(value) > 2**53:
            raise ValueError("numbers must be within ±2^53")
        return value
    if field_type == "boolean":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
        return value
    if field_type == "date":
        if not isinstance(value, str):
            raise ValueError("expected a date as YYYY-MM-DD")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("expected a date as YYYY-MM-DD") from None
    if field_type == "datetime":
        if not isinstance(value, str):
            raise ValueError("expected an ISO 8601 date-time with a time zone")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an ISO 8601 date-time with a time zone") from None
        if parsed.tzinfo is None:
            raise ValueError("the date-time needs a time zone (e.g. Z or +09:00)")
        return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if field_type == "enumeration":
        if not isinstance(value, str) or value not in (options or []):
            raise ValueError(f"expected one of: {', '.join(options or [])}")
        return value
    raise ValueError(f"unknown field type {field_type!r}")
